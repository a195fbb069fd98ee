/**
 * A real overflow of the recorder's ring (issue 14: "Loss is evidence too ... No silent loss").
 * Nothing is simulated: the kernel's BPF program keeps recording while its reader does not
 * drain, a process bound to one CPU floods more loopback connections than that CPU's ring can
 * hold, and then:
 *
 * - the recorder delivers the flood's first records, in order, and counts every record that did
 *   not fit (`ring-buffer-full`), with the time range in which it was lost;
 * - the daemon writes that loss to the ledger as a `history-gap` covering the flood, its
 *   journal holds exactly the flood's first connections, and `stopctl verify` still passes.
 *
 * How draining stops, without a hook: the reader is a timer on its process's event loop. At
 * recorder level the test's own event loop is blocked by `spawnSync` while the flood runs; at
 * daemon level the daemon is stopped with SIGSTOP. Both are what a stalled reader looks like.
 */
import assert from 'node:assert/strict';
import { execFile, spawn, spawnSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import type { ConnectionEvent, OutboundCloseEvent, OutboundOpenEvent, RecorderLossEvent } from '../src/host/connection-events.js';
import { createConnectionRecorderStarter, defaultRingRecordsPerCpu, probeConnectionRecorder } from '../src/host/connection-recorder.js';
import { readHistory } from '../src/evidence/history-read.js';
import { readLedger } from '../src/evidence/ledger.js';
import { startDaemon, STOPCTL } from './support/daemon.js';

const isRoot = process.getuid?.() === 0;
const availability = isRoot ? probeConnectionRecorder() : undefined;
const skip = !isRoot ? 'needs root: loads the eBPF recorder' : availability?.available === false ? availability.reason : false;
const PYTHON = '/usr/bin/python3';

/**
 * How many records a CPU's ring holds (the recorder's default, which the daemon uses too). The
 * flood runs on one CPU: its connect, the loopback handshake (a softirq on the sending CPU) and
 * its closes all run there, so all its records go to that CPU's ring.
 */
const CAPACITY = defaultRingRecordsPerCpu();
/**
 * Connections in the flood: each makes exactly two records (`open` at ESTABLISHED, `close` at
 * CLOSE), so this is the ring's capacity in connections plus a tenth, even with no other
 * connection on the host.
 */
const FLOOD = Math.ceil((CAPACITY / 2) * 1.1);

/**
 * The flood, in Python (a tight loop of system calls, about 10 µs a connection): one process,
 * bound to its first allowed CPU, listens on loopback and connects to itself FLOOD times, one
 * connection after the other, and writes down each connection's source port in order. Each client closes with SO_LINGER 0
 * (RST): its socket reaches CLOSE at once (no TIME_WAIT, so ports do not run out), which makes
 * its two records open, close, before the next connect starts.
 */
const FLOOD_CLIENT = String.raw`
import ctypes, json, os, socket, struct, sys, time
ctypes.CDLL(None).prctl(15, b'ring-flood', 0, 0, 0)  # PR_SET_NAME
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
count = int(sys.argv[1])
server = socket.socket(); server.bind(('127.0.0.1', 0)); server.listen(64)
address = server.getsockname()
linger = struct.pack('ii', 1, 0)
ports = []
start = time.time()
for i in range(count):
    client = socket.socket()
    client.connect(address)
    ports.append(client.getsockname()[1])
    accepted, _ = server.accept()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
    client.close()
    accepted.close()
end = time.time()
print(json.dumps({'pid': os.getpid(), 'serverPort': address[1], 'start': start * 1000, 'end': end * 1000, 'ports': ports}))
`;

/** What the flood process wrote down: its pid, its listener, its run time (epoch ms) and each connection's source port in order. */
interface Flood {
  readonly pid: number;
  readonly serverPort: number;
  readonly start: number;
  readonly end: number;
  readonly ports: readonly number[];
}

function parseFlood(stdout: string): Flood {
  const flood = JSON.parse(stdout) as Flood;
  assert.equal(flood.ports.length, FLOOD, 'the flood made every connection');
  return flood;
}

/** Runs the flood and blocks this thread (and so its event loop) until it is over. */
function runFloodBlocking(): Flood {
  const result = spawnSync(PYTHON, ['-c', FLOOD_CLIENT, String(FLOOD)], { encoding: 'utf8', timeout: 60_000, maxBuffer: 16 << 20 });
  assert.equal(result.status, 0, `the flood failed: ${result.error?.message ?? result.stderr}`);
  return parseFlood(result.stdout);
}

/** Runs the flood without blocking this thread. */
function runFlood(): Promise<Flood> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(PYTHON, ['-c', FLOOD_CLIENT, String(FLOOD)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolvePromise(parseFlood(out)) : reject(new Error(`the flood exited ${code}: ${err}`))));
  });
}

