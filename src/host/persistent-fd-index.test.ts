// The persistent descriptor index on real processes: python3 helpers that open pipes and
// sockets when told to (and go back to sleep), replace a descriptor with dup2, exit, spin, open
// from a second or a new thread, or end a thread; every answer is compared with what the kernel
// shows, and with a full scanFds pass. The last test measures a thousand idle processes
// (printed, not asserted).
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as delay } from 'node:timers/promises';
import { test, type TestContext } from 'node:test';
import { createLinuxProcessTable, listPids } from './linux-processes.js';
import { findPackageRoot } from './native-addon.js';
import type { PersistentFdIndex, PersistentFdIndexOptions } from './persistent-fd-index.js';
import {
  BUSY,
  IDLE,
  SPIN_THEN_IDLE,
  THREADED,
  THREADS,
  dir,
  fullScan,
  hasCc,
  isKernelThread,
  median,
  openIndex,
  pipeHeldBy,
  ppidOf,
  readLink,
  scanFdsOf,
  scanHolders,
  skip,
  startHelper,
  started,
  waitForValue,
  waitQuiet,
} from '../../test/support/fd-index-helpers.js';

// The run tracker (BPF) needs root here; CI runs as root, so there it must load (asserted).
const trackerSkip = skip || (process.getuid?.() === 0 ? false : 'the run tracker needs root (CAP_BPF and CAP_PERFMON)');

/** Opens an index; with the run tracker asked for, it must be in use (no silent fallback). */
function openChecked(options: PersistentFdIndexOptions): PersistentFdIndex {
  const index = openIndex(options);
  if (options.runTracker === true) assert.equal(index.runTracker.active, true, `the run tracker did not load: ${index.runTracker.why}`);
  return index;
}

// How the index learns which processes ran: schedstat files, or the run tracker.
const modes: { name: string; options: PersistentFdIndexOptions; skip: string | false }[] = [
  { name: 'schedstat', options: {}, skip },
  { name: 'run tracker', options: { runTracker: true }, skip: trackerSkip },
];

