/**
 * How the recorder reads the kernel's per-CPU rings (issue 14):
 * - the addon copies records into one buffer the recorder keeps and stops when it is full, and
 *   the recorder reads again until none waits. With a buffer of one record every read fills
 *   it, so every record goes through that path: none may be lost, repeated or reordered;
 * - a connection opened on one CPU and closed on another comes out open first: the addon
 *   merges the CPUs' rings by the records' numbers, not CPU after CPU;
 * - a burst of several rings' worth between two timed polls is read when the program wakes the
 *   reader (a ring half full), so nothing is lost while the reader's event loop is free.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { connect, createServer, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { ConnectionEvent } from '../src/host/connection-events.js';
import {
  createConnectionRecorderStarter,
  defaultRingRecordsPerCpu,
  findRecorderObject,
  parseCpuList,
  probeConnectionRecorder,
  RECORD_BYTES,
} from '../src/host/connection-recorder.js';
import { nativeRecorderFunctions } from '../src/host/native-addon.js';

const isRoot = process.getuid?.() === 0;
const availability = isRoot ? probeConnectionRecorder() : undefined;
const skip = !isRoot ? 'needs root: loads BPF' : availability?.available === false ? availability.reason : false;

/** Opens a connection to `port` on loopback, waits until it is closed by both ends, returns its source port. */
function connectOnce(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    let local = 0;
    socket.on('connect', () => {
      local = socket.localPort ?? 0;
      socket.end();
    });
    socket.on('data', () => undefined);
    socket.on('error', reject);
    socket.on('close', () => resolve(local));
  });
}

describe('reading the rings in several calls', { skip }, () => {
  let server: Awaited<ReturnType<typeof loopbackServer>>;
  let port: number;

  before(async () => {
    server = await loopbackServer((socket) => {
      socket.on('data', () => undefined);
      socket.end();
    });
    port = server.port;
  });
  after(() => server.close());

  test('a buffer of one record still delivers every open and close once, in kernel order', async () => {
    const events: ConnectionEvent[] = [];
    const recorder = createConnectionRecorderStarter({ readBufferRecords: 1, pollIntervalMs: 10_000 })((batch) => events.push(...batch));
    const ports: number[] = [];
    try {
      // One after the other, so the kernel's order is known: open i, close i, open i + 1 ...
      for (let i = 0; i < 40; i++) ports.push(await connectOnce(port));
    } finally {
      // The poll interval is longer than the test: close() does the one read, through the
      // full-buffer path 80 times and more.
      await recorder.close();
    }
    const mine = events.filter((e) => e.kind !== 'loss' && e.remote.port === port && e.local.address === '127.0.0.1' && ports.includes(e.local.port));
    assert.deepEqual(
      mine.map((e) => (e.kind === 'loss' ? '' : `${e.kind} ${e.local.port}`)),
      ports.flatMap((p) => [`open ${p}`, `close ${p}`]),
    );
    for (const open of mine) {
      if (open.kind === 'open') assert.equal(open.pid, process.pid);
    }
    assert.equal(events.filter((e) => e.kind === 'loss').length, 0);
  });

  test("a read reports the kernel's count of runs it skipped (recursion_misses), as bpftool shows it", () => {
    const functions = nativeRecorderFunctions();
    const object = findRecorderObject();
    assert.ok(functions !== undefined && object !== undefined, 'the addon and the shipped object are there');
    const handle = functions.recorderOpen(object, defaultRingRecordsPerCpu());
    try {
      const read = functions.recorderRead(handle, new Uint8Array(RECORD_BYTES * 16));
      assert.ok(Number.isInteger(read.recursion) && read.recursion >= 0, `recursion is a count, not ${String(read.recursion)}`);
      // bpftool names the field only once it is not 0.
      const shown = (JSON.parse(execFileSync('bpftool', ['prog', 'show', '--json'], { encoding: 'utf8' })) as { name?: string; recursion_misses?: number }[])
        .filter((prog) => prog.name === 'record_state')
        .map((prog) => prog.recursion_misses ?? 0);
      assert.ok(shown.length >= 1, 'bpftool lists the loaded program');
      assert.ok(shown.includes(read.recursion), `bpftool shows ${shown.join(', ')}; the read said ${read.recursion}`);
    } finally {
      functions.recorderClose(handle);
    }
  });

  test('a buffer size out of range is refused with a clear error', () => {
    assert.throws(() => createConnectionRecorderStarter({ readBufferRecords: 0 }), /readBufferRecords must be an integer from 1 to 65536, not 0/);
  });

  test('a ring size that is not a power of two from 64 to 1048576 is refused with a clear error', () => {
    for (const bad of [0, 63, 1000, 2 ** 21]) {
      assert.throws(() => createConnectionRecorderStarter({ ringRecordsPerCpu: bad }), new RegExp(`ringRecordsPerCpu must be a power of two from 64 to 1048576, not ${bad}`));
    }
  });
});

/**
 * A Python client on loopback: for each of COUNT connections it connects while bound to CPU
 * `openOn` (its ESTABLISHED, a softirq of the sending CPU on loopback, runs there too), then
 * binds itself to CPU `closeOn` and resets the connection (CLOSE runs there). Prints its
 * source ports in order, one JSON line.
 */