/**
 * The flood's records in the order they were made: open and close of its first connection,
 * then of its second, ... As `kind port` strings, compared with what was delivered.
 */
function expectedRecords(flood: Flood): string[] {
  return flood.ports.flatMap((port) => [`open ${port}`, `close ${port}`]);
}

/** Runs stopctl; resolves with its exit code and output. */
function runStopctl(args: readonly string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolvePromise) => {
    execFile(process.execPath, [STOPCTL, ...args], { timeout: 30_000, maxBuffer: 16 << 20 }, (error, stdout, stderr) => {
      resolvePromise({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : -1, stdout, stderr });
    });
  });
}

/** Polls `find` (bounded) until it returns something: the daemon drains and writes on its own schedule. */
async function waitFor<T>(find: () => T | undefined | Promise<T | undefined>, what: string, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = await find();
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((wake) => setTimeout(wake, 100));
  }
}

/** Whether every thread of `pid` is stopped (state T in /proc/PID/task/TID/stat): SIGSTOP has taken effect. */
function isStopped(pid: number): boolean {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).startsWith('T');
}

describe('a full ring', { skip }, () => {
  test(`the recorder delivers the flood's first records in order and counts every one that did not fit (${FLOOD} connections, a CPU's ring of ${CAPACITY} records)`, async (t) => {
    const batches: ConnectionEvent[][] = [];
    const recorder = createConnectionRecorderStarter({ pollIntervalMs: 50 })((batch) => batches.push([...batch]));
    let flood: Flood;
    try {
      // The recorder's poll timer runs on this event loop, which spawnSync blocks: the kernel
      // keeps recording, nobody drains, the ring fills. No read can run before this line.
      flood = runFloodBlocking();
    } finally {
      // One read: everything the ring holds, then the losses counted before it.
      await recorder.close();
    }
    assert.equal(batches.length, 1, 'exactly one read, after the flood');
    const events = batches[0] ?? [];
    const records = events.filter((e): e is OutboundOpenEvent | OutboundCloseEvent => e.kind !== 'loss');
    assert.ok(records.length >= CAPACITY, `the ring was full: ${records.length} records read at once, ${CAPACITY} fit`);

    // The flood's records that arrived: the first ones it made, in order, attributed to it.
    const mine = records.filter((e) => e.remote.address === '127.0.0.1' && e.remote.port === flood.serverPort);
    const delivered = mine.map((e) => `${e.kind} ${e.local.port}`);
    const expected = expectedRecords(flood);
    assert.ok(delivered.length < expected.length, `some of the flood's ${expected.length} records must be lost, ${delivered.length} arrived`);
    // Once full, the flood's CPU's ring stays full until read (nothing consumes it), so the
    // records that fit are exactly a prefix of the flood's, and every later one was refused.
    assert.deepEqual(delivered, expected.slice(0, delivered.length));
    for (const open of mine) {
      if (open.kind !== 'open') continue;
      assert.equal(open.pid, flood.pid);
      assert.equal(open.comm, 'ring-flood');
      assert.equal(open.uid, 0);
    }

    // Every record that did not fit is counted, in a loss whose time range covers the flood.
    const losses = events.filter((e): e is RecorderLossEvent => e.kind === 'loss' && e.reason === 'ring-buffer-full');
    assert.equal(losses.length, 1);
    const [loss] = losses;
    assert.ok(loss);
    const lost = expected.length - delivered.length;
    // The counter is the kernel's, for every process of the host: other processes' records
    // refused while the ring was full are in it too, so it is at least the flood's loss.
    t.diagnostic(`recorder: ${records.length} records read at once, ${delivered.length} of the flood's ${expected.length}; ${lost} lost, ${loss.count} counted (${loss.count - lost} of other processes)`);
    assert.ok(loss.count >= lost, `${lost} records of the flood lost, ${loss.count} counted`);
    assert.ok(loss.from <= flood.start && loss.to >= flood.end, `the loss range ${loss.from}..${loss.to} covers the flood ${flood.start}..${flood.end}`);
    // Only the documented kinds besides open, close and this loss: an `unattributed` loss
    // (another process's connect begun before the recorder started), and a `recursion` one (a
    // softirq's state change while the program ran on that CPU: the kernel skips and counts it).
    const kinds = new Set(['ring-buffer-full', 'unattributed', 'recursion']);
    assert.deepEqual(events.filter((e) => e.kind === 'loss' && !kinds.has(e.reason)), []);
  });

  test("the daemon writes the overflow to the ledger as a history gap covering it, the journal holds the flood's first connections, and stopctl verify passes", async (t) => {
    const daemon = await startDaemon([], { keepStore: true, timeoutMs: 30_000 });
    const pid = daemon.process.pid ?? 0;
    t.after(async () => {
      daemon.process.kill('SIGCONT');
      await daemon.stop();
      rmSync(daemon.storeDir, { recursive: true, force: true });
    });
    assert.match(daemon.stderr(), /History is on/);

    // A stalled daemon: its poll timer cannot run, the BPF program keeps recording.
    daemon.process.kill('SIGSTOP');
    await waitFor(() => (isStopped(pid) ? true : undefined), 'the daemon to stop', 5_000);
    let flood: Flood;
    try {
      flood = await runFlood();
    } finally {
      daemon.process.kill('SIGCONT');
    }

    const ledgerPath = join(daemon.storeDir, 'ledger');
    interface GapEntry {
      readonly kind: string;
      readonly reason: string;
      readonly count: number;
      readonly from: string;
      readonly to: string;
      readonly note: string;
    }
    const readGaps = async (): Promise<GapEntry[]> => {
      const gaps: GapEntry[] = [];
      for await (const line of readLedger(ledgerPath)) {
        const entry = line.entry as unknown as GapEntry | undefined;
        if (entry?.kind === 'history-gap' && (entry.reason === 'ring-buffer-full' || entry.reason === 'overload')) gaps.push(entry);
      }
      return gaps;
    };
    // The gap is written after the records of the read that counted it.
    const gaps = await waitFor(async () => {
      const found = await readGaps();
      return found.some((entry) => entry.reason === 'ring-buffer-full') ? found : undefined;
    }, 'a ring-buffer-full history gap in the ledger', 30_000);
    const ringGaps = gaps.filter((entry) => entry.reason === 'ring-buffer-full');
    assert.equal(ringGaps.length, 1, 'one read after the stall, one gap');
    const [gap] = ringGaps;
    assert.ok(gap);
    assert.ok(Date.parse(gap.from) <= flood.start && Date.parse(gap.to) >= flood.end, `the gap ${gap.from}..${gap.to} covers the flood`);
    assert.match(gap.note, /kernel ring of the recorder was full/);
    assert.match(daemon.stderr(), /History: a kernel ring of the recorder overflowed; \d+ connection events between \S+ and \S+ were lost/);
    assert.ok(gap.count >= FLOOD * 2 - CAPACITY, `at most ${CAPACITY} records fit, so at least ${FLOOD * 2 - CAPACITY} are counted, not ${gap.count}`);

    // The journal: the flood's first connections in order, nothing after the first refusal.
    await daemon.stop();
    // What the daemon's own queue could not take after the stall (other processes' records fill
    // the ring too on a busy host) is an `overload` gap: it counts in the accounting below.
    const dropped = (await readGaps()).filter((entry) => entry.reason === 'overload').reduce((sum, entry) => sum + entry.count, 0);
    const entries = (await readHistory(daemon.storeDir, { port: flood.serverPort }))
      .filter((c) => c.remote.address === '127.0.0.1' && c.remote.port === flood.serverPort)
      .sort((a, b) => a.seq - b.seq);
    // Not asserted above zero: on a busy host other processes' records may fill the ring
    // before the flood starts; the accounting below holds either way.
    assert.ok(entries.length < FLOOD, `${entries.length} of ${FLOOD} connections in the journal`);
    assert.deepEqual(entries.map((c) => c.local.port), flood.ports.slice(0, entries.length));
    // Each connection's close follows its open; only the last one's close may have been refused.
    assert.deepEqual(entries.slice(0, -1).filter((c) => c.closedAt === null).map((c) => c.local.port), []);
    assert.ok(entries.every((c) => c.pid === flood.pid && c.comm === 'ring-flood' && c.uid === 0));
    const delivered = entries.length + entries.filter((c) => c.closedAt !== null).length;
    t.diagnostic(`daemon: ${entries.length} of ${FLOOD} connections journaled, ${FLOOD * 2 - delivered} records lost, ${gap.count} counted in the gap ${gap.from}..${gap.to}`);
    assert.ok(gap.count + dropped >= FLOOD * 2 - delivered, `${FLOOD * 2 - delivered} records of the flood lost, ${gap.count} counted in the gap, ${dropped} dropped by the daemon's queue`);

    const verify = await runStopctl(['verify', '--store', daemon.storeDir]);
    assert.equal(verify.code, 0, `stopctl verify: ${verify.stdout}${verify.stderr}`);
    assert.match(verify.stdout, /^History /m);
  });
});
