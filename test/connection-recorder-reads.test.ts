/**
 * How the recorder reads the kernel's ring buffer (issue 14): the addon copies records into
 * one buffer the recorder keeps and stops when it is full, and the recorder reads again until
 * the ring is empty. With a buffer of one record every read fills it, so every record goes
 * through that path: none may be lost, repeated or reordered.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { connect, createServer, type Server } from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { ConnectionEvent } from '../src/host/connection-events.js';
import { createConnectionRecorderStarter, defaultRingRecordsPerCpu, findRecorderObject, probeConnectionRecorder, RECORD_BYTES } from '../src/host/connection-recorder.js';
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

describe('reading the ring buffer in several calls', { skip }, () => {
  let server: Server;
  let port: number;

  before(async () => {
    server = createServer((socket) => {
      socket.on('data', () => undefined);
      socket.end();
    });
    await new Promise<void>((ready) => server.listen(0, '127.0.0.1', ready));
    port = (server.address() as { port: number }).port;
  });
  after(async () => {
    await new Promise<void>((done) => server.close(() => done()));
  });

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
});
