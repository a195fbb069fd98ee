/**
 * The programs a benchmark starts: stopd (with Node flags such as --cpu-prof), oidentd, the
 * connection holders, the load generator, and the C helpers of bench/floor compiled with `cc`.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { STOPD } from '../../test/support/daemon.js';
import type { LoadConfig, LoadResult } from './load-client.js';
import { summarize } from './stats.js';

const run = promisify(execFile);

/** dist/bench (this file is dist/bench/lib/processes.js). */
const DIST_BENCH = resolve(import.meta.dirname, '..');
/** The repository's bench/ (C sources). */
const SOURCE_BENCH = resolve(import.meta.dirname, '../../../bench');

/** Where stores go: the root file system, as /var/lib/stopd would be (tmpfs would hide fsync costs). */
export function makeStoreDir(base = resolve(DIST_BENCH, 'stores')): string {
  mkdirSync(base, { recursive: true });
  return mkdtempSync(join(base, 'store-'));
}

/** Compiles bench/floor/NAME.c with `cc -O2` (once per source change) and returns the binary. */
export async function compileC(name: string): Promise<string> {
  const source = join(SOURCE_BENCH, 'floor', `${name}.c`);
  // floor.c includes the addon's system-call fallbacks: a change there is a source change too.
  const compat = join(SOURCE_BENCH, '..', 'native', 'compat.h');
  const outDir = join(DIST_BENCH, 'floor');
  mkdirSync(outDir, { recursive: true });
  const binary = join(outDir, name);
  const newest = Math.max(statSync(source).mtimeMs, statSync(compat).mtimeMs);
  if (!existsSync(binary) || statSync(binary).mtimeMs < newest) {
    await run('cc', ['-O2', '-Wall', '-o', binary, source], { timeout: 60_000 });
  }
  return binary;
}

/** Whether `program` is on PATH (or an absolute path that exists). */
export async function hasProgram(program: string): Promise<boolean> {
  try {
    await run('sh', ['-c', `command -v ${program}`]);
    return true;
  } catch {
    return false;
  }
}

/** A free TCP port on 127.0.0.1 (bound and released). */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen({ host: '127.0.0.1', port: 0 });
  await once(server, 'listening');
  const address = server.address();
  server.close();
  await once(server, 'close');
  return typeof address === 'object' && address !== null ? address.port : 0;
}

/** Resolves once something accepts on host:port (bounded). */
export async function waitForPort(host: string, port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const up = await new Promise<boolean>((done) => {
      const socket = connect({ host, port });
      socket.once('connect', () => {
        socket.destroy();
        done(true);
      });
      socket.once('error', () => done(false));
    });
    if (up) return;
    if (Date.now() > deadline) throw new Error(`Nothing listens on ${host}:${port} after ${timeoutMs} ms`);
    await new Promise((resolveDelay) => setTimeout(resolveDelay, 20));
  }
}

/** Spawns a program and resolves with its first stdout line parsed as JSON (bounded). */
async function firstJsonLine<T>(child: ChildProcess, what: string, timeoutMs: number): Promise<T> {
  child.stdout?.setEncoding('utf8');
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    stderr += chunk;
  });
  return new Promise<T>((resolvePromise, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${what} gave no result within ${timeoutMs} ms: ${stderr}`));
    }, timeoutMs);
    child.stdout?.on('data', (chunk: string) => {
      out += chunk;
      const end = out.indexOf('\n');
      if (end < 0) return;
      clearTimeout(timer);
      try {
        resolvePromise(JSON.parse(out.slice(0, end)) as T);
      } catch (error) {
        reject(error instanceof Error ? error : new Error(String(error)));
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited (${code ?? signal}) before its result: ${stderr}`));
    });
  });
}

/** A child process the bench stops itself. */
export interface Stoppable {
  readonly pid: number;
  stop(): Promise<void>;
}

async function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  child.kill(signal);
  await exited;
  clearTimeout(timer);
}

