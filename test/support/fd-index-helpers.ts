/**
 * Fixtures of the persistent descriptor index's unit tests (src/host/persistent-fd-index.test.ts):
 * python3 helper processes that open pipes and sockets when told to, indexes closed at the end
 * of each test, and full scanFds passes to compare with. Importing it registers the hooks that
 * close each test's indexes and end the helpers (in their own process groups only).
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as delay } from 'node:timers/promises';
import { after, afterEach } from 'node:test';
import { loadNativeAddon, nativeFdIndexFunctions, type RawFdScan } from '../../src/host/native-addon.js';
import { createPersistentFdIndex, type FdHolder, type PersistentFdIndex, type PersistentFdIndexOptions } from '../../src/host/persistent-fd-index.js';
import { parseProcStat } from '../../src/host/proc-stat.js';
import type { OpenFd } from '../../src/host/types.js';
import { killProcessGroups } from './process-groups.js';

const python = findPython();
const binding = loadNativeAddon().binding;
const scanFds = binding?.scanFds?.bind(binding);
export const skip =
  nativeFdIndexFunctions() === undefined || scanFds === undefined
    ? 'the addon is not built with the fd index'
    : python === undefined
      ? 'needs python3'
      : false;
export const dir = mkdtempSync(join(tmpdir(), 'stopd-fd-index-'));
export const started: ChildProcess[] = [];
const indexes: PersistentFdIndex[] = [];

// Each test's indexes end with it: their keeper threads and kept files would blur the next.
afterEach(() => {
  for (const index of indexes.splice(0)) index.close();
});

after(() => {
  // Started detached: each leads its own process group; end the groups (theirs only).
  killProcessGroups(started);
  rmSync(dir, { recursive: true, force: true });
});

function findPython(): string | undefined {
  // The interpreter itself, not a version manager's shell wrapper: quicker to start.
  const found = spawnSync('python3', ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' });
  return found.status === 0 ? found.stdout.trim() || undefined : undefined;
}

// A single-threaded helper that sleeps in read(0) and does what each line says, answering one line.
export const IDLE = `
import os, socket, sys
keep = []
def say(*values):
    sys.stdout.write(' '.join(str(v) for v in values) + '\\n')
    sys.stdout.flush()
say('ready')
for line in iter(sys.stdin.readline, ''):
    command = line.split()
    if command[0] == 'pipe':
        r, w = os.pipe()
        keep += [r, w]
        say(r, w, os.fstat(r).st_ino)
    elif command[0] == 'socket':
        a, b = socket.socketpair()
        keep += [a, b]
        say(a.fileno(), b.fileno(), os.fstat(a.fileno()).st_ino, os.fstat(b.fileno()).st_ino)
    elif command[0] == 'dup2':
        target = int(command[1])
        r, w = os.pipe()
        os.dup2(r, target)
        os.close(r)
        keep.append(w)
        say(target, w, os.fstat(target).st_ino)
`;

// Spins (state R) until the flag file exists, opens a pipe, and spins on.
export const BUSY = `
import os, sys
print('ready', flush=True)
while not os.path.exists(sys.argv[1]):
    pass
r, w = os.pipe()
print(r, w, os.fstat(r).st_ino, flush=True)
while True:
    pass
`;

// The main thread sleeps in join(); a second thread opens a pipe when a line arrives.
export const THREADED = `
import os, sys, threading
def work():
    sys.stdin.readline()
    r, w = os.pipe()
    print(r, w, os.fstat(r).st_ino, flush=True)
    sys.stdin.readline()
thread = threading.Thread(target=work)
thread.start()
print('ready', flush=True)
thread.join()
`;

// The leader sleeps, a reader thread waits on stdin, argv[1] more (2 by default) wait on an event.
// "thread" starts one more, which opens a pipe, answers, and waits; "end" makes that one close
// its pipe and exit (the reader answers 0 once it has).
export const THREADS = `
import os, sys, threading, time
def say(*values):
    sys.stdout.write(' '.join(str(v) for v in values) + '\\n')
    sys.stdout.flush()
never = threading.Event()
for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 2):
    threading.Thread(target=never.wait, daemon=True).start()
stop = threading.Event()
opener = None
def open_pipe():
    r, w = os.pipe()
    say(r, w, os.fstat(r).st_ino)
    stop.wait()
    os.close(r)
    os.close(w)
def read_commands():
    global opener
    for line in iter(sys.stdin.readline, ''):
        command = line.split()
        if command[0] == 'thread':
            opener = threading.Thread(target=open_pipe, daemon=True)
            opener.start()
        elif command[0] == 'end':
            stop.set()
            opener.join()
            say(0)
threading.Thread(target=read_commands, daemon=True).start()
say('ready')
while True:
    time.sleep(3600)
`;

// Three threads wait for ever; a fourth spins until the flag file (argv[1]) exists, then opens
// a pipe, answers and ends: a multi-threaded process busy for a while, then idle.
export const SPIN_THEN_IDLE = `
import os, sys, threading, time
never = threading.Event()
for _ in range(3):
    threading.Thread(target=never.wait, daemon=True).start()
def spin():
    while not os.path.exists(sys.argv[1]):
        pass
    r, w = os.pipe()
    print(r, w, os.fstat(r).st_ino, flush=True)
threading.Thread(target=spin).start()
print('ready', flush=True)
while True:
    time.sleep(3600)
`;

/** What `holders` answers for a pipe whose two ends are descriptors `r` and `w` of `pid`. */
export function pipeHeldBy(pid: number, r: number, w: number): FdHolder[] {
  return [
    { pid, fd: r, kind: 'pipe' },
    { pid, fd: w, kind: 'pipe' },
  ];
}

