/**
 * Login-style hops across test hosts: each relay host runs a shell behind a socat listener
 * (`socat TCP-LISTEN:2222,fork EXEC:/bin/sh` — what a telnet/ssh daemon does, minus the
 * authentication), and the user on the first host types `exec socat - TCP:<next>:2222` to hop
 * on. Used by the recursion tests and `npm run demo`.
 */
import type { ChildProcess } from 'node:child_process';
import { STOPCTL } from './daemon.js';
import type { TestHost } from './testnet.js';

/** The port the relay shells listen on. */
export const SHELL_PORT = 2222;

/** A user session hopping through hosts. */
export interface HopSession {
  /** The user's client on the first host; its stdin is the keyboard. */
  readonly user: ChildProcess;
  /** Types a line into the innermost shell. */
  type(line: string): void;
}

/** Starts the login-style listener on `host` (as `uid` if given). */
export async function startShellService(host: TestHost, options: { uid?: number } = {}): Promise<void> {
  host.spawn(['socat', `TCP-LISTEN:${SHELL_PORT},reuseaddr,fork`, 'EXEC:/bin/sh,stderr'], {
    stdio: 'ignore',
    ...(options.uid === undefined ? {} : { uid: options.uid }),
  });
  await host.waitForListener(SHELL_PORT);
}

/**
 * Logs in from `from` through every host of `hops` in turn (each must run startShellService),
 * and waits (bounded) until the last hop's shell connection is established.
 */
export async function hopThrough(from: TestHost, hops: readonly TestHost[], options: { timeoutMs?: number } = {}): Promise<HopSession> {
  const [first, ...rest] = hops;
  if (first === undefined) throw new Error('hopThrough needs at least one hop');
  const user = from.spawn(['socat', '-', `TCP:${first.address}:${SHELL_PORT}`], { stdio: ['pipe', 'ignore', 'ignore'] });
  const type = (line: string): void => {
    user.stdin?.write(`${line}\n`);
  };
  const wait = (host: TestHost, fromAddress: string): Promise<number> =>
    peerPort(host, SHELL_PORT, { fromAddress, ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }) });
  let previous = from;
  let current = first;
  await wait(current, previous.address);
  for (const next of rest) {
    type(`exec socat - TCP:${next.address}:${SHELL_PORT}`);
    previous = current;
    current = next;
    await wait(current, previous.address);
  }
  return { user, type };
}

/**
 * The remote port of an established connection into `host`'s `localPort` (from `fromAddress`
 * when given), waiting for it (bounded) to appear.
 */
export async function peerPort(host: TestHost, localPort: number, options: { fromAddress?: string; timeoutMs?: number } = {}): Promise<number> {
  const deadline = Date.now() + (options.timeoutMs ?? 10_000);
  for (;;) {
    const result = await host.exec(['ss', '-Htn', 'state', 'established', `( sport = :${localPort} )`]);
    for (const line of result.stdout.split('\n')) {
      const fields = line.trim().split(/\s+/);
      const match = /^(.+):(\d+)$/.exec(fields[fields.length - 1] ?? '');
      if (match !== null && (options.fromAddress === undefined || match[1] === options.fromAddress)) return Number(match[2]);
    }
    if (Date.now() > deadline) {
      throw new Error(`No established connection${options.fromAddress === undefined ? '' : ` from ${options.fromAddress}`} to ${host.name}:${localPort}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The remote port of the shell connection into `host` from `fromAddress`. */
export function shellConnectionPort(host: TestHost, fromAddress: string): Promise<number> {
  return peerPort(host, SHELL_PORT, { fromAddress });
}

/** Runs `stopctl query` inside `host`; resolves with the reply line and exit status. */
export async function queryFrom(
  host: TestHost,
  target: string,
  ports: { client: number; server: number },
  options: { type?: string; sid?: string; ip?: string } = {},
): Promise<{ code: number | null; line: string; stderr: string }> {
  const args = [process.execPath, STOPCTL, 'query', target, String(ports.client), String(ports.server)];
  if (options.type !== undefined) args.push('--type', options.type);
  if (options.sid !== undefined) args.push('--sid', options.sid);
  if (options.ip !== undefined) args.push('--ip', options.ip);
  const result = await host.exec(args);
  return { code: result.code, line: result.stdout.trim(), stderr: result.stderr };
}

/** Polls `condition` every 50 ms until it holds or `timeoutMs` passes (then throws `what`). */
export async function eventually<T>(what: string, condition: () => T | undefined | false, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = condition();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