let hardLimit: number | undefined;

/**
 * The descriptor hard limit of this process (what `prlimit` may raise the soft limit to
 * without privilege; a container may forbid going beyond it even for root).
 */
export async function descriptorLimit(): Promise<number> {
  if (hardLimit === undefined) {
    const { stdout } = await run('sh', ['-c', 'ulimit -Hn']);
    hardLimit = stdout.trim() === 'unlimited' ? 1_048_576 : Number(stdout.trim());
  }
  return hardLimit;
}

/** Starts a connection holder (bench/lib/holder.ts) with the soft descriptor limit raised to the hard one. */
export async function startHolder<T>(config: Record<string, unknown>, timeoutMs = 120_000): Promise<Stoppable & { info: T }> {
  const limit = await descriptorLimit();
  const child = spawn('prlimit', [`--nofile=${limit}:${limit}`, process.execPath, join(DIST_BENCH, 'lib', 'holder.js'), JSON.stringify(config)], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const info = await firstJsonLine<T>(child, `holder ${String(config.role)}`, timeoutMs);
  // SIGTERM: the holder resets its connections (no TIME_WAIT left behind) and exits.
  return { pid: child.pid ?? 0, info, stop: () => stopChild(child, 'SIGTERM') };
}

/** Runs the load generator in its own process, optionally pinned to `cpus` (taskset list). */
export async function runLoad(config: LoadConfig, options: { cpus?: string } = {}): Promise<LoadResult> {
  return startLoad(config, options).result;
}

/** Starts the load generator; `stop()` ends it early (it finishes the queries in flight and reports). */
export function startLoad(config: LoadConfig, options: { cpus?: string } = {}): { result: Promise<LoadResult>; stop(): void } {
  const argv = [process.execPath, join(DIST_BENCH, 'lib', 'load-client.js'), JSON.stringify(config)];
  const command = options.cpus === undefined ? argv : ['taskset', '-c', options.cpus, ...argv];
  const child = spawn(command[0] ?? '', command.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  const budget = (config.durationMs ?? 0) + (config.count ?? 0) * (config.timeoutMs ?? 10_000) + 120_000;
  return { result: firstJsonLine<LoadResult>(child, 'load generator', budget), stop: () => child.kill('SIGTERM') };
}

/**
 * Closed-loop ID load from the C generator (`floor/idload.c`): the same queries as
 * {@link runLoad} in closed mode, at a fraction of the Node client's CPU per query, so that on
 * a small machine the daemon, not the client, sets the rate. IPv4 only. `expect` may use `\d`
 * and `\s`, which become POSIX classes.
 */
export async function runIdLoad(
  config: Required<Pick<LoadConfig, 'host' | 'port' | 'localAddress' | 'line' | 'expect' | 'concurrency' | 'durationMs'>> & { warmup?: number },
): Promise<LoadResult> {
  const binary = await compileC('idload');
  const ere = config.expect.replaceAll('\\d', '[0-9]').replaceAll('\\s', '[[:space:]]');
  const raw = await runJson<{ ok: number; failed: number; elapsedMs: number; latenciesMs: number[]; failures: string[] }>([
    binary,
    config.host,
    String(config.port),
    config.localAddress,
    config.line,
    ere,
    String(config.concurrency),
    String(config.durationMs),
    String(config.warmup ?? 0),
  ]);
  return {
    ok: raw.ok,
    failed: raw.failed,
    elapsedMs: raw.elapsedMs,
    perSecond: (raw.ok * 1000) / raw.elapsedMs,
    latency: summarize(raw.latenciesMs),
    failures: raw.failures,
  };
}

/** TCP sockets on the machine (this network namespace) in `state` (an `ss` state filter). */
export async function countSockets(state: 'established' | 'time-wait'): Promise<number> {
  const { stdout } = await run('ss', ['-Htan', 'state', state], { maxBuffer: 64 * 1024 * 1024 });
  return stdout.split('\n').filter((line) => line.trim().length > 0).length;
}

/** Starts `count` established loopback connections 127.0.0.3 -> 127.0.0.4 in holder processes. */
export async function startBackground(count: number): Promise<Stoppable[]> {
  const holders: Stoppable[] = [];
  // Each holder keeps at most `perHolder` sockets: the descriptor hard limit may be low
  // (20 000 in some containers, where even root cannot raise it).
  const perHolder = Math.max(1000, Math.min(10_000, (await descriptorLimit()) - 200));
  try {
    for (let placed = 0; placed < count; placed += perHolder) {
      const listener = await startHolder<{ port: number }>({ role: 'listen', host: '127.0.0.4' });
      holders.push(listener);
      const batch = Math.min(perHolder, count - placed);
      holders.push(await startHolder({ role: 'connect', from: '127.0.0.3', host: '127.0.0.4', port: listener.info.port, count: batch }, 300_000));
    }
  } catch (error) {
    for (const holder of holders.reverse()) await holder.stop();
    throw error;
  }
  return holders;
}

/** Peak and current resident memory of a process, from /proc/PID/status (kB). */
export function readMemory(pid: number): { vmHWMkB: number; vmRSSkB: number } {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? Number.NaN);
  return { vmHWMkB: field('VmHWM'), vmRSSkB: field('VmRSS') };
}

/**
 * CPU time a process has used, in milliseconds: user and system time of the process and of
 * the children it has waited for (`/proc/PID/stat` fields 14 to 17, in clock ticks of 10 ms).
 * For a forking server (oidentd) the children count once they are reaped.
 */
export function cpuMs(pid: number): number {
  const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name, which is in parentheses and may hold spaces.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state): field N is fields[N - 3].
  const ticks = [14, 15, 16, 17].reduce((total, n) => total + Number(fields[n - 3]), 0);
  return ticks * 10;
}

