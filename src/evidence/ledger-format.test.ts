import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { checkEntryMac, generateLedgerKey, splitEntryMac } from './forward-mac.js';
import { Ledger } from './ledger.js';
import {
  GENESIS_HASH,
  formatLedgerLine,
  hashLine,
  isReplyEntry,
  isUpstreamEntry,
  parseLedgerEntry,
  parseLedgerLine,
  readLineSeq,
  type EntryInput,
  type LedgerEntry,
} from './ledger-format.js';

const root = mkdtempSync(join(tmpdir(), 'stopd-ledger-format-'));
after(() => rmSync(root, { recursive: true, force: true }));

test('hashLine is the SHA-256 hex of the line, the same for its text and its bytes', () => {
  assert.equal(hashLine(''), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  assert.equal(hashLine('{"seq":1}'), hashLine(Buffer.from('{"seq":1}')));
  assert.equal(GENESIS_HASH, '0'.repeat(64));
});

test('formatLedgerLine writes JSON, and with a key a MAC last that splitEntryMac recovers', () => {
  const entry = { seq: 1, time: '2024-01-01T00:00:00.000Z', prev: GENESIS_HASH, kind: 'reply' };
  assert.deepEqual(formatLedgerLine(entry, undefined), { line: JSON.stringify(entry) });
  const key = generateLedgerKey();
  const { line, mac } = formatLedgerLine(entry, key);
  const split = splitEntryMac(line);
  assert.equal(split?.lineWithoutMac, JSON.stringify(entry));
  assert.equal(split?.mac, mac);
  assert.ok(checkEntryMac(key, split?.lineWithoutMac ?? '', split?.mac ?? ''));
});

test('parseLedgerLine takes any JSON object; parseLedgerEntry only one with a seq from 1 and a prev', () => {
  const good = '{"seq":3,"time":"t","prev":"p","kind":"reply"}';
  assert.equal(parseLedgerLine(good)?.seq, 3);
  assert.equal(parseLedgerEntry(good)?.seq, 3);
  for (const text of ['{}', '{"seq":0,"prev":"p"}', '{"seq":1.5,"prev":"p"}', '{"seq":2}', '{"seq":"2","prev":"p"}']) {
    assert.notEqual(parseLedgerLine(text), undefined, text);
    assert.equal(parseLedgerEntry(text), undefined, text);
  }
  for (const text of ['', 'not json', '[1,2]', 'null', '7', '{"seq":1,"prev":"p"']) {
    assert.equal(parseLedgerLine(text), undefined, text);
    assert.equal(parseLedgerEntry(text), undefined, text);
  }
});

test('readLineSeq gives the seq and time of a line with an integer seq', () => {
  assert.deepEqual(readLineSeq('{"seq":4,"time":"2024-01-01T00:00:00.000Z"}'), { seq: 4, time: '2024-01-01T00:00:00.000Z' });
  assert.deepEqual(readLineSeq('{"seq":0}'), { seq: 0, time: undefined });
  assert.equal(readLineSeq('{"seq":"4"}'), undefined);
  assert.equal(readLineSeq('{"seq":4'), undefined);
});

test('the guards narrow read-back entries by kind', () => {
  const reply = parseLedgerLine('{"seq":1,"time":"t","prev":"p","kind":"reply","decision":"token"}') as LedgerEntry;
  const upstream = parseLedgerLine('{"seq":2,"time":"t","prev":"p","kind":"upstream","outcome":"timeout"}') as LedgerEntry;
  assert.ok(isReplyEntry(reply) && !isUpstreamEntry(reply));
  assert.ok(isUpstreamEntry(upstream) && !isReplyEntry(upstream));
  if (isReplyEntry(reply)) assert.equal(reply.decision, 'token');
});

test('Ledger.append takes each known kind with its fields, and other literal kinds as given', async () => {
  const ledger = await Ledger.open(join(root, 'typed'));
  const requester = { address: '192.0.2.1', port: 40000 };
  const reply = await ledger.append({ kind: 'reply', request: '6191,23', requester, decision: 'token', token: 'a'.repeat(64) });
  const foreign = await ledger.append({ kind: 'from-a-newer-version', anything: [1, 2] });
  await ledger.close();
  assert.equal(reply.kind, 'reply');
  assert.deepEqual(foreign.anything, [1, 2]);
  // What the compiler refuses (checked by `npm run build`, which compiles this file):
  const refused: unknown[] = [
    // @ts-expect-error a reply entry names its requester and decision
    { kind: 'reply', request: '6191,23' } satisfies EntryInput<'reply'>,
    // @ts-expect-error a prune entry says how large the record was
    { kind: 'prune', record: 'a', action: 'removed', verified: true } satisfies EntryInput<'prune'>,
  ];
  const wide: string = 'reply';
  // @ts-expect-error a kind typed only as string could be a known kind with the wrong fields
  const unchecked: EntryInput<typeof wide> = { kind: wide };
  assert.equal(refused.length, 2);
  assert.deepEqual(unchecked, { kind: 'reply' });
});
