/**
 * Test networks of real hosts on one machine, for multi-host STOP tests (paper fig. 1: a chain
 * of hosts H1 .. Hn, each running its own stopd). Needs root.
 *
 * Each test host is
 * - a network namespace `stopd-<pid>-<n>-<name>` (the pid of the test process that made it, so
 *   parallel runs never collide and `cleanupStale` can tell leftovers of dead runs),
 * - a PID namespace with its own `/proc` and host name: `ip netns exec NS unshare --pid --fork
 *   --mount-proc --uts --kill-child perl <reaper>`; the reaper is the host's pid 1,
 * - a veth pair from the host's `eth0` to a port of the bridge `br0`, which lives in a network
 *   namespace of its own, the net's "switch" `stopd-<pid>-<n>_sw`, with no address at all.
 *
 * The bridge is NOT in the machine's (root) namespace: there, with the default arp_ignore=0 and
 * rp_filter=0, the machine would answer ARP on the bridge for its own addresses and accept the
 * hosts' connections, and its replies would leave by its default route (on this machine the
 * uplink is itself 192.0.2.2/24). In a switch namespace the hosts reach each other and nothing
 * else, and the machine's interfaces, addresses and routes stay exactly as they were.
 *
 * Commands run inside a host with `nsenter --target <pid 1> --net --pid --mount --uts -- perl
 * <close inherited descriptors, exec>`. Tools needed: iproute2, util-linux (unshare, nsenter,
 * setpriv), perl-base, hostname; socat for relays and tests.
 *
 * Network rule (workplace): traffic may only go to loopback or to test-host addresses. So only
 * RFC 5737 documentation addresses are accepted, and nothing is ever added to the machine's own
 * routes or addresses. Never connect to a host address FROM THE MACHINE itself (outside every
 * host): the machine has no route to them, so that traffic would follow its default route.
 *
 * "Machine pid" below means a pid as the test process sees it (the root PID namespace); "host
 * pid" means the pid as seen inside a test host (what stopd records).
 */