/** A stopd process of the bench. */
export interface BenchStopd extends Stoppable {
  readonly host: string;
  readonly port: number;
  readonly storeDir: string;
  stderr(): string;
}

/**
 * Starts `node [nodeArgs] dist/src/cli/stopd.js --listen 127.0.0.1:0 --store DIR [args]` and
 * waits for its "listening on" line. `stop()` sends SIGTERM (a --cpu-prof profile is written
 * on that clean exit) and removes the store.
 */
/**
 * stopd arguments that lift its per-requester limits (issue 13: connection share, rate
 * limits). Every bench load comes from one or two loopback addresses at rates no single
 * requester may reach in real use, and the bench measures what the work costs, not how it is
 * refused; each section passes these explicitly. test/fairness.test.ts covers the limits.
 */
export const LIFT_REQUESTER_LIMITS: readonly string[] = ['--max-connections-per-requester', '1000000', '--rate-analysis', '0', '--rate-id', '0'];

/**
 * The node flags stopd's own `#!` line gives it (src/cli/stopd.ts: the V8 memory settings), so
 * the bench measures the daemon as `stopd` and `npm start` run it, with any extra `nodeArgs`.
 */
export function daemonNodeFlags(): string[] {
  const first = readFileSync(STOPD, 'utf8').split('\n', 1)[0] ?? '';
  const match = /^#!\/usr\/bin\/env -S node(.*)$/.exec(first);
  if (match === null) throw new Error(`${STOPD} does not start with "#!/usr/bin/env -S node": rebuild (npm run build)`);
  return (match[1] ?? '').split(' ').filter((flag) => flag !== '');
}

