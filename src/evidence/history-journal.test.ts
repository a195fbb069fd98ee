import assert from 'node:assert/strict';
import { appendFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import type { HistoryConnection } from './history-entry.js';
import { listHistorySegments } from './history-files.js';
import { HistoryJournal, type HistoryJournalOptions } from './history-journal.js';
import { readHistory } from './history-read.js';
import { Ledger, readLedger } from './ledger.js';

const root = mkdtempSync(join(tmpdir(), 'stopd-history-'));
after(() => rmSync(root, { recursive: true, force: true }));
let stores = 0;

/** A store directory with an open ledger, as the daemon has one. */
async function openStore(): Promise<{ dir: string; ledger: Ledger }> {
  stores += 1;
  const dir = join(root, `store-${stores}`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const ledger = await Ledger.open(join(dir, 'ledger'), {});
  return { dir, ledger };
}

async function ledgerEntries(dir: string): Promise<Record<string, unknown>[]> {
  const entries = [];
  for await (const line of readLedger(join(dir, 'ledger'))) if (line.entry !== undefined) entries.push(line.entry);
  return entries;
}

/** A recorded connection from 192.0.2.10:<port> to 198.51.100.7:22, by uid 1000 (or as overridden). */
function connection(port: number, overrides: Partial<Omit<HistoryConnection, 'seq'>> = {}): Omit<HistoryConnection, 'seq'> {
  return {
    socket: `ffff8880${port.toString(16).padStart(8, '0')}`,
    netns: 4026531840,
    local: { address: '192.0.2.10', port },
    remote: { address: '198.51.100.7', port: 22 },
    connectedAt: new Date(1_800_000_000_000 + port).toISOString(),
    establishedAt: new Date(1_800_000_000_001 + port).toISOString(),
    closedAt: null,
    tid: port,
    pid: port,
    uid: 1000,
    gid: 1000,
    loginuid: 1000,
    sessionid: 3,
    comm: 'ssh',
    capturedAt: new Date(1_800_000_000_002 + port).toISOString(),
    ancestry: [],
    upstream: [],
    ...overrides,
  };
}

const quiet: Partial<HistoryJournalOptions> = { pruneIntervalMs: 0 };

test('HistoryJournal.append numbers, chains and indexes connections; findConnection reads them back', async () => {
  const { dir, ledger } = await openStore();
  const journal = await HistoryJournal.open(dir, { ledger, ...quiet });
  const result = await journal.append([{ kind: 'open', connection: connection(40001) }, { kind: 'open', connection: connection(40002) }]);
  assert.deepEqual(result.opened.map((c) => c.seq), [1, 2]);
  const found = journal.findConnection({ address: '192.0.2.10', port: 40002 }, { address: '198.51.100.7', port: 22 });
  assert.equal(found?.seq, 2);
  assert.equal(found?.pid, 40002);
  assert.equal(found?.closedAt, null);
  assert.equal(journal.findConnection({ address: '192.0.2.10', port: 40003 }, { address: '198.51.100.7', port: 22 }), undefined);
  // IPv4-mapped IPv6 is the IPv4 address.
  assert.equal(journal.findConnection({ address: '::ffff:192.0.2.10', port: 40001 }, { address: '198.51.100.7', port: 22 })?.seq, 1);
  await journal.close();
  await ledger.close();
  const mode = statSync(join(dir, 'history')).mode & 0o777;
  assert.equal(mode, 0o700);
  for (const segment of listHistorySegments(dir)) assert.equal(statSync(segment.path).mode & 0o777, 0o600);
});

test('HistoryJournal.findConnection returns the latest connection of a reused tuple, with its close time', async () => {
  const { dir, ledger } = await openStore();
  const journal = await HistoryJournal.open(dir, { ledger, ...quiet });
  const tuple = { local: { address: '192.0.2.10', port: 40100 }, remote: { address: '198.51.100.7', port: 22 } };
  await journal.append([{ kind: 'open', connection: connection(40100, { pid: 111 }) }]);
  const closed = await journal.append([{ kind: 'close', socket: '', ...tuple, closedAt: 1_800_000_100_000 }]);
  assert.equal(closed.unmatchedCloses, 0);
  assert.equal(journal.findConnection(tuple.local, tuple.remote)?.closedAt, new Date(1_800_000_100_000).toISOString());
  await journal.append([{ kind: 'open', connection: connection(40100, { pid: 222 }) }]);
  const latest = journal.findConnection(tuple.local, tuple.remote);
  assert.equal(latest?.pid, 222);
  assert.equal(latest?.closedAt, null);
  // A close nobody opened (the connect was before the recorder) is counted, not written.
  const stray = await journal.append([{ kind: 'close', socket: '', local: { address: '192.0.2.10', port: 9 }, remote: tuple.remote, closedAt: 1 }]);
  assert.equal(stray.unmatchedCloses, 1);
  await journal.close();
  await ledger.close();
});

test('HistoryJournal.open rebuilds the index after a restart and notes the time the recorder was off', async () => {
  const { dir, ledger } = await openStore();
  let now = 1_800_000_000_000;
  const first = await HistoryJournal.open(dir, { ledger, now: () => now, ...quiet });
  await first.append([{ kind: 'open', connection: connection(40200) }, { kind: 'open', connection: connection(40201) }]);
  await first.append([{ kind: 'close', socket: '', local: { address: '192.0.2.10', port: 40200 }, remote: { address: '198.51.100.7', port: 22 }, closedAt: now + 5 }]);
  await first.close();
  now += 3_600_000;
  const second = await HistoryJournal.open(dir, { ledger, now: () => now, ...quiet });
  const found = second.findConnection({ address: '192.0.2.10', port: 40200 }, { address: '198.51.100.7', port: 22 });
  assert.equal(found?.seq, 1);
  assert.equal(found?.closedAt, new Date(1_800_000_000_005).toISOString());
  assert.equal(second.findConnection({ address: '192.0.2.10', port: 40201 }, { address: '198.51.100.7', port: 22 })?.seq, 2);
  const next = await second.append([{ kind: 'open', connection: connection(40202) }]);
  assert.equal(next.opened[0]?.seq, 5, 'seq 4 is the stop entry of the first run');
  await second.close();
  await ledger.close();
  const gaps = (await ledgerEntries(dir)).filter((entry) => entry.kind === 'history-gap');
  assert.equal(gaps.length, 1);
  assert.equal(gaps[0]?.reason, 'recorder-off');
  assert.equal(gaps[0]?.from, new Date(1_800_000_000_000).toISOString());
  assert.equal(gaps[0]?.to, new Date(now).toISOString());
});

test('HistoryJournal.open cuts a partial last line left by a crash and says so in the gap', async () => {
  const { dir, ledger } = await openStore();
  const first = await HistoryJournal.open(dir, { ledger, ...quiet });
  await first.append([{ kind: 'open', connection: connection(40300) }]);
  // A crash: the journal is not closed, and half an entry is on disk.
  const segment = listHistorySegments(dir)[0];
  assert.ok(segment !== undefined);
  appendFileSync(segment.path, '{"seq":2,"time":"2027-');
  const second = await HistoryJournal.open(dir, { ledger, ...quiet });
  const appended = await second.append([{ kind: 'open', connection: connection(40301) }]);
  assert.equal(appended.opened[0]?.seq, 2);
  await second.close();
  await ledger.close();
  assert.ok(readFileSync(segment.path, 'utf8').split('\n').every((line) => line === '' || line.startsWith('{"seq":')));
  const gap = (await ledgerEntries(dir)).find((entry) => entry.kind === 'history-gap');
  assert.match(String(gap?.note), /without a clean stop.*partial entry of 22 bytes/);
});

test('HistoryJournal.noteGap writes the loss the daemon reports to the ledger', async () => {
  const { dir, ledger } = await openStore();
  const journal = await HistoryJournal.open(dir, { ledger, ...quiet });
  await journal.noteGap({ reason: 'ring-buffer-full', count: 17, from: 1_800_000_000_000, to: 1_800_000_001_000 });
  await journal.noteGap({ reason: 'unattributed', count: 2, from: 1_800_000_000_000, to: 1_800_000_000_500 });
  await journal.noteGap({ reason: 'recursion', count: 1, from: 1_800_000_000_000, to: 1_800_000_000_200 });
  await journal.close();
  await ledger.close();
  const gaps = (await ledgerEntries(dir)).filter((entry) => entry.kind === 'history-gap');
  assert.deepEqual(gaps.map((gap) => [gap.reason, gap.count, gap.from, gap.to]), [
    ['ring-buffer-full', 17, '2027-01-15T08:00:00.000Z', '2027-01-15T08:00:01.000Z'],
    ['unattributed', 2, '2027-01-15T08:00:00.000Z', '2027-01-15T08:00:00.500Z'],
    ['recursion', 1, '2027-01-15T08:00:00.000Z', '2027-01-15T08:00:00.200Z'],
  ]);
  assert.match(String(gaps[2]?.note), /skipped the recorder/);
});

test('HistoryJournal.prune drops the oldest segments past the size cap and notes each in the ledger', async () => {
  const { dir, ledger } = await openStore();
  const journal = await HistoryJournal.open(dir, { ledger, segmentBytes: 2048, maxBytes: 8192, ...quiet });
  for (let batch = 0; batch < 20; batch += 1) {
    await journal.append([0, 1, 2].map((i) => ({ kind: 'open' as const, connection: connection(41000 + batch * 3 + i) })));
  }
  await journal.prune();
  const usage = journal.usage;
  assert.ok(usage.bytes <= 8192 + 2048, `journal holds ${usage.bytes} bytes`);
  assert.ok(usage.firstSeq > 1, 'the oldest entries are gone');
  // A dropped connection is no longer found; a kept one is.
  assert.equal(journal.findConnection({ address: '192.0.2.10', port: 41000 }, { address: '198.51.100.7', port: 22 }), undefined);
  assert.equal(journal.findConnection({ address: '192.0.2.10', port: 41059 }, { address: '198.51.100.7', port: 22 })?.pid, 41059);
  await journal.close();
  await ledger.close();
  const drops = (await ledgerEntries(dir)).filter((entry) => entry.kind === 'history-dropped');
  assert.ok(drops.length > 0);
  assert.ok(drops.every((drop) => drop.reason === 'history-max-bytes'));
  assert.equal(drops[0]?.firstSeq, 1);
  const kept = listHistorySegments(dir)[0];
  assert.equal(kept?.firstSeq, (drops.at(-1)?.lastSeq as number) + 1, 'the kept journal starts right after the last drop');
  assert.ok(readdirSync(join(dir, 'history')).length >= 1);
});

test('HistoryJournal.prune drops the oldest segments past the entry cap (the index\'s bound) and says so in the ledger', async () => {
  const { dir, ledger } = await openStore();
  const journal = await HistoryJournal.open(dir, { ledger, segmentBytes: 2048, maxEntries: 20, ...quiet });
  for (let batch = 0; batch < 20; batch += 1) {
    await journal.append([0, 1, 2].map((i) => ({ kind: 'open' as const, connection: connection(43000 + batch * 3 + i) })));
  }
  await journal.prune();
  const usage = journal.usage;
  // Whole segments go: at most the cap plus the oldest segment kept.
  assert.ok(usage.lastSeq - usage.firstSeq + 1 <= 20 + 10, `the journal keeps ${usage.lastSeq - usage.firstSeq + 1} entries`);
  assert.ok(usage.firstSeq > 1, 'the oldest entries are gone');
  assert.equal(journal.findConnection({ address: '192.0.2.10', port: 43000 }, { address: '198.51.100.7', port: 22 }), undefined);
  assert.equal(journal.findConnection({ address: '192.0.2.10', port: 43059 }, { address: '198.51.100.7', port: 22 })?.pid, 43059);
  await journal.close();
  await ledger.close();
  const drops = (await ledgerEntries(dir)).filter((entry) => entry.kind === 'history-dropped');
  assert.ok(drops.length > 0);
  assert.ok(drops.every((drop) => drop.reason === 'history-max-entries' && drop.limit === 20), JSON.stringify(drops[0]));
  assert.match(String(drops[0]?.note), /more than 20 entries/);
});

test('HistoryJournal.prune drops segments past retention, sealing the written one first', async () => {
  const { dir, ledger } = await openStore();
  let now = 1_800_000_000_000;
  const journal = await HistoryJournal.open(dir, { ledger, retentionMs: 60_000, now: () => now, ...quiet });
  await journal.append([{ kind: 'open', connection: connection(42000) }]);
  now += 61_000;
  await journal.prune();
  assert.equal(journal.findConnection({ address: '192.0.2.10', port: 42000 }, { address: '198.51.100.7', port: 22 }), undefined);
  await journal.append([{ kind: 'open', connection: connection(42001) }]);
  assert.equal(journal.findConnection({ address: '192.0.2.10', port: 42001 }, { address: '198.51.100.7', port: 22 })?.seq, 2);
  await journal.close();
  await ledger.close();
  const kinds = (await ledgerEntries(dir)).map((entry) => [entry.kind, entry.reason]);
  assert.deepEqual(kinds, [
    ['history-sealed', undefined],
    ['history-dropped', 'history-retention'],
    ['history-checkpoint', undefined],
  ]);
});

test('HistoryJournal.list and readHistory filter by time, uid, address and port alike', async () => {
  const { dir, ledger } = await openStore();
  // Entries are written after their connect: the time lookup relies on it.
  const journal = await HistoryJournal.open(dir, { ledger, now: () => 1_800_000_100_000, ...quiet });
  await journal.append([
    { kind: 'open', connection: connection(43000, { uid: 0 }) },
    { kind: 'open', connection: connection(43001, { remote: { address: '203.0.113.5', port: 443 } }) },
    { kind: 'open', connection: connection(43002) },
  ]);
  const filters = [
    { uid: 0 },
    { address: '203.0.113.5' },
    { port: 443 },
    { since: 1_800_000_000_000 + 43001, until: 1_800_000_000_000 + 43001 },
    { limit: 2 },
  ];
  const expected = [[43000], [43001], [43001], [43001], [43000, 43001]];
  for (const [index, filter] of filters.entries()) {
    assert.deepEqual(journal.list(filter).map((c) => c.local.port), expected[index], JSON.stringify(filter));
    assert.deepEqual((await readHistory(dir, filter)).map((c) => c.local.port), expected[index], `readHistory ${JSON.stringify(filter)}`);
  }
  await journal.close();
  await ledger.close();
});

test('HistoryJournal.append leaves out of captures what --save leaves out of records', async () => {
  const { dir, ledger } = await openStore();
  const journal = await HistoryJournal.open(dir, { ledger, save: ['processes', 'host'], ...quiet });
  const ancestor = { pid: 44000, ppid: 1, name: 'ssh', uid: { real: 1000, effective: 1000 }, startTime: '2027-01-15T08:00:00.000Z', tty: null, priority: 20, nice: 0, pgid: 44000, sid: 44000, cmdline: ['ssh', 'secret-host'] };
  const upstream = [{ local: { address: '192.0.2.10', port: 22 }, remote: { address: '203.0.113.1', port: 50000 }, pid: 44000 }];
  await journal.append([{ kind: 'open', connection: connection(44000, { ancestry: [ancestor], upstream }) }]);
  const found = journal.findConnection({ address: '192.0.2.10', port: 44000 }, { address: '198.51.100.7', port: 22 });
  assert.deepEqual(found?.ancestry.map((p) => [p.name, p.cmdline]), [['ssh', []]]);
  assert.deepEqual(found?.upstream, []);
  await journal.close();
  await ledger.close();
  const text = listHistorySegments(dir).map((segment) => readFileSync(segment.path, 'utf8')).join('');
  assert.ok(!text.includes('secret-host'), 'the command line never reaches the disk');
});
