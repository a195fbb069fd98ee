import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import {
  appendEntryMac,
  checkEntryMac,
  computeEntryMac,
  evolveKey,
  evolveKeyBy,
  generateLedgerKey,
  ledgerKeyId,
  parseLedgerKey,
  readKeyState,
  splitEntryMac,
  writeKeyState,
} from './forward-mac.js';

const dir = mkdtempSync(join(tmpdir(), 'stopd-fmac-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('evolveKey is SHA-256 of the label and the previous key', () => {
  const key = Buffer.alloc(32, 7);
  const expected = createHash('sha256').update('stopd ledger key evolve').update(key).digest();
  assert.deepEqual(evolveKey(key), expected);
  assert.notDeepEqual(evolveKey(key), key);
});

test('evolveKeyBy equals repeated evolveKey and leaves its input intact', () => {
  const key = generateLedgerKey();
  const copy = Buffer.from(key);
  assert.deepEqual(evolveKeyBy(key, 3), evolveKey(evolveKey(evolveKey(key))));
  assert.deepEqual(evolveKeyBy(key, 0), key);
  assert.deepEqual(key, copy);
});

test('appendEntryMac and splitEntryMac round-trip the MACed bytes exactly', () => {
  const line = JSON.stringify({ seq: 3, time: 't', prev: 'p', kind: 'reply', text: '"mac":"x"}' });
  const key = generateLedgerKey();
  const mac = computeEntryMac(key, line);
  const stored = appendEntryMac(line, mac);
  assert.equal((JSON.parse(stored) as { mac: string }).mac, mac);
  assert.deepEqual(splitEntryMac(stored), { lineWithoutMac: line, mac });
  assert.equal(checkEntryMac(key, line, mac), true);
  assert.equal(checkEntryMac(evolveKey(key), line, mac), false);
  assert.equal(checkEntryMac(key, line.replace('reply', 'replx'), mac), false);
});

test('splitEntryMac returns undefined for a line without a trailing MAC member', () => {
  assert.equal(splitEntryMac('{"seq":1,"kind":"a"}'), undefined);
  assert.equal(splitEntryMac('{"mac":"' + 'a'.repeat(64) + '","seq":1}'), undefined);
});

test('ledgerKeyId is stable, short and differs from every evolved key', () => {
  const key = generateLedgerKey();
  assert.match(ledgerKeyId(key), /^[0-9a-f]{16}$/);
  assert.equal(ledgerKeyId(key), ledgerKeyId(Buffer.from(key)));
  assert.notEqual(ledgerKeyId(key), evolveKey(key).toString('hex').slice(0, 16));
});

test('writeKeyState replaces the state file with mode 0600 and readKeyState reads it back', () => {
  const path = join(dir, 'ledger.key');
  const key = generateLedgerKey();
  writeKeyState(path, { version: 1, keyId: 'abc', installSeq: 2, seq: 5, head: 'h', key });
  writeKeyState(path, { version: 1, keyId: 'abc', installSeq: 2, seq: 6, head: 'h2', key: evolveKey(key) });
  assert.equal(statSync(path).mode & 0o777, 0o600);
  const state = readKeyState(path);
  assert.equal(state?.seq, 6);
  assert.deepEqual(state?.key, evolveKey(key));
  assert.ok(!readFileSync(path, 'utf8').includes(key.toString('hex')), 'the old key is gone from the file');
});

test('readKeyState returns undefined for a missing file and throws for a damaged one', () => {
  assert.equal(readKeyState(join(dir, 'none')), undefined);
  const bad = join(dir, 'bad.key');
  writeFileSync(bad, '{"version":1,"key":"zz"}');
  assert.throws(() => readKeyState(bad), /does not have the fields/);
});

test('parseLedgerKey accepts 64 hex digits with surrounding space and rejects anything else', () => {
  const hex = 'ab'.repeat(32);
  assert.deepEqual(parseLedgerKey(`  ${hex}\n`, 'k'), Buffer.from(hex, 'hex'));
  assert.throws(() => parseLedgerKey('abc', 'k'), { code: 'ERR_USAGE' });
});