import { execFile, execFileSync, spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { promisify } from 'node:util';
import { STOPD } from './daemon.js';

const run = promisify(execFile);

/** The RFC 5737 documentation networks: the only addresses a test host may have. */
export const DOCUMENTATION_NETWORKS = ['192.0.2.0/24', '198.51.100.0/24', '203.0.113.0/24'] as const;

/** One host of a `createTestNet` spec. */
export interface TestHostSpec {
  /** Short name: lowercase letters, digits and '-', at most 20 characters; also the host name inside. */
  readonly name: string;
  /** IPv4 address, optionally with a prefix length of 24 or more (default /24), in a documentation network. */
  readonly address: string;
  /**
   * No link: the address sits alone (/32) on the host's loopback, so the host can listen on it but
   * reaches nobody and nobody reaches it (connects fail at once with "Network is unreachable").
   */
  readonly isolated?: boolean;
}

/** What `createTestNet` builds. */
export interface TestNetSpec {
  readonly hosts: readonly TestHostSpec[];
}

/** Options of `TestHost.exec` and `TestHost.spawn`. */
export interface RunOptions {
  /** Run as this uid (nsenter --setuid); the gid is the user's primary group from /etc/passwd, else the uid. */
  readonly uid?: number;
  /** Variables added to (or overriding) this process's environment. */
  readonly env?: Readonly<Record<string, string>>;
  /** Working directory inside the host (default `/`: entering the mount namespace resets it). */
  readonly cwd?: string;
}

/** Options of `TestHost.exec`. */
export interface ExecOptions extends RunOptions {
  /** Written to the command's stdin, which is then closed (default: an empty, closed stdin). */
  readonly stdin?: string | Buffer;
  /** Kill the command (SIGKILL) and reject after this long (default 30 s). */
  readonly timeoutMs?: number;
}

/** Options of `TestHost.spawn`. */
export interface SpawnOptions extends RunOptions {
  /** As for `child_process.spawn` (default: all three piped). */
  readonly stdio?: StdioOptions;
}

/** The outcome of `TestHost.exec`. */
export interface ExecResult {
  /** Exit status; null when killed by a signal. */
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** A stopd running inside a test host. */
export interface TestStopd {
  /** The nsenter process wrapping the daemon (its `kill` signals the daemon itself). */
  readonly process: ChildProcess;
  /** The evidence store, a temp directory made on the machine (the same file system as inside). */
  readonly storeDir: string;
  /** The daemon's machine pid. */
  readonly pid: number;
  /** Everything the daemon wrote to stderr so far. */
  stderr(): string;
  /** SIGTERM (SIGKILL after 10 s); resolves with the daemon's exit status. Keeps the store. Idempotent. */
  stop(): Promise<number | null>;
}

/** One test host; see the module comment. */
export interface TestHost {
  readonly name: string;
  /** The host's IPv4 address, without prefix length. */
  readonly address: string;
  readonly isolated: boolean;
  /** The network namespace's name (for `ip -n`). */
  readonly netns: string;
  /** The machine pid of the host's pid 1. */
  readonly initPid: number;
  /** Runs `cmd` inside the host to completion. Rejects only when it cannot run or times out. */
  exec(cmd: readonly string[], options?: ExecOptions): Promise<ExecResult>;
  /**
   * Starts `cmd` inside the host. The returned process is the nsenter wrapper (it exits with the
   * command's status); its `kill(signal)` is redirected to the command itself. Every spawned
   * process is stopped by `TestNet.destroy`.
   */
  spawn(cmd: readonly string[], options?: SpawnOptions): ChildProcess;
  /**
   * Starts the compiled daemon (`dist/src/cli/stopd.js`, with this Node) inside the host, by
   * default with `--listen 0.0.0.0:113` (left out when `args` has `--listen`) and a fresh store,
   * and waits (bounded by `timeoutMs`, default 15 s) for its "listening on" line.
   */
  startStopd(args?: readonly string[], options?: { storeDir?: string; timeoutMs?: number }): Promise<TestStopd>;
  /** The machine pid of the command a `spawn`ed wrapper runs (waits, bounded, for nsenter's fork). */
  machinePidOf(child: ChildProcess, options?: { timeoutMs?: number }): Promise<number>;
  /** The pid that `machinePid` has inside this host (from /proc/PID/status NSpid). */
  pidInHost(machinePid: number): number;
  /** Machine pids of every live process of the host's PID namespace, pid 1 included. */
  machinePids(): number[];
  /** Waits (bounded, default 10 s) until a TCP socket listens on `port` inside the host. */
  waitForListener(port: number, options?: { timeoutMs?: number }): Promise<void>;
}

/** A set of test hosts on one bridge. */
export interface TestNet {
  /** The namespace holding the bridge `br0` and one port per linked host. */
  readonly switchNetns: string;
  readonly hosts: readonly TestHost[];
  /** The host called `name`; throws for an unknown name. */
  host(name: string): TestHost;
  /**
   * Stops every process of every host (SIGTERM, then SIGKILL after `graceMs`, default 3 s),
   * deletes the namespaces (and so the veths and the bridge), and the stores made by
   * `startStopd`. Idempotent;
   * never throws for resources already gone.
   */
  destroy(options?: { graceMs?: number }): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Addresses and names

function parseIpv4(text: string): number | undefined {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  let value = 0;
  for (const part of parts) {
    if (!/^(0|[1-9]\d{0,2})$/.test(part) || Number(part) > 255) return undefined;
    value = value * 256 + Number(part);
  }
  return value;
}

/**
 * Splits `192.0.2.11/24` into address and prefix, and refuses anything whose whole subnet is
 * not inside one documentation network (RFC 5737): test traffic must never reach a real network.
 */
export function checkTestAddress(text: string): { address: string; prefix: number } {
  const [address = '', prefixText = '24', extra] = text.split('/');
  const prefix = Number(prefixText);
  const value = parseIpv4(address);
  if (extra !== undefined || value === undefined || !/^\d{1,2}$/.test(prefixText) || prefix > 32) {
    throw new Error(`Cannot use test host address ${text}: not an IPv4 address with an optional prefix length`);
  }
  const inside = DOCUMENTATION_NETWORKS.some((network) => {
    const base = parseIpv4(network.slice(0, network.indexOf('/'))) ?? -1;
    return Math.floor(value / 256) === base / 256;
  });
  if (!inside || prefix < 24) {
    throw new Error(
      `Cannot use test host address ${text}: only RFC 5737 documentation addresses (${DOCUMENTATION_NETWORKS.join(', ')}) with a prefix of /24 or longer are allowed`,
    );
  }
  const last = value % 256;
  if (prefix < 31 && (last === 0 || last === 255)) {
    throw new Error(`Cannot use test host address ${text}: it is a network or broadcast address`);
  }
  return { address, prefix };
}

/** Host names; no '_', so no host namespace is ever called like a switch (`..._sw`). */
const HOST_NAME = /^[a-z0-9](?:[a-z0-9-]{0,18}[a-z0-9])?$/;
const NETNS_NAME = /^stopd-(\d+)-/;

let netCounter = 0;

// ---------------------------------------------------------------------------------------------
// Processes

/**
 * The hosts' pid 1: reaps orphans (a plain `sleep` would leave every orphan a zombie, which
 * would show up in stopd's view of the host). SIGCHLD stays blocked outside sigsuspend, so no
 * child exit can slip between the reaping loop and the wait.
 */
const REAPER = [
  'use POSIX qw(:sys_wait_h :signal_h);',
  'POSIX::close($_) for 3 .. 1023;',
  '$SIG{CHLD} = sub {};',
  'my $old = POSIX::SigSet->new;',
  'sigprocmask(SIG_BLOCK, POSIX::SigSet->new(SIGCHLD), $old);',
  'for (;;) { 1 while waitpid(-1, WNOHANG) > 0; sigsuspend($old); }',
].join(' ');

/**
 * Runs in the host before the command: closes every descriptor from `$ARGV[0]` up, then execs
 * the rest of the arguments. Descriptors this process inherited without close-on-exec (a test
 * runner's or a shell's) would otherwise reach every host process, and stopd would report them
 * as a pipe shared by unrelated processes.
 */
const CLEAN_EXEC = [
  'use POSIX ();',
  'my $keep = shift @ARGV;',
  'opendir(my $dir, "/proc/self/fd") or die "Cannot list /proc/self/fd: $!\\n";',
  'my @fds = grep { /^\\d+$/ && $_ >= $keep } readdir($dir);',
  'closedir($dir);',
  'POSIX::close($_) for @fds;',
  'exec { $ARGV[0] } @ARGV;',
  'print STDERR "Cannot run $ARGV[0]: $!\\n";',
  'exit 127;',
].join(' ');

function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
      .split(/\s+/)
      .filter((word) => word.length > 0)
      .map(Number);
  } catch {
    return [];
  }
}

/** Whether `pid` runs: a zombie, or a pid gone from /proc, does not. */
export function isAlive(pid: number): boolean {
  try {
    // A zombie is as good as gone: it runs nothing and holds nothing.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // Already gone.
  }
}

async function waitUntil(what: string, condition: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    await delay(10);
  }
}