// (h): everything that does not depend on kept files must hold when almost none are kept.
const variants: { name: string; options: PersistentFdIndexOptions; skip: string | false }[] = [
  { name: 'default', options: {}, skip },
  { name: 'maxKeptFiles 2', options: { maxKeptFiles: 2 }, skip },
  { name: 'files in this process\'s own table', options: { separateTable: false }, skip },
  { name: 'run tracker', options: { runTracker: true }, skip: trackerSkip },
];
for (const variant of variants) {
  const tiny = variant.options.maxKeptFiles !== undefined;
  const skip = variant.skip;
  const openIndex = openChecked;
  const check = (index: PersistentFdIndex): void => {
    const { kept } = index.refresh();
    if (tiny) assert.ok(kept <= 2, `${kept} schedstat files kept with maxKeptFiles 2`);
    if (variant.options.runTracker === true) assert.equal(kept, 0, 'with the run tracker no schedstat file is kept');
  };

  void test(`PersistentFdIndex finds a new process holding a pipe at the next refresh, without listing /proc (${variant.name})`, { skip }, async () => {
    // A long list interval, so that a found process was found by probing the new pids.
    const index = openIndex({ ...variant.options, listIntervalMs: 3_600_000 });
    assert.equal(index.refresh().full, true, 'the first refresh lists /proc');
    check(index);
    let probed = 0;
    // Another process on this machine may make a refresh list /proc (a jump of more than 256
    // pids, a count that changed meanwhile): try a few times for a refresh that did not.
    for (let attempt = 0; attempt < 10 && probed === 0; attempt++) {
      index.refresh(); // what was there before the helper
      const helper = await startHelper(IDLE);
      const [r, w, inode] = await helper.ask('pipe');
      assert.ok(r !== undefined && w !== undefined && inode !== undefined);
      const { full, rescanned } = index.refresh();
      assert.ok(rescanned.includes(helper.pid), 'a new process is scanned');
      assert.deepEqual(index.holders(inode), pipeHeldBy(helper.pid, r, w));
      assert.deepEqual(
        index.fds(helper.pid)?.filter((fd) => fd.inode === inode),
        [
          { fd: r, kind: 'pipe', inode, end: 'read' },
          { fd: w, kind: 'pipe', inode, end: 'write' },
        ],
      );
      if (!full) probed++;
      await helper.kill();
    }
    assert.ok(probed > 0, 'every refresh listed /proc: the pid probe was never used');
  });

  void test(`PersistentFdIndex finds a pipe and a socket that a sleeping process opens later (${variant.name})`, { skip }, async () => {
    const index = openIndex(variant.options);
    const helper = await startHelper(IDLE);
    index.refresh();
    if (!tiny) await waitQuiet(index, helper.pid);
    const [r, w, pipe] = await helper.ask('pipe');
    assert.ok(r !== undefined && w !== undefined && pipe !== undefined);
    assert.ok(index.refresh().rescanned.includes(helper.pid), 'a process that ran is rescanned');
    assert.deepEqual(index.holders(pipe), pipeHeldBy(helper.pid, r, w));
    if (!tiny) await waitQuiet(index, helper.pid);
    const [a, b, first, second] = await helper.ask('socket');
    assert.ok(a !== undefined && b !== undefined && first !== undefined && second !== undefined);
    check(index);
    assert.deepEqual(index.holders(first), [{ pid: helper.pid, fd: a, kind: 'socket' }]);
    assert.deepEqual(index.holders(second), [{ pid: helper.pid, fd: b, kind: 'socket' }]);
    // And the process table over the index answers the same, for a new request.
    const table = createLinuxProcessTable({ fdIndex: index });
    assert.deepEqual(table.findHolders(second), [helper.pid]);
    assert.deepEqual(
      table.getProcess(helper.pid)?.fds.filter((fd) => fd.inode === first || fd.inode === pipe),
      index.fds(helper.pid)?.filter((fd) => fd.inode === first || fd.inode === pipe),
    );
    await helper.kill();
  });

  void test(`PersistentFdIndex sees a pipe dup2()ed over an existing descriptor number (${variant.name})`, { skip }, async () => {
    const index = openIndex(variant.options);
    const helper = await startHelper(IDLE);
    const [r, w, before] = await helper.ask('pipe');
    assert.ok(r !== undefined && w !== undefined && before !== undefined);
    index.refresh();
    if (!tiny) await waitQuiet(index, helper.pid);
    const [target, w2, afterwards] = await helper.ask(`dup2 ${r}`);
    assert.ok(target === r && w2 !== undefined && afterwards !== undefined && afterwards !== before);
    check(index);
    assert.deepEqual(
      index.fds(helper.pid)?.find((fd) => fd.fd === r),
      { fd: r, kind: 'pipe', inode: afterwards, end: 'read' },
    );
    assert.deepEqual(index.holders(before), [{ pid: helper.pid, fd: w, kind: 'pipe' }]);
    assert.deepEqual(index.holders(afterwards), pipeHeldBy(helper.pid, r, w2));
    await helper.kill();
  });

  void test(`PersistentFdIndex forgets a process that exited (${variant.name})`, { skip }, async () => {
    const index = openIndex(variant.options);
    const helper = await startHelper(IDLE);
    const [, , inode] = await helper.ask('pipe');
    assert.ok(inode !== undefined);
    index.refresh();
    if (!tiny) await waitQuiet(index, helper.pid);
    assert.equal(index.holders(inode).length, 2);
    await helper.kill();
    check(index);
    assert.equal(index.fds(helper.pid), undefined);
    assert.deepEqual(index.holders(inode), []);
  });
}

void test('PersistentFdIndex reads a sleeping process again within its rescan interval although it did not run', { skip }, async () => {
  const index = openIndex({ rescanIntervalMs: 400 });
  const helper = await startHelper(IDLE);
  index.refresh();
  await waitQuiet(index, helper.pid);
  const schedstat = readFileSync(`/proc/${helper.pid}/schedstat`, 'utf8');
  const quietSince = Date.now();
  let rescannedAfter: number | undefined;
  while (rescannedAfter === undefined && Date.now() - quietSince < 5_000) {
    if (index.refresh().rescanned.includes(helper.pid)) rescannedAfter = Date.now() - quietSince;
    await delay(10);
  }
  assert.equal(readFileSync(`/proc/${helper.pid}/schedstat`, 'utf8'), schedstat, 'the helper did not run meanwhile');
  assert.ok(rescannedAfter !== undefined, 'never read again');
  // Due somewhere in the second half of the interval after its last scan, which was at most
  // one refresh before it was found quiet.
  assert.ok(rescannedAfter <= 450, `read again only after ${rescannedAfter} ms`);
  await helper.kill();
});

