// The Linux process view on real processes: pipes between real commands, a comm the kernel
// prints with spaces and parentheses, another user's process, sockets shared by parent and
// child, processes that exit while being read.
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { after, test } from 'node:test';
import { createLinuxProcessTable, listPids } from '../src/host/linux-processes.js';
import { loadNativeAddon } from '../src/host/native-addon.js';
import { parseProcStat } from '../src/host/proc-stat.js';
import type { OpenFd, ProcessInfo } from '../src/host/types.js';
import { killProcessGroups } from './support/process-groups.js';

const isRoot = process.getuid?.() === 0;
const NOBODY = 65534;
const dir = mkdtempSync(join(tmpdir(), 'stopd-procs-'));
const started: ChildProcess[] = [];

after(() => {
  // Started detached: each leads its own process group; end the groups (theirs only).
  killProcessGroups(started);
  rmSync(dir, { recursive: true, force: true });
});

/** Starts a child in its own session (no controlling terminal) and remembers it for cleanup. */
function start(command: string, args: string[], options: Parameters<typeof spawn>[2] = {}): ChildProcess & { pid: number } {
  const child = spawn(command, args, { stdio: 'ignore', detached: true, ...options });
  started.push(child);
  const { pid } = child;
  if (pid === undefined) throw new Error(`Cannot start ${command}`);
  return Object.assign(child, { pid });
}

/** Polls `probe` until it returns a value, for at most `timeoutMs`: readiness without fixed sleeps. */
async function waitFor<T>(what: string, probe: () => T | undefined, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await delay(10);
  }
}