function gidOf(uid: number): number {
  try {
    for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
      const fields = line.split(':');
      if (Number(fields[2]) === uid && fields[2] !== '' && fields[3] !== undefined) return Number(fields[3]);
    }
  } catch {
    // No passwd file: fall through.
  }
  return uid;
}

function pidsOfNetns(netns: string): number[] {
  try {
    return execFileSync('ip', ['netns', 'pids', netns], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
      .split(/\s+/)
      .filter((word) => word.length > 0)
      .map(Number);
  } catch {
    return [];
  }
}

function quietSync(cmd: string, args: readonly string[]): void {
  try {
    execFileSync(cmd, args, { stdio: 'ignore', timeout: 10_000 });
  } catch {
    // Already gone (or never made): cleanup never throws.
  }
}

async function quiet(cmd: string, args: readonly string[]): Promise<void> {
  await run(cmd, args, { timeout: 10_000 }).catch(() => undefined);
}

// ---------------------------------------------------------------------------------------------
// Cleanup on exit and on signals

interface LiveNet {
  /** Host namespaces, then the switch. */
  readonly netnses: string[];
  readonly wrappers: number[];
  readonly inits: number[];
  readonly stores: string[];
}

const liveNets = new Set<LiveNet>();
let handlersInstalled = false;

/** Kills and deletes everything of `net` with synchronous calls (usable in an 'exit' handler). */
function destroySync(net: LiveNet): void {
  // SIGKILL on a PID namespace's init kills every process in it (pid_namespaces(7)).
  for (const pid of net.inits) signal(pid, 'SIGKILL');
  for (const pid of net.wrappers) signal(pid, 'SIGKILL');
  for (const netns of net.netnses) for (const pid of pidsOfNetns(netns)) signal(pid, 'SIGKILL');
  for (const netns of net.netnses) quietSync('ip', ['netns', 'del', netns]);
  for (const store of net.stores) rmSync(store, { recursive: true, force: true });
  liveNets.delete(net);
}

function onExit(): void {
  for (const net of liveNets) destroySync(net);
}

function onSignal(name: NodeJS.Signals): void {
  onExit();
  process.removeListener('SIGINT', onSignal);
  process.removeListener('SIGTERM', onSignal);
  handlersInstalled = false;
  // Die of the signal as if we had never caught it, unless someone else handles it.
  if (process.listenerCount(name) === 0) process.kill(process.pid, name);
}

function track(net: LiveNet): void {
  liveNets.add(net);
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', onExit);
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

/**
 * Deletes `stopd-*` namespaces (hosts and switches, and with them their veths and bridges) left
 * by earlier runs whose process (the pid in the name) no longer exists, killing what still runs
 * in them. Never touches the namespaces of live processes. Resolves with what it deleted.
 */
export async function cleanupStale(): Promise<{ netnses: string[] }> {
  const dead = (pidText: string | undefined): boolean => {
    const pid = Number(pidText);
    if (!Number.isSafeInteger(pid) || pid <= 0 || pid === process.pid) return false;
    try {
      process.kill(pid, 0);
      return false;
    } catch (error: unknown) {
      return (error as NodeJS.ErrnoException).code === 'ESRCH';
    }
  };
  const { stdout: netnsList } = await run('ip', ['netns', 'list']);
  const netnses = netnsList
    .split('\n')
    .map((line) => line.split(' ')[0] ?? '')
    .filter((name) => dead(NETNS_NAME.exec(name)?.[1]));
  for (const netns of netnses) {
    for (const pid of pidsOfNetns(netns)) signal(pid, 'SIGKILL');
    await quiet('ip', ['netns', 'del', netns]);
  }
  return { netnses };
}

// ---------------------------------------------------------------------------------------------
// Hosts

class Host implements TestHost {
  readonly name: string;
  readonly address: string;
  readonly isolated: boolean;
  readonly netns: string;
  readonly initPid: number;
  readonly #spawned: Set<ChildProcess>;
  readonly #stores: string[];

  constructor(
    spec: { name: string; address: string; isolated: boolean; netns: string; initPid: number },
    owned: { spawned: Set<ChildProcess>; stores: string[] },
  ) {
    this.name = spec.name;
    this.address = spec.address;
    this.isolated = spec.isolated;
    this.netns = spec.netns;
    this.initPid = spec.initPid;
    this.#spawned = owned.spawned;
    this.#stores = owned.stores;
  }

  #nsenterArgs(cmd: readonly string[], options: RunOptions, keep: number): string[] {
    if (cmd.length === 0) throw new Error('Cannot run an empty command in a test host');
    const args = ['--target', String(this.initPid), '--net', '--pid', '--mount', '--uts'];
    if (options.uid !== undefined) args.push('--setuid', String(options.uid), '--setgid', String(gidOf(options.uid)));
    args.push(`--wd=${options.cwd ?? '/'}`, '--', 'perl', '-e', CLEAN_EXEC, String(keep), ...cmd);
    return args;
  }

  spawn(cmd: readonly string[], options: SpawnOptions = {}): ChildProcess {
    // Keep the descriptors the caller asked for (stdio), close everything above.
    const keep = Array.isArray(options.stdio) ? Math.max(3, options.stdio.length) : 3;
    const child = spawn('nsenter', this.#nsenterArgs(cmd, options, keep), {
      stdio: options.stdio ?? 'pipe',
      env: { ...process.env, ...options.env },
    });
    // nsenter forks the command into the PID namespace and only waits for it: it forwards no
    // signal. So a kill must reach the command, found as nsenter's child (a synchronous read).
    const killWrapper = child.kill.bind(child);
    child.kill = (name?: NodeJS.Signals | number): boolean => {
      if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return false;
      const inner = childrenOf(child.pid);
      if (inner.length === 0) return killWrapper(name);
      for (const pid of inner) {
        try {
          process.kill(pid, name ?? 'SIGTERM');
        } catch {
          return false;
        }
      }
      return true;
    };
    this.#spawned.add(child);
    child.once('exit', () => this.#spawned.delete(child));
    return child;
  }

  async exec(cmd: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
    const child = this.spawn(cmd, { ...options, stdio: ['pipe', 'pipe', 'pipe'] });
    const timeoutMs = options.timeoutMs ?? 30_000;
    let stdout = '';
    let stderr = '';
    child.stdout?.setEncoding('utf8');
    child.stderr?.setEncoding('utf8');
    child.stdout?.on('data', (chunk: string) => (stdout += chunk));
    child.stderr?.on('data', (chunk: string) => (stderr += chunk));
    // A command that exits without reading its stdin makes our write fail with EPIPE: harmless.
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(options.stdin ?? '');
    return new Promise<ExecResult>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`Command ${cmd.join(' ')} in test host ${this.name} did not finish within ${timeoutMs} ms; stderr: ${stderr}`));
      }, timeoutMs);
      child.once('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
      // 'close', not 'exit': all output has been read then.
      child.once('close', (code, signalName) => {
        clearTimeout(timer);
        resolve({ code, signal: signalName, stdout, stderr });
      });
    });
  }

  async machinePidOf(child: ChildProcess, options: { timeoutMs?: number } = {}): Promise<number> {
    const wrapper = child.pid;
    if (wrapper === undefined) throw new Error('Cannot find the command of a process that did not start');
    let found: number | undefined;
    await waitUntil(
      `nsenter [${wrapper}] to start its command in ${this.name}`,
      () => {
        found = childrenOf(wrapper)[0];
        if (found === undefined && child.exitCode !== null) throw new Error(`The command in ${this.name} already exited`);
        return found !== undefined;
      },
      options.timeoutMs ?? 5000,
    );
    return found ?? 0;
  }

  pidInHost(machinePid: number): number {
    const status = readFileSync(`/proc/${machinePid}/status`, 'utf8');
    const line = /^NSpid:\s+(.*)$/m.exec(status)?.[1];
    const last = line?.trim().split(/\s+/).at(-1);
    if (last === undefined) throw new Error(`Cannot read the namespace pid of ${machinePid}`);
    return Number(last);
  }

  machinePids(): number[] {
    let ns: string;
    try {
      ns = readlinkSync(`/proc/${this.initPid}/ns/pid`);
    } catch {
      return [];
    }
    const pids: number[] = [];
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        if (readlinkSync(`/proc/${entry}/ns/pid`) === ns && isAlive(Number(entry))) pids.push(Number(entry));
      } catch {
        // Exited while we looked.
      }
    }
    return pids.sort((a, b) => a - b);
  }

  async waitForListener(port: number, options: { timeoutMs?: number } = {}): Promise<void> {
    const timeoutMs = options.timeoutMs ?? 10_000;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const { stdout } = await this.exec(['ss', '-Hltn', `sport = :${port}`]);
      if (stdout.trim().length > 0) return;
      if (Date.now() > deadline) throw new Error(`Nothing listens on port ${port} in test host ${this.name} after ${timeoutMs} ms`);
      await delay(20);
    }
  }

  async startStopd(args: readonly string[] = [], options: { storeDir?: string; timeoutMs?: number } = {}): Promise<TestStopd> {
    let storeDir = options.storeDir;
    if (storeDir === undefined) {
      // Made on the machine: `unshare --mount` copies the mount table, not the file system, so
      // the daemon writes where the test reads.
      storeDir = mkdtempSync(join(tmpdir(), `stopd-${this.name}-store-`));
      this.#stores.push(storeDir);
    }
    const listen = args.includes('--listen') ? [] : ['--listen', '0.0.0.0:113'];
    const child = this.spawn([process.execPath, STOPD, ...listen, '--store', storeDir, ...args], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => (stderr += chunk));
    const timeoutMs = options.timeoutMs ?? 15_000;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`stopd in ${this.name} did not listen within ${timeoutMs} ms:\n${stderr}`));
      }, timeoutMs);
      const check = (): void => {
        if (!/listening on /.test(stderr)) return;
        clearTimeout(timer);
        child.stderr?.off('data', check);
        child.off('exit', early);
        resolve();
      };
      const early = (code: number | null): void => {
        clearTimeout(timer);
        reject(new Error(`stopd in ${this.name} exited with ${code} before listening:\n${stderr}`));
      };
      child.stderr?.on('data', check);
      child.once('exit', early);
    });
    const pid = await this.machinePidOf(child);
    let stopping: Promise<number | null> | undefined;
    return {
      process: child,
      storeDir,
      pid,
      stderr: () => stderr,
      stop() {
        stopping ??= new Promise<number | null>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) {
            resolve(child.exitCode);
            return;
          }
          const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
          child.once('exit', (code) => {
            clearTimeout(timer);
            resolve(code);
          });
          child.kill('SIGTERM');
        });
        return stopping;
      },
    };
  }
}