for (const separateTable of [true, false]) {
void test(`PersistentFdIndex ${separateTable ? 'keeps its files out of' : 'skips its files in'} this process's descriptor table and holds none of its sockets`, { skip }, async () => {
  // A connection open before the index exists: the index must not keep it alive.
  const server = createServer((socket) => socket.resume());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  assert.ok(address !== null && typeof address === 'object');
  const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve));
  const client = connect(address.port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => client.once('connect', resolve).once('error', reject));
  const peer = await accepted;
  try {
    const before = readdirSync('/proc/self/fd').length;
    const index = openIndex({ separateTable });
    const { kept } = index.refresh();
    assert.ok(kept > 10, `only ${kept} files kept`);
    // The kept schedstat files live in a thread of the index's own (when the kernel allows it;
    // otherwise they are in this table and skipped by number when it is read).
    const after = readdirSync('/proc/self/fd').length;
    // A thread with a table of its own (not ours, as all other threads share) holding them all.
    const keeper = readdirSync('/proc/self/task').some((tid) => {
      const count = readdirSync(`/proc/self/task/${tid}/fd`).length;
      return count >= kept && count !== after;
    });
    // Without the option, or where unshare(CLONE_FILES) is refused, they are in this table.
    assert.equal(keeper, separateTable && !(after >= before + kept), 'where the kept files are');
    if (keeper) assert.ok(after <= before + 2, `${after - before} more descriptors after indexing`);
    else assert.ok(after >= before + kept, 'the kept files are neither in a thread of their own nor here');
    // This process's own table is read like any other (not the keeper's): its sockets are there.
    const sockets = readdirSync('/proc/self/fd')
      .map((fd) => /^socket:\[(\d+)\]$/.exec(readLink(`/proc/self/fd/${fd}`))?.[1])
      .filter((inode) => inode !== undefined)
      .map(Number);
    assert.ok(sockets.length >= 3, 'a listener and both ends of a connection');
    const indexed = new Set(index.fds(process.pid)?.filter((fd) => fd.kind === 'socket').map((fd) => fd.inode));
    for (const inode of sockets) assert.ok(indexed.has(inode), `socket ${inode} of this process is not indexed`);
    // Closing the client sends its FIN: nothing else holds the socket.
    const ended = new Promise<void>((resolve) => peer.once('end', resolve));
    client.end();
    await ended;
    index.close();
  } finally {
    client.destroy();
    peer.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});
}

void test('PersistentFdIndex with skipSelf leaves this process out, and a table hiding itself too', { skip }, async () => {
  // A named pipe this process and a child (as its stdout) both hold.
  const fifo = join(dir, 'skip-self.fifo');
  execFileSync('mkfifo', [fifo]);
  const fd = openSync(fifo, 'r+');
  const child = spawn('sleep', ['30'], { stdio: ['ignore', fd, 'ignore'] });
  started.push(child);
  await new Promise<void>((resolve, reject) => child.once('spawn', resolve).once('error', reject));
  const pid = child.pid ?? 0;
  const inode = statSync(fifo).ino;
  try {
    const everyone = openIndex();
    everyone.refresh();
    assert.deepEqual(
      everyone.holders(inode).map((holder) => holder.pid),
      [process.pid, pid].sort((a, b) => a - b),
      'both ends without skipSelf',
    );
    const skipping = openIndex({ skipSelf: true });
    assert.equal(skipping.skipSelf, true);
    skipping.refresh();
    assert.deepEqual(skipping.holders(inode), [{ pid, fd: 1, kind: 'pipe' }]);
    assert.equal(skipping.fds(process.pid), undefined, 'this process is not indexed');
    assert.ok(everyone.fds(process.pid) !== undefined, 'but it is without skipSelf');
    // The process table hides it whichever way it reads the descriptors.
    assert.deepEqual(createLinuxProcessTable({ fdIndex: skipping, hideSelf: true }).findHolders(inode), [pid]);
    assert.deepEqual(createLinuxProcessTable({ hideSelf: true }).findHolders(inode), [pid]);
    assert.deepEqual(createLinuxProcessTable({ hideSelf: true, nativeScan: false }).findHolders(inode), [pid]);
    assert.deepEqual(createLinuxProcessTable({ fdIndex: everyone, hideSelf: true }).findHolders(inode), [pid]);
    assert.deepEqual(createLinuxProcessTable().findHolders(inode), [process.pid, pid].sort((a, b) => a - b));
    // A table that would show this process cannot use an index that never read it.
    assert.throws(() => createLinuxProcessTable({ fdIndex: skipping }), { name: 'HostLookupError', message: /without hideSelf/ });
  } finally {
    child.kill('SIGKILL');
    closeSync(fd);
  }
});