/** Pids whose parent is `ppid`, read straight from /proc/PID/stat. */
function childrenOf(ppid: number): { pid: number; name: string }[] {
  const out: { pid: number; name: string }[] = [];
  for (const pid of listPids()) {
    try {
      const stat = parseProcStat(readFileSync(`/proc/${pid}/stat`, 'utf8'));
      if (stat.ppid === ppid) out.push({ pid, name: stat.name });
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

/** The process, once `ready` holds for a fresh snapshot of it. */
async function waitForProcess(pid: number, ready: (info: ProcessInfo) => boolean): Promise<ProcessInfo> {
  return waitFor(`process ${pid}`, () => {
    const info = createLinuxProcessTable().getProcess(pid);
    return info !== undefined && ready(info) ? info : undefined;
  });
}

function sockets(fds: readonly OpenFd[]): number[] {
  return fds.filter((fd) => fd.kind === 'socket').map((fd) => fd.inode);
}

async function listenLoopback(): Promise<{ server: Server; port: number; accepted: Socket[] }> {
  const accepted: Socket[] = [];
  const server = createServer((socket) => accepted.push(socket));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  assert.ok(address !== null && typeof address === 'object');
  return { server, port: address.port, accepted };
}

function closeServer(server: Server, accepted: Socket[]): Promise<void> {
  for (const socket of accepted) socket.destroy();
  return new Promise((resolve) => server.close(() => resolve()));
}

void test('getProcess finds both ends of a shell pipe with the same inode and findHolders both pids', async () => {
  const shell = start('sh', ['-c', 'sleep 30 | cat']);
  const [sleep, cat] = await waitFor('sleep and cat', () => {
    const kids = childrenOf(shell.pid);
    const s = kids.find((kid) => kid.name === 'sleep');
    const c = kids.find((kid) => kid.name === 'cat');
    return s && c ? [s.pid, c.pid] : undefined;
  });
  // After exec the pipe is on stdout of sleep and stdin of cat.
  const writer = await waitForProcess(sleep, (info) => info.fds.some((fd) => fd.fd === 1 && fd.kind === 'pipe'));
  const reader = await waitForProcess(cat, (info) => info.fds.some((fd) => fd.fd === 0 && fd.kind === 'pipe'));
  const out = writer.fds.find((fd) => fd.fd === 1);
  const inp = reader.fds.find((fd) => fd.fd === 0);
  assert.ok(out?.kind === 'pipe' && inp?.kind === 'pipe');
  assert.equal(out.end, 'write');
  assert.equal(inp.end, 'read');
  assert.equal(out.inode, inp.inode);
  // The shell closes its copies of the pipe right after forking; wait until it has.
  const holders = await waitFor('the shell to close its pipe ends', () => {
    const found = createLinuxProcessTable().findHolders(out.inode);
    return found.includes(shell.pid) ? undefined : found;
  });
  assert.deepEqual(holders, [sleep, cat].sort((a, b) => a - b));
});

void test('getProcess reads a comm with spaces and parentheses and its other fields', async () => {
  const name = 'x) (y z)';
  const link = join(dir, name);
  symlinkSync('/bin/sleep', link);
  const before = Date.now();
  const child = start(link, ['30']);
  const info = await waitForProcess(child.pid, (p) => p.name === name);
  assert.equal(info.pid, child.pid);
  assert.equal(info.ppid, process.pid);
  assert.deepEqual(info.cmdline, [link, '30']);
  // detached: the child leads a new session and process group, without a terminal.
  assert.equal(info.sid, child.pid);
  assert.equal(info.pgid, child.pid);
  assert.equal(info.tty, null);
  assert.equal(info.nice, 0);
  assert.equal(info.priority, 20);
  const startTime = Date.parse(info.startTime);
  // btime has one-second resolution, so allow a little slack before `before`.
  assert.ok(Math.abs(startTime - before) < 60_000, `start time ${info.startTime} is not near now`);
});

void test('getProcess reports real and effective uid of another user and findHolders finds its socket', { skip: isRoot ? false : 'needs root: starts a process as nobody' }, async () => {
  const { server, port, accepted } = await listenLoopback();
  try {
    const child = start(
      process.execPath,
      ['-e', `require('net').connect(${port}, '127.0.0.1'); setInterval(() => {}, 1000);`],
      { uid: NOBODY, gid: NOBODY, cwd: '/' },
    );
    const info = await waitForProcess(child.pid, (p) => sockets(p.fds).length === 1);
    assert.deepEqual(info.uid, { real: NOBODY, effective: NOBODY });
    const [inode] = sockets(info.fds);
    assert.ok(inode !== undefined && inode > 0);
    assert.deepEqual(createLinuxProcessTable().findHolders(inode, NOBODY), [child.pid]);
    assert.deepEqual(createLinuxProcessTable().findHolders(inode), [child.pid]);
    // With a wrong owner hint the holder is still reported.
    assert.deepEqual(createLinuxProcessTable().findHolders(inode, 0), [child.pid]);
  } finally {
    await closeServer(server, accepted);
  }
});

void test('findHolders reports a parent and its child sharing one socket', async () => {
  const { server, port, accepted } = await listenLoopback();
  const client = connect(port, '127.0.0.1');
  try {
    await new Promise<void>((resolve, reject) => client.once('connect', resolve).once('error', reject));
    // The socket becomes stdout of the shell, which its background sleep inherits.
    const shell = start('sh', ['-c', 'sleep 30 & wait'], { stdio: ['ignore', client, 'ignore'] });
    const sleep = await waitFor('the background sleep', () => childrenOf(shell.pid).find((kid) => kid.name === 'sleep')?.pid);
    const shellInfo = await waitForProcess(shell.pid, (p) => p.fds.some((fd) => fd.fd === 1));
    const stdout = shellInfo.fds.find((fd) => fd.fd === 1);
    assert.equal(stdout?.kind, 'socket');
    const sleepInfo = await waitForProcess(sleep, (p) => p.name === 'sleep');
    assert.ok(sleepInfo.fds.some((fd) => fd.fd === 1 && fd.kind === 'socket' && fd.inode === stdout.inode));
    // This test process still holds its own descriptor of the same socket.
    const expected = [process.pid, shell.pid, sleep].sort((a, b) => a - b);
    assert.deepEqual(createLinuxProcessTable().findHolders(stdout.inode), expected);
    assert.deepEqual(createLinuxProcessTable().findHolders(stdout.inode, 0), expected);
  } finally {
    client.destroy();
    await closeServer(server, accepted);
  }
});

void test('getProcess reports a named pipe opened read-write as a pipe with the FIFO inode', async () => {
  const fifo = join(dir, 'fifo');
  execFileSync('mkfifo', [fifo]);
  const child = start('sh', ['-c', 'exec 3<>"$1"; exec sleep 30', 'sh', fifo]);
  const info = await waitForProcess(child.pid, (p) => p.name === 'sleep' && p.fds.some((fd) => fd.fd === 3));
  assert.deepEqual(
    info.fds.find((fd) => fd.fd === 3),
    { fd: 3, kind: 'pipe', inode: statSync(fifo).ino, end: 'both' },
  );
  assert.deepEqual(createLinuxProcessTable().findHolders(statSync(fifo).ino), [child.pid]);
});

void test('getProcess returns undefined for a process that has exited, without throwing', async () => {
  const child = start('true', []);
  await new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const table = createLinuxProcessTable();
  assert.equal(table.getProcess(child.pid), undefined);
  assert.equal(table.findHolders(1).includes(child.pid), false);
});

void test('getProcess reads a zombie without throwing', async () => {
  // `true` exits at once; `sleep`, exec'ed in its parent shell, never reaps it.
  const parent = start('sh', ['-c', 'true & exec sleep 30']);
  const zombie = await waitFor('the zombie', () => {
    const kid = childrenOf(parent.pid)[0];
    if (kid === undefined) return undefined;
    const stat = parseProcStat(readFileSync(`/proc/${kid.pid}/stat`, 'utf8'));
    return stat.state === 'Z' ? kid.pid : undefined;
  });
  const info = createLinuxProcessTable().getProcess(zombie);
  assert.ok(info === undefined || info.fds.length === 0);
});

void test('getProcess and findHolders never throw while processes come and go', async () => {
  const churn = start('sh', ['-c', 'while :; do /bin/true; done']);
  await waitFor('the churn loop', () => (childrenOf(churn.pid).length > 0 ? true : undefined));
  for (let round = 0; round < 20; round++) {
    const table = createLinuxProcessTable();
    assert.deepEqual(table.findHolders(Number.MAX_SAFE_INTEGER), []);
    for (const pid of listPids()) {
      const info = table.getProcess(pid);
      if (info !== undefined) assert.equal(info.pid, pid);
    }
  }
});

void test('findHolders and getProcess throw HostLookupError for other users\' descriptors when not root, or skip and list them', { skip: isRoot ? false : 'needs root: starts a process as nobody' }, async () => {
  const moduleUrl = new URL('../src/host/linux-processes.js', import.meta.url).href;
  const script = `
    import(${JSON.stringify(moduleUrl)}).then(({ createLinuxProcessTable }) => {
      const result = {};
      for (const [key, call] of [['holders', (t) => t.findHolders(1)], ['process', (t) => t.getProcess(1)]]) {
        try { call(createLinuxProcessTable()); result[key] = 'no error'; }
        catch (e) { result[key] = { name: e.name, code: e.code, message: e.message }; }
      }
      const skipping = createLinuxProcessTable({ onDenied: 'skip' });
      result.skipped = { holders: skipping.findHolders(1), fds: skipping.getProcess(1)?.fds, denied: skipping.deniedPids().includes(1) };
      process.stdout.write(JSON.stringify(result));
    });`;
  const child = start(process.execPath, ['--input-type=module', '-e', script], {
    uid: NOBODY,
    gid: NOBODY,
    cwd: '/',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
  assert.equal(code, 0);
  const result = JSON.parse(output) as Record<string, { name: string; code: string; message: string } | undefined> & {
    skipped?: unknown;
  };
  for (const key of ['holders', 'process']) {
    assert.equal(result[key]?.name, 'HostLookupError');
    assert.equal(result[key].code, 'ERR_HOST_LOOKUP');
    assert.match(result[key].message, /^Cannot read open files of process 1: permission denied/);
  }
  // Skipping: no socket of pid 1 is reported, and the table says it could not look.
  assert.deepEqual(result.skipped, { holders: [], fds: [], denied: true });
});

void test('findHolders and getProcess give the same answers with the native scan as with the JavaScript scan', { skip: loadNativeAddon().binding?.scanFds ? false : 'the addon is not built with scanFds' }, async () => {
  // A shell pipeline, a FIFO opened read-write, and a socket shared by a parent and its child.
  const pipeline = start('sh', ['-c', 'sleep 30 | cat']);
  const [sleep, cat] = await waitFor('sleep and cat', () => {
    const kids = childrenOf(pipeline.pid);
    const s = kids.find((kid) => kid.name === 'sleep');
    const c = kids.find((kid) => kid.name === 'cat');
    return s && c ? [s.pid, c.pid] : undefined;
  });
  const fifo = join(dir, 'fifo-compare');
  execFileSync('mkfifo', [fifo]);
  const fifoHolder = start('sh', ['-c', 'exec 3<>"$1"; exec sleep 30', 'sh', fifo]);
  const { server, port, accepted } = await listenLoopback();
  const client = connect(port, '127.0.0.1');
  try {
    await new Promise<void>((resolve, reject) => client.once('connect', resolve).once('error', reject));
    const sharer = start('sh', ['-c', 'sleep 30 & wait'], { stdio: ['ignore', client, 'ignore'] });
    const sharerChild = await waitFor('the background sleep', () => childrenOf(sharer.pid).find((kid) => kid.name === 'sleep')?.pid);
    // Settled state: exec done, the pipeline's shell has closed its copies of the pipe.
    const writer = await waitForProcess(sleep, (p) => p.name === 'sleep' && p.fds.some((fd) => fd.fd === 1 && fd.kind === 'pipe'));
    await waitForProcess(cat, (p) => p.name === 'cat' && p.fds.some((fd) => fd.fd === 0 && fd.kind === 'pipe'));
    const pipeInode = writer.fds.find((fd) => fd.fd === 1)?.inode;
    await waitForProcess(pipeline.pid, (p) => !p.fds.some((fd) => fd.inode === pipeInode));
    await waitForProcess(fifoHolder.pid, (p) => p.name === 'sleep' && p.fds.some((fd) => fd.fd === 3));
    await waitForProcess(sharerChild, (p) => p.name === 'sleep');

    const js = createLinuxProcessTable({ nativeScan: false });
    const native = createLinuxProcessTable({ nativeScan: true });
    const pids = [pipeline.pid, sleep, cat, fifoHolder.pid, sharer.pid, sharerChild];
    for (const pid of pids) assert.ok(js.getProcess(pid), `process ${pid} is gone`);
    // Only what this test made: descriptors inherited from the test runner (its stdio pipes)
    // are shared with processes that come and go, so two scans may rightly differ on them.
    const socketInode = js.getProcess(sharer.pid)?.fds.find((fd) => fd.fd === 1)?.inode;
    const inodes = new Set<number>([pipeInode ?? 0, statSync(fifo).ino, socketInode ?? 0]);
    assert.ok(!inodes.has(0) && inodes.size === 3, `expected a pipe, a FIFO and a socket, got ${[...inodes].join(', ')}`);
    for (const inode of inodes) {
      const holders = native.findHolders(inode);
      assert.ok(holders.length > 0, `no holder of ${inode}`);
      assert.deepEqual(holders, js.findHolders(inode), `holders of inode ${inode}`);
    }
    // After the scan the native table answers descriptors from it: they must match a fresh read.
    for (const pid of pids) assert.deepEqual(native.getProcess(pid)?.fds, js.getProcess(pid)?.fds, `descriptors of ${pid}`);
    assert.deepEqual(native.deniedPids(), js.deniedPids());
  } finally {
    client.destroy();
    await closeServer(server, accepted);
  }
});