/**
 * Creates the hosts of `spec` (see the module comment). Validates every name and address before
 * creating anything; on a failure half-way, deletes what it made and rethrows.
 */
export async function createTestNet(spec: TestNetSpec): Promise<TestNet> {
  if (process.getuid?.() !== 0) throw new Error('Cannot create a test net: network and PID namespaces need root');
  const seen = new Set<string>();
  const planned = spec.hosts.map((host) => {
    if (!HOST_NAME.test(host.name)) {
      throw new Error(`Cannot create test host ${JSON.stringify(host.name)}: names are 1 to 20 of a-z, 0-9 and '-'`);
    }
    if (seen.has(host.name)) throw new Error(`Cannot create test host ${host.name}: the name is used twice`);
    seen.add(host.name);
    const { address, prefix } = checkTestAddress(host.address);
    if (seen.has(address)) throw new Error(`Cannot create test host ${host.name}: address ${address} is used twice`);
    seen.add(address);
    return { name: host.name, address, prefix, isolated: host.isolated === true };
  });
  if (planned.length === 0) throw new Error('Cannot create a test net without hosts');

  netCounter += 1;
  const prefix = `stopd-${process.pid}-${netCounter}`;
  const switchNetns = `${prefix}_sw`;
  const live: LiveNet = { netnses: [], wrappers: [], inits: [], stores: [] };
  const spawned = new Set<ChildProcess>();
  const wrappers: ChildProcess[] = [];
  track(live);

  const destroy = async (options: { graceMs?: number } = {}): Promise<void> => {
    if (!liveNets.has(live)) return;
    const graceMs = options.graceMs ?? 3000;
    // Our own children (the inits' wrappers and every nsenter) are left alone at first: each
    // exits by itself once what it waits for (pid 1, or its command) is gone. Killing them
    // early would orphan that to the machine's init. The inits ignore SIGTERM, and their
    // SIGKILL takes the whole host down, so they come last.
    const ours = [...wrappers, ...spawned];
    const ourPids = new Set(ours.map((child) => child.pid));
    const inits = new Set(live.inits);
    const victims = new Set<number>();
    for (const host of hosts) for (const pid of host.machinePids()) if (!inits.has(pid)) victims.add(pid);
    for (const netns of live.netnses) for (const pid of pidsOfNetns(netns)) if (!inits.has(pid) && !ourPids.has(pid)) victims.add(pid);
    for (const pid of victims) signal(pid, 'SIGTERM');
    await waitUntil('test-host processes to exit', () => [...victims].every((pid) => !isAlive(pid)), graceMs).catch(() => undefined);
    const exited = ours.map((child) =>
      child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise<void>((resolve) => child.once('exit', () => resolve())),
    );
    for (const pid of inits) signal(pid, 'SIGKILL');
    for (const pid of victims) signal(pid, 'SIGKILL');
    const bound = new AbortController();
    await Promise.race([Promise.all(exited), delay(5000, undefined, { signal: bound.signal }).catch(() => undefined)]);
    bound.abort();
    for (const child of ours) if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) signal(child.pid, 'SIGKILL');
    // A dying pid 1 lingers until the last process of its namespace is reaped.
    await waitUntil('test-host processes to be killed', () => [...victims, ...inits].every((pid) => !isAlive(pid)), 5000).catch(() => undefined);
    // The kernel destroys a namespace's veths and bridge with the namespace.
    for (const netns of live.netnses) {
      for (const pid of pidsOfNetns(netns)) signal(pid, 'SIGKILL');
      await quiet('ip', ['netns', 'del', netns]);
    }
    for (const store of live.stores) rmSync(store, { recursive: true, force: true });
    liveNets.delete(live);
  };

  const hosts: Host[] = [];
  try {
    await run('ip', ['netns', 'add', switchNetns]);
    live.netnses.push(switchNetns);
    // No IPv6 link-local addresses in the switch: it only forwards frames, it never speaks.
    await run('ip', ['-n', switchNetns, 'link', 'add', 'br0', 'type', 'bridge']);
    await run('ip', ['-n', switchNetns, 'link', 'set', 'dev', 'br0', 'addrgenmode', 'none']);
    await run('ip', ['-n', switchNetns, 'link', 'set', 'dev', 'br0', 'up']);
    for (const [index, plan] of planned.entries()) {
      const netns = `${prefix}-${plan.name}`;
      await run('ip', ['netns', 'add', netns]);
      // Before the switch, so that destroy kills hosts first.
      live.netnses.splice(live.netnses.length - 1, 0, netns);
      if (plan.isolated) {
        // On loopback (this kernel may lack the dummy link type): /32, so no route leads out.
        await run('ip', ['-n', netns, 'addr', 'add', `${plan.address}/32`, 'dev', 'lo']);
      } else {
        const port = `p${index}`;
        await run('ip', ['-n', switchNetns, 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netns]);
        await run('ip', ['-n', switchNetns, 'link', 'set', 'dev', port, 'addrgenmode', 'none']);
        await run('ip', ['-n', switchNetns, 'link', 'set', 'dev', port, 'master', 'br0', 'up']);
        await run('ip', ['-n', netns, 'addr', 'add', `${plan.address}/${plan.prefix}`, 'dev', 'eth0']);
      }
      if (!plan.isolated) await run('ip', ['-n', netns, 'link', 'set', 'dev', 'eth0', 'up']);
      await run('ip', ['-n', netns, 'link', 'set', 'dev', 'lo', 'up']);
      // setpriv: if this process dies without cleaning (SIGKILL), unshare gets SIGKILL, and
      // --kill-child passes it to the host's pid 1, which takes the whole host down with it.
      const wrapper = spawn(
        'setpriv',
        ['--pdeathsig', 'KILL', '--', 'ip', 'netns', 'exec', netns, 'unshare', '--pid', '--fork', '--mount-proc', '--uts', '--kill-child', 'perl', '-e', REAPER],
        { stdio: 'ignore' },
      );
      wrappers.push(wrapper);
      const wrapperPid = wrapper.pid;
      if (wrapperPid === undefined) throw new Error(`Cannot start pid 1 of test host ${plan.name}`);
      live.wrappers.push(wrapperPid);
      let initPid: number | undefined;
      await waitUntil(
        `pid 1 of test host ${plan.name}`,
        () => {
          if (wrapper.exitCode !== null || wrapper.signalCode !== null) throw new Error(`Cannot start pid 1 of test host ${plan.name}: unshare exited`);
          // The wrapper becomes unshare (exec); its only child is the host's pid 1 once it has
          // entered the new namespaces, which we know from its ns/pid link differing from ours.
          const candidate = childrenOf(wrapperPid)[0];
          if (candidate === undefined) return false;
          try {
            if (readlinkSync(`/proc/${candidate}/ns/pid`) === readlinkSync('/proc/self/ns/pid')) return false;
            // perl, not the forked unshare still mounting /proc.
            if (!readFileSync(`/proc/${candidate}/cmdline`, 'utf8').startsWith('perl')) return false;
          } catch {
            return false;
          }
          initPid = candidate;
          return true;
        },
        10_000,
      );
      if (initPid === undefined) throw new Error(`Cannot find pid 1 of test host ${plan.name}`);
      live.inits.push(initPid);
      const host = new Host({ name: plan.name, address: plan.address, isolated: plan.isolated, netns, initPid }, { spawned, stores: live.stores });
      hosts.push(host);
      const named = await host.exec(['hostname', plan.name]);
      if (named.code !== 0) throw new Error(`Cannot set the host name of test host ${plan.name}: ${named.stderr}`);
    }
  } catch (error: unknown) {
    await destroy({ graceMs: 0 });
    throw error;
  }

  return {
    switchNetns,
    hosts,
    host(name: string): TestHost {
      const found = hosts.find((host) => host.name === name);
      if (found === undefined) throw new Error(`No test host named ${name}`);
      return found;
    },
    destroy,
  };
}