for (const mode of modes) {
  void test(`PersistentFdIndex rescans a busy-looping process at every refresh and sees what it opens (${mode.name})`, { skip: mode.skip }, async () => {
    const index = openChecked(mode.options);
    const flag = join(dir, `go-${mode.name.replace(' ', '-')}`);
    const helper = await startHelper(BUSY, [flag]);
    index.refresh();
    // With schedstat a process that is running or runnable is volatile: read at every refresh.
    // The run tracker reads it only when it ran since it was read (one waiting on a busy run
    // queue has not), which is all that exactness needs; what it opens is checked below.
    if (mode.options.runTracker !== true) {
      for (let round = 0; round < 3; round++) assert.ok(index.refresh().rescanned.includes(helper.pid), `round ${round}`);
    }
    writeFileSync(flag, '');
    const [r, w, inode] = (await helper.next()).split(' ').map(Number);
    assert.ok(r !== undefined && w !== undefined && inode !== undefined);
    assert.ok(index.refresh().rescanned.includes(helper.pid));
    assert.deepEqual(index.holders(inode), pipeHeldBy(helper.pid, r, w));
    await helper.kill();
  });
}

for (const mode of modes) {
  void test(`PersistentFdIndex trusts an idle multi-threaded process and finds a pipe its second thread opens later (${mode.name})`, { skip: mode.skip }, async () => {
    const index = openChecked(mode.options);
    const helper = await startHelper(THREADED);
    index.refresh();
    // Every thread sleeps: the process is trusted like a single-threaded one, not read again.
    await waitQuiet(index, helper.pid);
    for (let round = 0; round < 3; round++) assert.ok(!index.refresh().rescanned.includes(helper.pid), `round ${round}`);
    // Only the second thread runs (it reads stdin); the leader's schedstat stays as it was.
    const leader = readFileSync(`/proc/${helper.pid}/schedstat`, 'utf8');
    const [r, w, inode] = await helper.ask('open');
    assert.ok(r !== undefined && w !== undefined && inode !== undefined);
    assert.equal(readFileSync(`/proc/${helper.pid}/schedstat`, 'utf8'), leader, 'the leader did not run');
    assert.ok(index.refresh().rescanned.includes(helper.pid), 'a process whose second thread ran is rescanned');
    assert.deepEqual(index.holders(inode), pipeHeldBy(helper.pid, r, w));
    await helper.kill();
  });
}

for (const mode of modes) {
  void test(`PersistentFdIndex finds a pipe opened by a thread started after the process was trusted (${mode.name})`, { skip: mode.skip }, async () => {
    const index = openChecked(mode.options);
    const helper = await startHelper(THREADS);
    index.refresh();
    await waitQuiet(index, helper.pid);
    const tasks = readdirSync(`/proc/${helper.pid}/task`).length;
    // The reader thread starts a new thread, which opens a pipe and sleeps in its own wait.
    const [r, w, inode] = await helper.ask('thread');
    assert.ok(r !== undefined && w !== undefined && inode !== undefined);
    assert.equal(readdirSync(`/proc/${helper.pid}/task`).length, tasks + 1, 'one more thread');
    assert.ok(index.refresh().rescanned.includes(helper.pid), 'rescanned after a thread was created');
    assert.deepEqual(index.holders(inode), pipeHeldBy(helper.pid, r, w));
    // The new thread is tracked too: once all sleep again the process is trusted again.
    await waitQuiet(index, helper.pid);
    assert.ok(!index.refresh().rescanned.includes(helper.pid));
    assert.deepEqual(index.fds(helper.pid), scanFdsOf(fullScan(), helper.pid));
    await helper.kill();
  });
}

