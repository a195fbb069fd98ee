import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

/** The compiled programs, relative to this file in dist/test/support. */
export const STOPD = resolve(import.meta.dirname, '../../src/cli/stopd.js');
export const STOPCTL = resolve(import.meta.dirname, '../../src/cli/stopctl.js');

/** A real stopd process on loopback, for integration tests. */
export interface DaemonHandle {
  readonly process: ChildProcess;
  readonly storeDir: string;
  /** The first bound endpoint. */
  readonly host: string;
  readonly port: number;
  /** All bound endpoints, as printed by the daemon. */
  readonly endpoints: { host: string; port: number }[];
  /** Everything written to stderr so far. */
  stderr(): string;
  /** SIGTERM, then resolves with the exit code. Removes the store unless `keepStore`. */
  stop(): Promise<number | null>;
}

/**
 * Starts `stopd` with `args` (default: listen on 127.0.0.1 port 0) and a fresh store directory,
 * and waits (bounded) for its "listening on" lines.
 */
export async function startDaemon(
  args: string[] = [],
  options: {
    listen?: string[];
    storeDir?: string;
    keepStore?: boolean;
    timeoutMs?: number;
    /** A command that runs the daemon, e.g. `['setpriv', '--reuid=…', '--']`. */
    wrap?: string[];
  } = {},
): Promise<DaemonHandle> {
  const storeDir = options.storeDir ?? mkdtempSync(join(tmpdir(), 'stopd-store-'));
  const listen = (options.listen ?? ['127.0.0.1:0']).flatMap((address) => ['--listen', address]);
  const argv = [process.execPath, STOPD, ...listen, '--store', storeDir, ...args];
  const [command = process.execPath, ...rest] = [...(options.wrap ?? []), ...argv];
  const child = spawn(command, rest, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    stderr += chunk;
  });
  const wanted = options.listen?.length ?? 1;
  const endpoints = await new Promise<{ host: string; port: number }[]>((resolvePromise, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`stopd did not start within ${options.timeoutMs ?? 10_000} ms:\n${stderr}`));
    }, options.timeoutMs ?? 10_000);
    const check = (): void => {
      const found = [...stderr.matchAll(/listening on \[?([^\]\s]+?)\]?:(\d+)\n/g)].map((m) => ({
        host: m[1] ?? '',
        port: Number(m[2]),
      }));
      if (found.length >= wanted) {
        clearTimeout(timer);
        child.stderr?.off('data', check);
        resolvePromise(found);
      }
    };
    child.stderr?.on('data', check);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`stopd exited with ${code} before listening:\n${stderr}`));
    });
  }).catch((error: unknown) => {
    // No handle will be returned to stop it: remove the store made for it here and now.
    if (options.storeDir === undefined) rmSync(storeDir, { recursive: true, force: true });
    throw error;
  });
  const first = endpoints[0] ?? { host: '127.0.0.1', port: 0 };
  let stopping: Promise<number | null> | undefined;
  return {
    process: child,
    storeDir,
    host: first.host,
    port: first.port,
    endpoints,
    stderr: () => stderr,
    stop() {
      stopping ??= new Promise<number | null>((resolvePromise) => {
        if (child.exitCode !== null) {
          resolvePromise(child.exitCode);
          return;
        }
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        child.once('exit', (code) => {
          clearTimeout(timer);
          resolvePromise(code);
        });
        child.kill('SIGTERM');
      }).finally(() => {
        if (options.keepStore !== true && options.storeDir === undefined) rmSync(storeDir, { recursive: true, force: true });
      });
      return stopping;
    },
  };
}

/**
 * Sends `payload` (raw, the caller adds line ends) on a new connection and collects reply
 * lines until `expectLines` arrived or the daemon closes; bounded by `timeoutMs`.
 */
export function exchange(
  target: { host: string; port: number },
  payload: string | Buffer,
  options: { expectLines?: number; timeoutMs?: number; localAddress?: string } = {},
): Promise<{ lines: string[]; closedByServer: boolean }> {
  return new Promise((resolvePromise, reject) => {
    const socket = connect({
      host: target.host,
      port: target.port,
      ...(options.localAddress === undefined ? {} : { localAddress: options.localAddress }),
    });
    let data = '';
    let closedByServer = false;
    const expect = options.expectLines ?? 1;
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`No complete reply within ${options.timeoutMs ?? 5000} ms; got ${JSON.stringify(data)}`));
    }, options.timeoutMs ?? 5000);
    const done = (): void => {
      clearTimeout(timer);
      socket.destroy();
      resolvePromise({ lines: data.split('\r\n').filter((l) => l.length > 0), closedByServer });
    };
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write(payload));
    socket.on('data', (chunk: string) => {
      data += chunk;
      if (data.split('\r\n').length - 1 >= expect) done();
    });
    socket.on('end', () => {
      closedByServer = true;
      done();
    });
    socket.on('error', (error: NodeJS.ErrnoException) => {
      // A reset after connecting is the server closing on us (it destroys what it will not serve).
      if (error.code === 'ECONNRESET') {
        closedByServer = true;
        done();
        return;
      }
      clearTimeout(timer);
      reject(error);
    });
  });
}
