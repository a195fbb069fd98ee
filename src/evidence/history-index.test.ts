import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HistoryIndex, INDEX_KIND } from './history-index.js';

test('HistoryIndex.latestWithKey gives the newest open entry of a reused tuple, and previousWithKey the ones before', () => {
  const index = new HistoryIndex(1);
  index.add(1, { kind: 'open', offset: 0, time: 10, key: 'a', closedAt: Number.NaN });
  index.add(2, { kind: 'open', offset: 100, time: 11, key: 'b', closedAt: Number.NaN });
  index.add(3, { kind: 'close', offset: 200, time: 12, open: 1, closedAt: 12 });
  index.add(4, { kind: 'open', offset: 300, time: 13, key: 'a', closedAt: Number.NaN });
  assert.equal(index.latestWithKey('a'), 4);
  assert.equal(index.previousWithKey(4), 1);
  assert.equal(index.previousWithKey(1), undefined);
  assert.equal(index.latestWithKey('c'), undefined);
  assert.equal(index.entry(1)?.closedAt, 12);
  assert.ok(Number.isNaN(index.entry(4)?.closedAt ?? 0));
  assert.equal(index.entry(3)?.kind, INDEX_KIND.close);
});

test('HistoryIndex.firstSeqAtOrAfter bisects write times, which never go backwards', () => {
  const index = new HistoryIndex(5);
  [100, 200, 150, 300].forEach((time, n) => index.add(5 + n, { kind: 'stop', offset: n, time }));
  assert.equal(index.firstSeqAtOrAfter(0), 5);
  assert.equal(index.firstSeqAtOrAfter(150), 6, 'a clock stepped back keeps the time before it');
  assert.equal(index.firstSeqAtOrAfter(201), 8);
  assert.equal(index.firstSeqAtOrAfter(301), 9);
});

test('HistoryIndex.dropBefore forgets dropped entries, also as previous entries of a kept tuple', () => {
  const index = new HistoryIndex(1);
  for (let seq = 1; seq <= 10_000; seq += 1) index.add(seq, { kind: 'open', offset: seq * 10, time: seq, key: `k${seq % 100}`, closedAt: Number.NaN });
  index.dropBefore(9_951);
  assert.equal(index.firstSeq, 9_951);
  assert.equal(index.entry(9_950), undefined);
  assert.equal(index.entry(9_951)?.offset, 99_510);
  // k50 was last written at 9950 (dropped): it is gone; k51 at 9951 is kept, and nothing before it.
  assert.equal(index.latestWithKey('k50'), undefined);
  assert.equal(index.latestWithKey('k51'), 9_951);
  assert.equal(index.previousWithKey(9_951), undefined);
  index.add(10_001, { kind: 'open', offset: 0, time: 10_001, key: 'k50', closedAt: Number.NaN });
  assert.equal(index.latestWithKey('k50'), 10_001);
  assert.equal(index.previousWithKey(10_001), undefined);
});

test('HistoryIndex.dropBefore after many opens of one reused tuple keeps every live tuple findable (the key table was sized from dropped entries and filled up: a hang)', { timeout: 20_000 }, () => {
  // A connect flood reuses a few tuples many times: 10 000 opens of one tuple, then 3 000
  // distinct tuples. Dropping the first 10 000 entries makes 10 000 stale entries but only one
  // stale key, and 3 000 live keys must fit in the rebuilt table.
  const index = new HistoryIndex(1);
  let seq = 1;
  for (; seq <= 10_000; seq += 1) index.add(seq, { kind: 'open', offset: 0, time: seq, key: 'reused', closedAt: Number.NaN });
  const first = seq;
  for (let k = 0; k < 3_000; k += 1, seq += 1) index.add(seq, { kind: 'open', offset: 0, time: seq, key: `tuple ${k}`, closedAt: Number.NaN });
  index.dropBefore(first);
  for (let k = 0; k < 3_000; k += 1) assert.equal(index.latestWithKey(`tuple ${k}`), first + k);
  assert.equal(index.latestWithKey('reused'), undefined);
  // And the table keeps working as entries are added after the rebuild.
  for (let k = 0; k < 5_000; k += 1, seq += 1) index.add(seq, { kind: 'open', offset: 0, time: seq, key: `later ${k}`, closedAt: Number.NaN });
  assert.equal(index.latestWithKey('later 4999'), seq - 1);
  assert.equal(index.latestWithKey('tuple 0'), first);
});

test('HistoryIndex.add leaves a hole for a damaged line instead of failing', () => {
  const index = new HistoryIndex(1);
  index.add(1, { kind: 'open', offset: 0, time: 1, key: 'a', closedAt: Number.NaN });
  index.add(3, { kind: 'open', offset: 200, time: 3, key: 'a', closedAt: Number.NaN });
  assert.equal(index.entry(2)?.kind, 0);
  assert.equal(index.latestWithKey('a'), 3);
  assert.equal(index.previousWithKey(3), 1);
  assert.throws(() => index.add(2, { kind: 'stop', offset: 0, time: 4 }), /not after 3/);
});

test('HistoryIndex holds a million connections in under 100 bytes each', () => {
  const index = new HistoryIndex(1);
  for (let seq = 1; seq <= 1_000_000; seq += 1) index.add(seq, { kind: 'open', offset: seq, time: seq, key: `192.0.2.${seq % 250} ${seq % 60_000} 198.51.100.7 22 ${seq}`, closedAt: Number.NaN });
  assert.equal(index.latestWithKey(`192.0.2.${777 % 250} ${777 % 60_000} 198.51.100.7 22 777`), 777);
  assert.ok(index.bytes / 1_000_000 < 100, `${index.bytes / 1_000_000} bytes per connection`);
});