for (const mode of modes) {
  void test(`PersistentFdIndex rescans a trusted multi-threaded process when one of its threads exits (${mode.name})`, { skip: mode.skip }, async () => {
    const index = openChecked(mode.options);
    const helper = await startHelper(THREADS);
    const [r, w, inode] = await helper.ask('thread');
    assert.ok(r !== undefined && w !== undefined && inode !== undefined);
    index.refresh();
    await waitQuiet(index, helper.pid);
    assert.equal(index.holders(inode).length, 2);
    const tasks = readdirSync(`/proc/${helper.pid}/task`).length;
    // The opener thread closes its pipe and ends; the others go back to sleep.
    assert.deepEqual(await helper.ask('end'), [0]);
    await waitForValue('the thread to exit', () => (readdirSync(`/proc/${helper.pid}/task`).length === tasks - 1 ? true : undefined));
    assert.ok(index.refresh().rescanned.includes(helper.pid), 'rescanned after a thread exited');
    assert.deepEqual(index.holders(inode), []);
    await waitQuiet(index, helper.pid);
    assert.deepEqual(index.fds(helper.pid), scanFdsOf(fullScan(), helper.pid));
    await helper.kill();
  });
}

void test('PersistentFdIndex rescans a busy multi-threaded process at every refresh, and trusts it again once idle', { skip }, async () => {
  const flag = join(dir, 'spin-then-idle.flag');
  const helper = await startHelper(SPIN_THEN_IDLE, [flag]);
  const index = openIndex();
  index.refresh();
  // Busy: read again at every refresh, whether it is judged (every 1, 2, 4, ... refreshes) or not.
  for (let round = 0; round < 12; round++) {
    await delay(5);
    assert.ok(index.refresh().rescanned.includes(helper.pid), `busy, round ${round}`);
  }
  writeFileSync(flag, '');
  const [r, w, inode] = (await helper.next()).split(' ').map(Number);
  assert.ok(r !== undefined && w !== undefined && inode !== undefined);
  // The pipe it opened is there at the next refresh ...
  index.refresh();
  assert.deepEqual(index.holders(inode), pipeHeldBy(helper.pid, r, w));
  // ... and, idle now, it is trusted again by the next retry (at most 32 refreshes on).
  let quiet = 0;
  for (let round = 0; round < 60 && quiet < 3; round++) {
    await delay(5);
    quiet = index.refresh().rescanned.includes(helper.pid) ? 0 : quiet + 1;
  }
  assert.equal(quiet, 3, 'idle again, it is not read at every refresh any more');
  await helper.kill();
});

void test('PersistentFdIndex does not read kernel threads again while they stay kernel threads', { skip }, async (t) => {
  const kernelThreads = new Set(listPids().filter((pid) => isKernelThread(pid)));
  if (kernelThreads.size === 0) {
    t.skip('no kernel thread is visible here (a pid namespace of its own)');
    return;
  }
  const index = openIndex();
  index.refresh();
  const seen = new Map<number, number>();
  for (let round = 0; round < 40; round++) {
    await delay(5);
    for (const pid of index.refresh().rescanned) if (kernelThreads.has(pid)) seen.set(pid, (seen.get(pid) ?? 0) + 1);
  }
  // Kworkers come and go: a new one is read once, when it appears; none is read at every refresh.
  for (const [pid, count] of seen) assert.ok(count <= 1, `kernel thread ${pid} read ${count} times`);
  assert.deepEqual(index.fds(Math.min(...kernelThreads)) ?? [], [], 'a kernel thread holds nothing');
});