export async function startStopd(
  options: { args?: readonly string[]; nodeArgs?: readonly string[]; cwd?: string; /** Where the store directory is made instead of dist/bench/stores. */ storeBase?: string } = {},
): Promise<BenchStopd> {
  const storeDir = makeStoreDir(options.storeBase);
  const child = spawn(
    process.execPath,
    [...daemonNodeFlags(), ...(options.nodeArgs ?? []), STOPD, '--listen', '127.0.0.1:0', '--store', storeDir, ...(options.args ?? [])],
    { stdio: ['ignore', 'ignore', 'pipe'], ...(options.cwd === undefined ? {} : { cwd: options.cwd }) },
  );
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  const port = await new Promise<number>((resolvePromise, reject) => {
    const timer = setTimeout(() => reject(new Error(`stopd did not start: ${stderr}`)), 15_000);
    child.stderr?.on('data', (chunk: string) => {
      stderr += chunk;
      const match = /listening on 127\.0\.0\.1:(\d+)/.exec(stderr);
      if (match !== null) {
        clearTimeout(timer);
        resolvePromise(Number(match[1]));
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`stopd exited with ${code}: ${stderr}`));
    });
  });
  return {
    pid: child.pid ?? 0,
    host: '127.0.0.1',
    port,
    storeDir,
    stderr: () => stderr,
    async stop() {
      await stopChild(child);
      rmSync(storeDir, { recursive: true, force: true });
    },
  };
}

/**
 * Starts Debian's oidentd in the foreground (`-i`) on 127.0.0.1:PORT as nobody, logging
 * nothing (`-q`: its fastest setting), and waits until it accepts.
 */
export async function startOidentd(): Promise<Stoppable & { host: string; port: number }> {
  const port = await freePort();
  const child = spawn('oidentd', ['-i', '-S', '-q', '-a', '127.0.0.1', '-p', String(port), '-u', 'nobody', '-g', 'nogroup'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    stderr += chunk;
  });
  try {
    await waitForPort('127.0.0.1', port);
  } catch (error) {
    child.kill('SIGKILL');
    throw new Error(`oidentd did not start: ${stderr} ${String(error)}`);
  }
  return { pid: child.pid ?? 0, host: '127.0.0.1', port, stop: () => stopChild(child) };
}

/** Starts a program whose first stdout line is JSON or text `ready`; resolves after that line. */
export async function startReadyProgram(argv: readonly string[], what: string, timeoutMs = 60_000): Promise<Stoppable & { child: ChildProcess }> {
  const [command = '', ...args] = argv;
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout?.setEncoding('utf8');
  await new Promise<void>((resolvePromise, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`${what} not ready within ${timeoutMs} ms`)), timeoutMs);
    child.stdout?.on('data', (chunk: string) => {
      out += chunk;
      if (out.includes('\n')) {
        clearTimeout(timer);
        resolvePromise();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited with ${code}`));
    });
  });
  return { pid: child.pid ?? 0, child, stop: () => stopChild(child, 'SIGKILL') };
}

/** Runs a program to completion and parses its last stdout line as JSON. */
export async function runJson<T>(argv: readonly string[], timeoutMs = 600_000): Promise<T> {
  const [command = '', ...args] = argv;
  const { stdout } = await run(command, args, { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 });
  const lines = stdout.trim().split('\n');
  return JSON.parse(lines[lines.length - 1] ?? 'null') as T;
}

/** Pins every thread of `pid` to `cpus` (taskset list). */
export async function pin(pid: number, cpus: string): Promise<void> {
  await run('taskset', ['-a', '-p', '-c', cpus, String(pid)]);
}

/**
 * One established loopback connection held by two helper processes (pushed on `started` for
 * cleanup); returns the ID request line `<cl>,<sv>` that asks about it.
 */
export async function startQueriedConnection(started: Stoppable[]): Promise<string> {
  const target = await startHolder<{ port: number }>({ role: 'listen', host: '127.0.0.1' });
  started.push(target);
  const client = await startHolder<{ localPorts: number[] }>({ role: 'connect', from: '127.0.0.1', host: '127.0.0.1', port: target.info.port, count: 1 });
  started.push(client);
  return `${client.info.localPorts[0] ?? 0},${target.info.port}`;
}