/** Whether `pid` is a kernel thread now (PF_KTHREAD in the flags of its stat). */
export function isKernelThread(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const flags = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[6]);
    return (flags & 0x00200000) !== 0;
  } catch {
    return false;
  }
}

/** A python3 helper process talking one line per command. */
export interface Helper {
  readonly pid: number;
  readonly child: ChildProcess;
  /** Writes `command` and resolves with the next line the helper prints, split into numbers. */
  ask(command: string): Promise<number[]>;
  /** The next line the helper prints. */
  next(): Promise<string>;
  /** Kills it and resolves once it is reaped. */
  kill(): Promise<void>;
}

export async function startHelper(script: string, args: string[] = []): Promise<Helper> {
  const child = spawn(python ?? 'python3', ['-c', script, ...args], { stdio: ['pipe', 'pipe', 'inherit'], detached: true });
  started.push(child);
  const { pid } = child;
  if (pid === undefined || child.stdout === null || child.stdin === null) throw new Error('Cannot start python3');
  const stdin = child.stdin;
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const next = async (): Promise<string> => {
    const line = await lines.next();
    if (line.done === true) throw new Error(`Helper ${pid} ended`);
    return line.value;
  };
  assert.equal(await next(), 'ready');
  return {
    pid,
    child,
    next,
    async ask(command) {
      stdin.write(`${command}\n`);
      return (await next()).split(' ').map(Number);
    },
    async kill() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGKILL');
      await exited;
    },
  };
}

export function openIndex(options: PersistentFdIndexOptions = {}): PersistentFdIndex {
  const index = createPersistentFdIndex(options);
  assert.ok(index, 'the addon has the fd index');
  indexes.push(index);
  return index;
}

/**
 * Refreshes until `pid` is no longer rescanned: it sleeps, and the index trusts its schedstat.
 * A helper that just answered may need a refresh or two (its last switch-out is still in
 * progress when the first one reads it). With a tiny maxKeptFiles nothing may be trusted.
 */
export async function waitQuiet(index: PersistentFdIndex, pid: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (!index.refresh().rescanned.includes(pid)) return;
    if (Date.now() > deadline) throw new Error(`Process ${pid} is rescanned at every refresh although it sleeps`);
    await delay(5);
  }
}

/** The holders of `inode` in a full scan, in the order the index uses. */
export function scanHolders(scan: RawFdScan, inode: number): FdHolder[] {
  const out: FdHolder[] = [];
  const { entries } = scan;
  for (let i = 0; i < entries.length; i += 5) {
    if (entries[i + 3] !== inode) continue;
    out.push({ pid: entries[i] ?? 0, fd: entries[i + 1] ?? 0, kind: entries[i + 2] === 0 ? 'socket' : 'pipe' });
  }
  return out.sort((a, b) => a.pid - b.pid || a.fd - b.fd);
}

/** The descriptors of `pid` in a full scan, by fd. */
export function scanFdsOf(scan: RawFdScan, pid: number): OpenFd[] {
  const out: OpenFd[] = [];
  const { entries } = scan;
  for (let i = 0; i < entries.length; i += 5) {
    if (entries[i] !== pid) continue;
    const fd = entries[i + 1] ?? 0;
    const inode = entries[i + 3] ?? 0;
    const end = entries[i + 4] === 2 ? 'both' : entries[i + 4] === 1 ? 'write' : 'read';
    out.push(entries[i + 2] === 0 ? { fd, kind: 'socket', inode } : { fd, kind: 'pipe', inode, end });
  }
  return out.sort((a, b) => a.fd - b.fd);
}

export function fullScan(): RawFdScan {
  assert.ok(scanFds);
  return scanFds('/proc');
}

/** Polls `probe` until it returns a value, for at most 10 s: readiness without fixed sleeps. */
export async function waitForValue<T>(what: string, probe: () => T | undefined): Promise<T> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await delay(10);
  }
}

export function ppidOf(pid: number): number | undefined {
  try {
    return parseProcStat(readFileSync(`/proc/${pid}/stat`, 'utf8')).ppid;
  } catch {
    return undefined; // exited meanwhile
  }
}

/** A link's text, or '' when it is gone. */
export function readLink(path: string): string {
  try {
    return readlinkSync(path);
  } catch {
    return '';
  }
}

export function hasCc(): boolean {
  return spawnSync('cc', ['--version'], { stdio: 'ignore' }).status === 0;
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}