void test('PersistentFdIndex rescans a multi-threaded process at every refresh when its threads\' files would pass maxKeptFiles', { skip }, async () => {
  const helper = await startHelper(THREADS, ['40']);
  const threads = readdirSync(`/proc/${helper.pid}/task`).length;
  assert.equal(threads, 42);
  // A proc root that shows the helper alone (and self, which the index reads at open), so that
  // no other process takes a kept file: with one file fewer than the helper has threads its
  // leader's file is kept but not all its threads'; with exactly enough, it is trusted.
  const root = join(dir, 'helper-only-proc');
  mkdirSync(root);
  symlinkSync(`/proc/${helper.pid}`, join(root, String(helper.pid)));
  symlinkSync('/proc/self', join(root, 'self'));
  for (const maxKeptFiles of [threads - 1, 2]) {
    const index = openIndex({ procRoot: root, maxKeptFiles });
    for (let round = 0; round < 5; round++) {
      const { rescanned, kept } = index.refresh();
      // The leader's file while it is judged; none between retries (a busy multi-threaded process).
      assert.ok(kept <= 1, `only the leader's file is kept with maxKeptFiles ${maxKeptFiles}`);
      assert.ok(rescanned.includes(helper.pid), `round ${round} with maxKeptFiles ${maxKeptFiles}`);
      await delay(5);
    }
  }
  const index = openIndex({ procRoot: root, maxKeptFiles: threads - 1 });
  const [r, w, inode] = await helper.ask('thread');
  assert.ok(r !== undefined && w !== undefined && inode !== undefined);
  assert.ok(index.refresh().rescanned.includes(helper.pid));
  assert.deepEqual(index.holders(inode), pipeHeldBy(helper.pid, r, w));
  assert.deepEqual(index.fds(helper.pid), scanFdsOf(fullScan(), helper.pid));
  // With a file for every thread (one more now) the same process is trusted.
  const roomy = openIndex({ procRoot: root, maxKeptFiles: threads + 1 });
  roomy.refresh();
  await waitQuiet(roomy, helper.pid);
  assert.equal(roomy.refresh().kept, threads + 1);
  await helper.kill();
});

for (const mode of modes) {
  void test(`PersistentFdIndex answers what a full scanFds pass finds at the same moment (${mode.name})`, { skip: mode.skip }, async () => {
    const index = openChecked(mode.options);
    index.refresh();
    // Pipes, sockets and a pipe between two processes, made before and after the first refresh.
    const early = await startHelper(IDLE);
    const [, , earlyPipe] = await early.ask('pipe');
    const pipeline = spawn('sh', ['-c', 'sleep 60 | cat'], { stdio: 'ignore', detached: true });
    started.push(pipeline);
    index.refresh();
    const late = await startHelper(IDLE);
    const [, , latePipe] = await late.ask('pipe');
    const [, , lateSocket, latePeer] = await late.ask('socket');
    const [, , earlySocket] = await early.ask('socket');
    const threaded = await startHelper(THREADED);
    const [, , threadPipe] = await threaded.ask('open');
    const pids = [early.pid, late.pid, threaded.pid];
    // The pipeline's sleep and cat, once both hold their end and the shell has closed its own.
    const pipePids = await waitForValue('sleep | cat', () => {
      const kids = listPids().filter((pid) => ppidOf(pid) === pipeline.pid);
      const scan = fullScan();
      const ends = kids.flatMap((pid) => scanFdsOf(scan, pid).filter((fd) => fd.kind === 'pipe' && (fd.fd === 0 || fd.fd === 1)));
      return kids.length === 2 && ends.length === 2 && ends[0]?.inode === ends[1]?.inode ? { kids, inode: ends[0]?.inode ?? 0 } : undefined;
    });
    pids.push(...pipePids.kids);
    for (const pid of pids) await waitQuiet(index, pid).catch(() => undefined); // settle

    index.refresh();
    const scan = fullScan();
    const inodes = [earlyPipe, earlySocket, latePipe, lateSocket, latePeer, threadPipe, pipePids.inode];
    for (const inode of inodes) {
      assert.ok(inode !== undefined && inode > 0);
      const holders = index.holders(inode);
      assert.ok(holders.length > 0, `no holder of ${inode}`);
      assert.deepEqual(holders, scanHolders(scan, inode), `holders of ${inode}`);
    }
    for (const pid of pids) assert.deepEqual(index.fds(pid), scanFdsOf(scan, pid), `descriptors of ${pid}`);
    assert.deepEqual(index.unreadable().denied, [...scan.denied].sort((a, b) => a - b));
    for (const helper of [early, late, threaded]) await helper.kill();
  });
}

