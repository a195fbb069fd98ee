/**
 * Real process structures for SV integration tests: detached launching (so the structures hang
 * from init, not from the test runner, whose pipes would pull the whole test harness into a
 * closure), bounded polling of `/proc`, and fixed free ports.
 */
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { createServer } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * Polls `condition` until it returns a value other than undefined/false, every `intervalMs`,
 * for at most `timeoutMs`; throws with `what` in the message otherwise.
 */
export async function waitFor<T>(
  what: string,
  condition: () => T | undefined | false | Promise<T | undefined | false>,
  options: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<T> {
  const deadline = Date.now() + (options.timeoutMs ?? 10_000);
  for (;;) {
    const value = await condition();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await delay(options.intervalMs ?? 20);
  }
}

/** A detached process (its own session, re-parented to init) and what it started. */
export interface DetachedProcess {
  /** The pid of the launched program (session and process group leader). */
  readonly pid: number;
  /** SIGKILLs the process group and every process known to descend from `pid`. Idempotent. */
  kill(): void;
}

const DAEMONIZE = `
import os, sys
r, w = os.pipe()
if os.fork() == 0:
    os.close(r)
    if os.fork() != 0:
        os._exit(0)
    os.setsid()
    null = os.open('/dev/null', os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    if null > 2:
        os.close(null)
    os.write(w, (str(os.getpid()) + '\\n').encode())
    # Descriptors inherited from whoever ran the tests (a CI runner's pipes) must not link
    # the structure to the harness.
    for name in os.listdir('/proc/self/fd'):
        if int(name) > 2:
            try:
                os.close(int(name))
            except OSError:
                pass
    try:
        os.execvp(sys.argv[1], sys.argv[1:])
    finally:
        os._exit(127)
os.close(w)
print(os.read(r, 64).decode().strip(), flush=True)
`;

/**
 * Starts `argv` double-forked in a new session with stdin, stdout and stderr on /dev/null, so
 * that its parent is init and no descriptor links it to the test process. Resolves with its pid.
 */
export async function startDetached(argv: readonly string[]): Promise<DetachedProcess> {
  const { stdout } = await run('/usr/bin/python3', ['-c', DAEMONIZE, ...argv], { timeout: 10_000 });
  const pid = Number(stdout.trim());
  if (!Number.isSafeInteger(pid) || pid <= 0) throw new Error(`Cannot start ${argv.join(' ')}: got ${JSON.stringify(stdout)}`);
  const known = new Set<number>([pid]);
  // Remember descendants while they are alive: a killed parent's children are re-parented.
  const remember = (): void => {
    for (const child of descendantsOf(pid)) known.add(child);
  };
  return {
    pid,
    kill() {
      remember();
      killQuietly(-pid);
      for (const one of known) killQuietly(one);
    },
  };
}

/** SIGKILL, ignoring processes that are gone already. */
export function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // ESRCH: already gone.
  }
}

/** Fields of `/proc/PID/stat` the tests need, or undefined when the process is gone. */
export interface ProcStat {
  readonly pid: number;
  readonly name: string;
  readonly state: string;
  readonly ppid: number;
  readonly pgid: number;
  readonly sid: number;
}

export function readStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  const close = text.lastIndexOf(')');
  const name = text.slice(text.indexOf('(') + 1, close);
  const fields = text.slice(close + 2).split(' ');
  return {
    pid,
    name,
    state: fields[0] ?? '?',
    ppid: Number(fields[1]),
    pgid: Number(fields[2]),
    sid: Number(fields[3]),
  };
}

function allPids(): number[] {
  return readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .map(Number);
}

/** Every live descendant of `root` (not zombies), found by scanning ppids. */
export function descendantsOf(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const pid of allPids()) {
    const stat = readStat(pid);
    if (stat === undefined || stat.state === 'Z') continue;
    const list = children.get(stat.ppid);
    if (list === undefined) children.set(stat.ppid, [pid]);
    else list.push(pid);
  }
  const found: number[] = [];
  const queue = [root];
  for (let next = queue.shift(); next !== undefined; next = queue.shift()) {
    for (const child of children.get(next) ?? []) {
      found.push(child);
      queue.push(child);
    }
  }
  return found;
}