/** Reads a store's ledger (`<store>/ledger`, JSON lines); a missing ledger is empty. */
export function readLedger(storeDir: string): Record<string, unknown>[] {
  let text: string;
  try {
    text = readFileSync(join(storeDir, 'ledger'), 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter((line) => line.trim().length > 0)
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

// ---------------------------------------------------------------------------------------------
// A login-like session hopping through hosts (paper fig. 1: the intruder's chain H1 .. Hn)

/** One hop of a `HopChain`: the connection from `from` to `to`'s session port. */
export interface Hop {
  readonly from: TestHost;
  readonly to: TestHost;
  /** The client's port on `from` (the CL_PORT of a query `to` sends to `from`). */
  readonly clientPort: number;
  /** The session port on `to` (the SV_PORT of that query). */
  readonly serverPort: number;
}

/** A session typed on the first host, relayed shell by shell to the last. */
export interface HopChain {
  /** `socat - TCP:<second host>` on the first host: the user's terminal. */
  readonly user: ChildProcess;
  /** hops[i] goes from hosts[i] to hosts[i + 1]. */
  readonly hops: readonly Hop[];
  /** Writes a line (a newline is added) to the innermost shell. */
  type(line: string): void;
  /** Everything the session printed back to the user so far. */
  output(): string;
  /** Ends the user's input and stops the user's client and every listener. Idempotent. */
  close(): Promise<void>;
}

/** Where `to` holds an established connection from `from` to its `port` (polled, bounded). */
async function waitForInbound(from: TestHost, to: TestHost, port: number, known: ReadonlySet<number>, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { stdout } = await to.exec(['ss', '-Htn', 'state', 'established', `sport = :${port}`]);
    // Lines: Recv-Q Send-Q Local:Port Peer:Port (state filtered, so no state column).
    for (const line of stdout.split('\n')) {
      const peer = line.trim().split(/\s+/)[3] ?? '';
      const colon = peer.lastIndexOf(':');
      const clientPort = Number(peer.slice(colon + 1));
      if (peer.slice(0, colon) === from.address && !known.has(clientPort)) return clientPort;
    }
    if (Date.now() > deadline) throw new Error(`No connection from ${from.name} reached ${to.name}:${port} within ${timeoutMs} ms`);
    await delay(20);
  }
}

/**
 * Builds the chain of a remote-login session through `hosts` (at least two). Every host but the
 * first runs a login-like service on `port` (default 2222): `socat TCP-LISTEN:PORT,fork
 * EXEC:'/bin/sh -i',pty,setsid,ctty,stderr` — a shell on its own terminal and session, like a
 * telnetd or sshd child (paper 3.2, figures 7 and 9). The user on the first host connects to the
 * second; then, one line at a time, each shell is told to run `socat - TCP:<next host>:PORT`.
 * Each step waits (bounded by `timeoutMs`, default 10 s) until the next host sees the connection.
 * With `pty: false` the shells run on plain socket pairs instead of terminals.
 */
export async function startHopChain(hosts: readonly TestHost[], options: { port?: number; pty?: boolean; timeoutMs?: number } = {}): Promise<HopChain> {
  const port = options.port ?? 2222;
  const timeoutMs = options.timeoutMs ?? 10_000;
  const [first, second] = hosts;
  if (first === undefined || second === undefined) throw new Error('Cannot build a hop chain of fewer than two hosts');
  const shell = options.pty === false ? 'EXEC:/bin/sh,stderr' : 'EXEC:/bin/sh -i,pty,setsid,ctty,stderr';
  const listeners: ChildProcess[] = [];
  let user: ChildProcess | undefined;
  let closing: Promise<void> | undefined;
  let output = '';
  const close = (): Promise<void> => {
    closing ??= (async () => {
      const all = [...(user === undefined ? [] : [user]), ...listeners];
      user?.stdin?.end();
      const gone = all.map((child) =>
        child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise<void>((resolve) => child.once('exit', () => resolve())),
      );
      for (const child of all) child.kill('SIGTERM');
      await Promise.all(gone);
    })();
    return closing;
  };
  try {
    for (const host of hosts.slice(1)) {
      listeners.push(host.spawn(['socat', `TCP-LISTEN:${port},bind=${host.address},reuseaddr,fork`, shell], { stdio: 'ignore' }));
      await host.waitForListener(port, { timeoutMs });
    }
    const client = first.spawn(['socat', '-', `TCP:${second.address}:${port}`], { stdio: ['pipe', 'pipe', 'pipe'] });
    user = client;
    client.stdout?.setEncoding('utf8');
    client.stdout?.on('data', (chunk: string) => (output += chunk));
    client.stdin?.on('error', () => undefined);
    const hops: Hop[] = [];
    for (const [index, to] of hosts.entries()) {
      const from = hosts[index - 1];
      if (index === 0 || from === undefined) continue;
      if (index >= 2) client.stdin?.write(`socat - TCP:${to.address}:${port}\n`);
      const known = new Set(hops.filter((hop) => hop.to === to).map((hop) => hop.clientPort));
      hops.push({ from, to, clientPort: await waitForInbound(from, to, port, known, timeoutMs), serverPort: port });
    }
    return {
      user: client,
      hops,
      type(line: string) {
        client.stdin?.write(`${line}\n`);
      },
      output: () => output,
      close,
    };
  } catch (error: unknown) {
    await close();
    throw error;
  }
}