void test('PersistentFdIndex with 1 000 idle processes: refresh cost (printed) and the same answers as scanFds', { skip: skip || (hasCc() ? false : 'needs cc') }, async (t: TestContext) => {
  const root = findPackageRoot();
  assert.ok(root !== undefined);
  const crowdBin = join(dir, 'crowd');
  execFileSync('cc', ['-O2', '-o', crowdBin, join(root, 'bench', 'floor', 'crowd.c')]);
  const file = join(dir, 'crowd-file');
  writeFileSync(file, '');
  const crowd = spawn(crowdBin, ['1000', file], { stdio: ['ignore', 'pipe', 'inherit'], detached: true });
  started.push(crowd);
  assert.ok(crowd.stdout !== null && crowd.pid !== undefined);
  const crowdPid = crowd.pid;
  const lines = createInterface({ input: crowd.stdout })[Symbol.asyncIterator]();
  assert.equal((await lines.next()).value, 'ready 1000');
  try {
    const time = <T>(run: () => T): [number, T] => {
      const begin = performance.now();
      const value = run();
      return [performance.now() - begin, value];
    };
    const index = openIndex();
    const [firstMs, first] = time(() => index.refresh());
    const incremental: number[] = [];
    let rescanned = 0;
    let full = 0;
    for (let i = 0; i < 30; i++) {
      const [ms, stats] = time(() => index.refresh());
      incremental.push(ms);
      rescanned += stats.rescanned.length;
      if (stats.full) full++;
    }
    const scans: number[] = [];
    for (let i = 0; i < 5; i++) scans.push(time(() => fullScan())[0]);
    // One holder question as a request asks it: a fresh table, then findHolders.
    const members = listPids().filter((pid) => ppidOf(pid) === crowdPid);
    assert.equal(members.length, 1000);
    const probe = index.fds(members[0] ?? 0)?.find((fd) => fd.kind === 'pipe')?.inode ?? 0;
    const viaIndex: number[] = [];
    const viaScan: number[] = [];
    for (let i = 0; i < 5; i++) {
      viaIndex.push(time(() => createLinuxProcessTable({ fdIndex: index }).findHolders(probe))[0]);
      viaScan.push(time(() => createLinuxProcessTable({ nativeScan: true }).findHolders(probe))[0]);
    }
    t.diagnostic(`processes tracked: ${first.tracked}, schedstat files kept: ${first.kept}`);
    t.diagnostic(`first refresh (full listing, every process read): ${firstMs.toFixed(1)} ms`);
    t.diagnostic(
      `incremental refresh: median ${median(incremental).toFixed(2)} ms, min ${Math.min(...incremental).toFixed(2)} ms, ` +
        `max ${Math.max(...incremental).toFixed(2)} ms; ${(rescanned / incremental.length).toFixed(1)} processes rescanned per refresh; ` +
        `${full} of ${incremental.length} listed /proc`,
    );
    t.diagnostic(`scanFds (every /proc/PID/fd): median ${median(scans).toFixed(1)} ms`);
    t.diagnostic(
      `findHolders in a fresh table: over the index ${median(viaIndex).toFixed(2)} ms, with a full native scan ${median(viaScan).toFixed(1)} ms`,
    );

    // Same answers as a full pass for every pipe of the crowd, and every member's descriptors.
    index.refresh();
    const scan = fullScan();
    for (const pid of members) {
      const fds = index.fds(pid);
      assert.deepEqual(fds, scanFdsOf(scan, pid), `descriptors of ${pid}`);
      for (const fd of fds ?? []) assert.deepEqual(index.holders(fd.inode), scanHolders(scan, fd.inode), `holders of ${fd.inode}`);
      // Besides what it inherited, each member holds both ends of a pipe of its own.
      const own = (fds ?? []).filter((fd) => index.holders(fd.inode).every((holder) => holder.pid === pid));
      assert.deepEqual(own.map((fd) => fd.kind === 'pipe' && fd.end), ['read', 'write'], `the own pipe of ${pid}`);
    }
  } finally {
    process.kill(-crowdPid, 'SIGKILL');
  }
});
