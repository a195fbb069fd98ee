import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ConnectionEvent, OutboundOpenEvent } from '../host/connection-events.js';
import { FakeHost } from '../host/fake-host.js';
import type { Endpoint } from '../host/types.js';
import type { HistoryConnection } from '../evidence/history-entry.js';
import { captureConnection, type CaptureOptions } from '../trace/index.js';
import type { AnalysisRunner } from './evidence-collector.js';
import { HistoryFeed, type HistoryGap, type HistoryJournalWriter } from './history-feed.js';

const LOCAL = '198.51.100.2';
const REMOTE = '192.0.2.30';
const NETNS = 4026531840;

class MemoryJournal implements HistoryJournalWriter {
  readonly entries: HistoryConnection[] = [];
  readonly gaps: HistoryGap[] = [];
  readonly order: string[] = [];
  recordOpen(connection: Omit<HistoryConnection, 'seq' | 'closedAt'>): Promise<void> {
    this.entries.push({ ...connection, seq: this.entries.length + 1, closedAt: null });
    this.order.push(`open ${connection.socket}`);
    return Promise.resolve();
  }
  recordClose(close: { socket: string; closedAt: string }): Promise<void> {
    const index = this.entries.findLastIndex((entry) => entry.socket === close.socket);
    const entry = this.entries[index];
    if (entry !== undefined) this.entries[index] = { ...entry, closedAt: close.closedAt };
    this.order.push(`close ${close.socket}`);
    return Promise.resolve();
  }
  recordGap(gap: HistoryGap): Promise<void> {
    this.gaps.push(gap);
    this.order.push(`gap ${gap.reason}`);
    return Promise.resolve();
  }
  findConnection(local: Endpoint, remote: Endpoint): HistoryConnection | undefined {
    return this.entries.findLast((entry) => entry.local.port === local.port && entry.remote.port === remote.port && entry.local.address === local.address && entry.remote.address === remote.address);
  }
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

test('HistoryFeed journals each open with its capture, then its close, in kernel order', async () => {
  const journal = new MemoryJournal();
  const feed = new HistoryFeed({ journal, analyses: fakeRunner(host()), save: () => ['cmdline'], netns: NETNS, log: silent });
  const events: ConnectionEvent[] = [
    open(40000),
    { kind: 'close', socket: 'ffff40000', closedAt: Date.parse('2026-12-06T10:00:01.000Z'), netns: NETNS, local: { address: LOCAL, port: 40000 }, remote: { address: REMOTE, port: 80 } },
  ];
  feed.push(events);
  await feed.idle();
  assert.deepEqual(journal.order, ['open ffff40000', 'close ffff40000']);
  const entry = journal.entries[0];
  assert.deepEqual(entry?.ancestry.map((process) => process.pid), [500, 400]);
  assert.deepEqual(entry?.ancestry[0]?.cmdline, ['curl', 'http://192.0.2.30/']);
  assert.equal(entry?.closedAt, '2026-12-06T10:00:01.000Z');
  assert.notEqual(entry?.capturedAt, null);
});

test('HistoryFeed keeps the kernel attribution alone when the pid now belongs to a later process', async () => {
  const journal = new MemoryJournal();
  const feed = new HistoryFeed({ journal, analyses: fakeRunner(host()), save: () => [], log: silent });
  // pid 500 started at 09:59:59; a connect at 09:00 was made by an earlier process with that pid.
  feed.push([open(40001, { connectedAt: Date.parse('2026-12-06T09:00:00.000Z') })]);
  await feed.idle();
  assert.deepEqual(journal.entries[0]?.ancestry, []);
  assert.equal(journal.entries[0]?.capturedAt, null);
  assert.equal(journal.entries[0]?.comm, 'curl');
});

test('HistoryFeed ignores connections of other network namespaces', async () => {
  const journal = new MemoryJournal();
  const feed = new HistoryFeed({ journal, analyses: fakeRunner(host()), save: () => [], netns: NETNS, log: silent });
  feed.push([open(40002, { netns: 1 }), open(40003)]);
  await feed.idle();
  assert.deepEqual(journal.order, ['open ffff40003']);
  assert.equal(feed.counts.ignored, 1);
});

test('HistoryFeed writes recorder losses as gaps', async () => {
  const journal = new MemoryJournal();
  const feed = new HistoryFeed({ journal, analyses: fakeRunner(host()), save: () => [], log: silent });
  feed.push([{ kind: 'loss', reason: 'ring-buffer-full', count: 17, from: Date.parse('2026-12-06T10:00:00.000Z'), to: Date.parse('2026-12-06T10:00:02.000Z') }]);
  await feed.idle();
  assert.deepEqual(journal.gaps, [{ reason: 'ring-buffer-full', count: 17, from: '2026-12-06T10:00:00.000Z', to: '2026-12-06T10:00:02.000Z' }]);
});

test('HistoryFeed counts opens beyond its queue as an overload gap and still journals them', async () => {
  const journal = new MemoryJournal();
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
  assert.equal(journal.entries.length, 10);
  assert.deepEqual(journal.entries.map((entry) => entry.local.port), burst.map((event) => event.local.port));
  assert.equal(journal.entries.filter((entry) => entry.capturedAt !== null).length, 4);
  assert.deepEqual(journal.gaps.map((gap) => [gap.reason, gap.count]), [['overload', 6]]);
  assert.equal(warnings.length, 1);
  assert.equal(runner.calls, 2);
});
