import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isRecordFileName, parseRecordFileName, recordFileName, temporaryRecordPath, TEMPORARY_RECORD_NAME } from './record-files.js';
import { isTokenShaped, tokenHashOf } from './tokens.js';

const SHA256 = 'ab'.repeat(32);
const SHA1 = 'cd'.repeat(20);

test('parseRecordFileName sorts the names found in records/', () => {
  assert.deepEqual(parseRecordFileName(`${SHA256}.json`), { kind: 'record', token: SHA256, compressed: false });
  assert.deepEqual(parseRecordFileName(`${SHA1}.json.gz`), { kind: 'record', token: SHA1, compressed: true });
  assert.deepEqual(parseRecordFileName(`.${SHA256}.tmp-0a1b2c3d4e5f`), { kind: 'temporary' });
  for (const name of [`${SHA256.toUpperCase()}.json`, `${'ab'.repeat(24)}.json`, `${SHA256}.json.bak`, `${SHA256}.txt`, `${SHA256}`, `../${SHA256}.json`, `.${SHA256}.tmp-`, 'lock']) {
    assert.deepEqual(parseRecordFileName(name), { kind: 'other' }, name);
    assert.equal(isRecordFileName(name), false, name);
  }
  assert.ok(isRecordFileName(`${SHA256}.json`) && isRecordFileName(`${SHA256}.json.gz`));
});

test('recordFileName and temporaryRecordPath make the names parseRecordFileName reads', () => {
  assert.equal(recordFileName(SHA256), `${SHA256}.json`);
  assert.equal(recordFileName(SHA256, { compressed: true }), `${SHA256}.json.gz`);
  const temporary = temporaryRecordPath('/var/lib/stopd/records', SHA256);
  assert.ok(temporary.startsWith('/var/lib/stopd/records/'));
  assert.match(temporary.slice('/var/lib/stopd/records/'.length), TEMPORARY_RECORD_NAME);
  assert.notEqual(temporaryRecordPath('/d', SHA256), temporaryRecordPath('/d', SHA256));
});

test('token shapes: 40 hex digits are SHA-1, 64 SHA-256, anything else is no token', () => {
  assert.equal(tokenHashOf(SHA256), 'sha256');
  assert.equal(tokenHashOf(SHA1), 'sha1');
  for (const text of ['', 'ab'.repeat(24), `${SHA1}0`, SHA256.toUpperCase(), `${SHA256}\n`]) {
    assert.equal(tokenHashOf(text), undefined, text);
    assert.equal(isTokenShaped(text), false, text);
  }
});