const PINNED_CLIENT = String.raw`
import json, os, socket, struct, sys
port, count, open_on, close_on = (int(a) for a in sys.argv[1:5])
linger = struct.pack('ii', 1, 0)
ports = []
for i in range(count):
    os.sched_setaffinity(0, {open_on})
    c = socket.socket(); c.connect(('127.0.0.1', port))
    ports.append(c.getsockname()[1])
    os.sched_setaffinity(0, {close_on})
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger); c.close()
print(json.dumps(ports))
`;

/** Runs PINNED_CLIENT without blocking this event loop; resolves with its ports. */
function runPinnedClient(port: number, count: number, openOn: number, closeOn: number): Promise<number[]> {
  return new Promise((resolve, reject) => {
    const child = spawn('/usr/bin/python3', ['-c', PINNED_CLIENT, String(port), String(count), String(openOn), String(closeOn)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(JSON.parse(out) as number[]) : reject(new Error(`the client exited ${code}: ${err}`))));
  });
}

/** The allowed CPUs of this process (sched_getaffinity, from /proc/self/status). */
function allowedCpus(): number[] {
  return parseCpuList(/^Cpus_allowed_list:\s*(\S+)/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '');
}

/** A loopback listener on an ephemeral port that hands each accepted socket to `handle`. */
async function loopbackServer(handle: (socket: Socket) => void): Promise<{ port: number; close: () => Promise<void> }> {
  const server = createServer(handle);
  await new Promise<void>((ready) => server.listen(0, '127.0.0.1', ready));
  return {
    port: (server.address() as { port: number }).port,
    close: () => new Promise<void>((done) => server.close(() => done())),
  };
}

describe('the per-CPU rings', { skip }, () => {
  let server: Awaited<ReturnType<typeof loopbackServer>>;
  let port: number;
  const cpuList = isRoot ? allowedCpus() : [];

  before(async () => {
    // Accepts and closes at once: the client's reset or the server's close ends each connection.
    server = await loopbackServer((socket) => {
      socket.on('error', () => undefined);
      socket.destroy();
    });
    port = server.port;
  });
  after(() => server.close());

  const mineOf = (events: readonly ConnectionEvent[], ports: readonly number[]): string[] =>
    events.flatMap((e) => (e.kind !== 'loss' && e.remote.port === port && ports.includes(e.local.port) ? [`${e.kind} ${e.local.port}`] : []));

  test('a connection opened on one CPU and closed on another comes out open first, in the order connections were made', { skip: cpus().length < 2 ? 'needs two CPUs' : false }, async () => {
    const [low, high] = [cpuList[0], cpuList.at(-1)];
    assert.ok(low !== undefined && high !== undefined && low !== high, `two allowed CPUs, not ${cpuList.join(',')}`);
    const events: ConnectionEvent[] = [];
    const recorder = createConnectionRecorderStarter({ pollIntervalMs: 10_000 })((batch) => events.push(...batch));
    let ports: number[];
    try {
      // Opened on the higher CPU, closed on the lower: the lower CPU's ring holds the closes,
      // so reading the rings CPU after CPU would put every close before its open.
      ports = await runPinnedClient(port, 50, high, low);
    } finally {
      await recorder.close();
    }
    assert.deepEqual(mineOf(events, ports), ports.flatMap((p) => [`open ${p}`, `close ${p}`]));
    assert.deepEqual(events.filter((e) => e.kind === 'loss' && e.reason === 'ring-buffer-full'), []);
  });

  test('a burst of four rings between two timed polls is read on the wake-ups of the program, with nothing lost', async () => {
    const ring = defaultRingRecordsPerCpu();
    // Two records a connection, all on one CPU: four of its rings' worth.
    const count = ring * 2;
    const events: ConnectionEvent[] = [];
    let reads = 0;
    const recorder = createConnectionRecorderStarter({ pollIntervalMs: 10_000 })((batch) => {
      reads += 1;
      events.push(...batch);
    });
    let ports: number[];
    let readsDuringBurst: number;
    try {
      const cpu = cpuList[0] ?? 0;
      ports = await runPinnedClient(port, count, cpu, cpu);
      readsDuringBurst = reads;
    } finally {
      await recorder.close();
    }
    // The timed poll is 10 s away: every read before close() was a wake-up's.
    assert.ok(readsDuringBurst >= 4, `${readsDuringBurst} reads during the burst (at least one per ring's worth)`);
    assert.deepEqual(events.filter((e) => e.kind === 'loss' && e.reason === 'ring-buffer-full'), []);
    assert.deepEqual(mineOf(events, ports), ports.flatMap((p) => [`open ${p}`, `close ${p}`]));
  });
});

describe('the default ring size', () => {
  test('4 096 records a CPU, fewer beyond 64 CPUs so that the rings stay near 32 MiB, never under 1 024', () => {
    assert.equal(defaultRingRecordsPerCpu(1), 4096);
    assert.equal(defaultRingRecordsPerCpu(64), 4096);
    assert.equal(defaultRingRecordsPerCpu(128), 2048);
    assert.equal(defaultRingRecordsPerCpu(4096), 1024);
  });
});