/** The live direct children of `pid` with the given command name. */
export function childrenNamed(pid: number, name: string): number[] {
  return descendantsOf(pid).filter((child) => {
    const stat = readStat(child);
    return stat !== undefined && stat.ppid === pid && stat.name === name;
  });
}

/** The socket and pipe inodes `pid` holds, by descriptor number. */
export function readFdLinks(pid: number): Map<number, string> {
  const links = new Map<number, string>();
  let names: string[];
  try {
    names = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return links;
  }
  for (const name of names) {
    try {
      links.set(Number(name), readlinkSync(`/proc/${pid}/fd/${name}`));
    } catch {
      // Closed meanwhile.
    }
  }
  return links;
}

/** A row of `/proc/net/tcp`, decoded (IPv4 only: the structures here are IPv4). */
export interface ProcNetTcpRow {
  readonly local: { address: string; port: number };
  readonly remote: { address: string; port: number };
  /** Kernel state number: 1 ESTABLISHED, 10 LISTEN, ... */
  readonly state: number;
  readonly inode: number;
}

function decodeEndpoint(hex: string): { address: string; port: number } {
  const [addressHex = '', portHex = '0'] = hex.split(':');
  const bytes = [0, 2, 4, 6].map((at) => Number.parseInt(addressHex.slice(at, at + 2), 16)).reverse();
  return { address: bytes.join('.'), port: Number.parseInt(portHex, 16) };
}

/** The IPv4 TCP table of this network namespace. */
export function readProcNetTcp(): ProcNetTcpRow[] {
  const lines = readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1);
  const rows: ProcNetTcpRow[] = [];
  for (const line of lines) {
    const fields = line.trim().split(/\s+/);
    if (fields.length < 10) continue;
    rows.push({
      local: decodeEndpoint(fields[1] ?? ''),
      remote: decodeEndpoint(fields[2] ?? ''),
      state: Number.parseInt(fields[3] ?? '0', 16),
      inode: Number(fields[9]),
    });
  }
  return rows;
}

/** Whether some IPv4 socket listens on `port`. */
export function isListening(port: number): boolean {
  return readProcNetTcp().some((row) => row.state === 10 && row.local.port === port);
}

/**
 * The pid among `pids` holding an ESTABLISHED IPv4 connection that matches `match`, with the
 * connection, or undefined while there is none (bounded polling helper for accept/connect).
 */
export function findHeldConnection(
  pids: readonly number[],
  match: (row: ProcNetTcpRow) => boolean,
): { pid: number; row: ProcNetTcpRow } | undefined {
  const rows = readProcNetTcp().filter((row) => row.state === 1 && row.inode > 0 && match(row));
  for (const pid of pids) {
    const links = [...readFdLinks(pid).values()];
    for (const row of rows) if (links.includes(`socket:[${row.inode}]`)) return { pid, row };
  }
  return undefined;
}

/** The host's ephemeral port range (connections outside it with no listener are of unknown direction). */
export function ephemeralRange(): { low: number; high: number } {
  const [low = 32768, high = 60999] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')
    .trim()
    .split(/\s+/)
    .map(Number);
  return { low, high };
}

async function isFree(port: number): Promise<boolean> {
  const server = createServer();
  return new Promise((resolve) => {
    server.once('error', () => resolve(false));
    server.listen({ port, host: '0.0.0.0', exclusive: true }, () => {
      server.close(() => resolve(true));
    });
  });
}

/**
 * A free TCP port below the ephemeral range, for listeners a structure opens itself: an
 * accepted connection on it whose listener closed (nc -l, socat without fork) is then of
 * `unknown` direction, never mistaken for an outbound one with an ephemeral port.
 */
export async function freeFixedPort(): Promise<number> {
  const { low } = ephemeralRange();
  const span = Math.max(1, low - 20_000);
  for (let attempt = 0; attempt < 200; attempt += 1) {
    const port = 20_000 + Math.floor(Math.random() * span);
    if (await isFree(port)) return port;
  }
  throw new Error('Cannot find a free port below the ephemeral range');
}
