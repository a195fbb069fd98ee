import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import type { ConnectionEvent, OutboundOpenEvent } from '../host/connection-events.js';
import { FakeHost } from '../host/fake-host.js';
import { HistoryJournal } from '../evidence/history-journal.js';
import { Ledger, readLedger } from '../evidence/ledger.js';
import { captureConnection, type CaptureOptions } from '../trace/index.js';
import type { AnalysisRunner } from './evidence-collector.js';
import { HistoryFeed } from './history-feed.js';

const LOCAL = '198.51.100.2';
const REMOTE = '192.0.2.30';
const NETNS = 4026531840;

const dir = mkdtempSync(join(tmpdir(), 'stopd-history-feed-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let stores = 0;

/** A real journal and ledger in a fresh store. */
async function openJournal(): Promise<{ journal: HistoryJournal; gaps: () => Promise<Record<string, unknown>[]>; close: () => Promise<void> }> {
  const storeDir = join(dir, String(++stores));
  mkdirSync(storeDir);
  const ledger = await Ledger.open(join(storeDir, 'ledger'));
  const journal = await HistoryJournal.open(storeDir, { ledger, pruneIntervalMs: 0 });
  const close = async (): Promise<void> => {
    await journal.close();
    await ledger.close();
  };
  const gaps = async (): Promise<Record<string, unknown>[]> => {
    const out: Record<string, unknown>[] = [];
    for await (const line of readLedger(join(storeDir, 'ledger'))) if (line.entry?.kind === 'history-gap') out.push(line.entry);
    return out;
  };
  return { journal, gaps, close };
}

/** Captures on a fake host, with a gate to hold the analysis thread busy. */
function fakeRunner(host: FakeHost, gate?: Promise<void>): AnalysisRunner & { calls: number } {
  const runner = {
    calls: 0,
    prepare: () => Promise.reject(new Error('unused')),
    summarise: () => Promise.reject(new Error('unused')),
    async capture(requests: readonly CaptureOptions[]) {
      runner.calls += 1;
      await gate;
      return requests.map((request) => captureConnection(host, request));
    },
    close: () => Promise.resolve(),
  };
  return runner;
}

function open(port: number, options: Partial<OutboundOpenEvent> = {}): OutboundOpenEvent {
  return {
    kind: 'open',
    socket: `ffff${port}`,
    connectedAt: Date.parse('2026-12-06T10:00:00.000Z'),
    establishedAt: Date.parse('2026-12-06T10:00:00.001Z'),
    tid: 500,
    pid: 500,
    uid: 1000,
    gid: 1000,
    loginuid: 1000,
    sessionid: 3,
    comm: 'curl',
    netns: NETNS,
    local: { address: LOCAL, port },
    remote: { address: REMOTE, port: 80 },
    ...options,
  };
}

function host(): FakeHost {
  const fake = new FakeHost({ localAddresses: [LOCAL] });
  fake.addProcess({ pid: 1, ppid: 0, name: 'init' });
  fake.addProcess({ pid: 400, ppid: 1, name: 'bash', uid: 1000, sid: 400, startTime: '2026-12-06T09:00:00.000Z' });
  fake.addProcess({ pid: 500, ppid: 400, name: 'curl', uid: 1000, sid: 400, startTime: '2026-12-06T09:59:59.000Z', cmdline: ['curl', 'http://192.0.2.30/'] });
  return fake;
}

const silent = { info: () => undefined, warn: () => undefined, error: () => undefined };

test('HistoryFeed journals each open with its capture, then its close', async () => {
  const { journal, close } = await openJournal();
  const feed = new HistoryFeed({ journal, analyses: fakeRunner(host()), save: () => ['cmdline'], netns: NETNS, log: silent });
  const events: ConnectionEvent[] = [
    open(40000),
    { kind: 'close', socket: 'ffff40000', closedAt: Date.parse('2026-12-06T10:00:01.000Z'), netns: NETNS, local: { address: LOCAL, port: 40000 }, remote: { address: REMOTE, port: 80 } },
  ];
  feed.push(events);
  await feed.idle();
  const entry = journal.findConnection({ address: LOCAL, port: 40000 }, { address: REMOTE, port: 80 });
  await close();
  assert.deepEqual(entry?.ancestry.map((process) => process.pid), [500, 400]);
  assert.deepEqual(entry?.ancestry[0]?.cmdline, ['curl', 'http://192.0.2.30/']);
  assert.equal(entry?.closedAt, '2026-12-06T10:00:01.000Z');
  assert.notEqual(entry?.capturedAt, null);
  assert.deepEqual(feed.counts, { opens: 1, captured: 1, closes: 1, gaps: 0, ignored: 0 });
});

test('HistoryFeed keeps the kernel attribution alone when the pid now belongs to a later process', async () => {
  const { journal, close } = await openJournal();
  const feed = new HistoryFeed({ journal, analyses: fakeRunner(host()), save: () => [], log: silent });
  // pid 500 started at 09:59:59; a connect at 09:00 was made by an earlier process with that pid.
  feed.push([open(40001, { connectedAt: Date.parse('2026-12-06T09:00:00.000Z') })]);
  await feed.idle();
  const entry = journal.findConnection({ address: LOCAL, port: 40001 }, { address: REMOTE, port: 80 });
  await close();
  assert.deepEqual(entry?.ancestry, []);
  assert.equal(entry?.capturedAt, null);
  assert.equal(entry?.comm, 'curl');
  assert.equal(entry?.uid, 1000);
});

test('HistoryFeed ignores connections of other network namespaces', async () => {
  const { journal, close } = await openJournal();
  const feed = new HistoryFeed({ journal, analyses: fakeRunner(host()), save: () => [], netns: NETNS, log: silent });
  feed.push([open(40002, { netns: 1 }), open(40003)]);
  await feed.idle();
  const ports = journal.list().map((entry) => entry.local.port);
  await close();
  assert.deepEqual(ports, [40003]);
  assert.equal(feed.counts.ignored, 1);
});

test('HistoryFeed writes recorder losses as gaps in the ledger', async () => {
  const { journal, gaps, close } = await openJournal();
  const feed = new HistoryFeed({ journal, analyses: fakeRunner(host()), save: () => [], log: silent });
  feed.push([{ kind: 'loss', reason: 'ring-buffer-full', count: 17, from: Date.parse('2026-12-06T10:00:00.000Z'), to: Date.parse('2026-12-06T10:00:02.000Z') }]);
  await feed.idle();
  await close();
  const written = (await gaps()).find((gap) => gap.reason === 'ring-buffer-full');
  assert.equal(written?.count, 17);
  assert.equal(written?.from, '2026-12-06T10:00:00.000Z');
  assert.equal(written?.to, '2026-12-06T10:00:02.000Z');
});

test('HistoryFeed counts opens beyond its queue as an overload gap and still journals them', async () => {
  const { journal, gaps, close } = await openJournal();
  let release: () => void = () => undefined;
  const gate = new Promise<void>((resolve) => {
    release = resolve;
  });
  const warnings: string[] = [];
  const runner = fakeRunner(host(), gate);
  const feed = new HistoryFeed({ journal, analyses: runner, save: () => [], maxQueued: 4, batch: 2, log: { ...silent, warn: (message) => warnings.push(message) } });
  const burst = Array.from({ length: 10 }, (_, index) => open(41000 + index));
  feed.push(burst);
  release();
  await feed.idle();
  const entries = journal.list();
  await close();
  assert.deepEqual(entries.map((entry) => entry.local.port), burst.map((event) => event.local.port));
  assert.equal(entries.filter((entry) => entry.capturedAt !== null).length, 4);
  assert.deepEqual((await gaps()).filter((gap) => gap.reason === 'overload').map((gap) => gap.count), [6]);
  assert.equal(warnings.length, 1);
  assert.equal(runner.calls, 2);
});

test('HistoryFeed stops queueing at maxPending and counts what it could not queue as an overload gap', async () => {
  const { journal, gaps, close } = await openJournal();
  let release: () => void = () => undefined;
  const gate = new Promise<void>((resolve) => {
    release = resolve;
  });
  const warnings: string[] = [];
  const feed = new HistoryFeed({
    journal,
    analyses: fakeRunner(host(), gate),
    save: () => [],
    maxQueued: 2,
    maxPending: 5,
    batch: 2,
    log: { ...silent, warn: (message) => warnings.push(message) },
  });
  // The capture of the first batch is held: the queue fills to maxPending, the rest is dropped.
  feed.push([open(42000), open(42001)]);
  const burst = Array.from({ length: 8 }, (_, index) => open(42002 + index));
  feed.push(burst);
  release();
  await feed.idle();
  const entries = journal.list();
  await close();
  // Two taken by the held batch, five queued behind it, three dropped.
  assert.deepEqual(
    entries.map((entry) => entry.local.port),
    [42000, 42001, 42002, 42003, 42004, 42005, 42006],
  );
  const overload = (await gaps()).filter((gap) => gap.reason === 'overload');
  assert.ok(overload.some((gap) => gap.count === 3 && typeof gap.note === 'string' && gap.note.includes('not in the history at all')), JSON.stringify(overload));
  assert.ok(warnings.some((message) => message.includes('3 connection events were not recorded')), warnings.join('\n'));
});

test('HistoryFeed appends at most maxBatchEvents events at once, in order, even when none waits for a capture', async () => {
  const { journal, close } = await openJournal();
  const sizes: number[] = [];
  const append = journal.append.bind(journal);
  // What the journal is handed per append: one append's lines are built in memory at once.
  journal.append = (items) => {
    sizes.push(items.length);
    return append(items);
  };
  const feed = new HistoryFeed({ journal, analyses: fakeRunner(host()), save: () => [], maxQueued: 0, maxBatchEvents: 4, log: silent });
  // maxQueued 0: no open waits for a capture, so nothing but maxBatchEvents splits the batches.
  feed.push(Array.from({ length: 10 }, (_, index) => open(43000 + index)));
  await feed.idle();
  const ports = journal.list().map((entry) => entry.local.port);
  await close();
  assert.deepEqual(sizes, [4, 4, 2]);
  assert.deepEqual(ports, Array.from({ length: 10 }, (_, index) => 43000 + index));
});
