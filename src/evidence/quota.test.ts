import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { StoreQuota, describeRecordNotKept, explainRecordNotKept, measureRecords, parseByteSize } from './quota.js';

const dir = mkdtempSync(join(tmpdir(), 'stopd-quota-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('measureRecords counts record files and their bytes, plain and gzipped, and nothing else', async () => {
  const records = join(dir, 'records');
  mkdirSync(records);
  writeFileSync(join(records, `${'a'.repeat(64)}.json`), 'x'.repeat(100));
  writeFileSync(join(records, `${'b'.repeat(40)}.json`), 'x'.repeat(50));
  writeFileSync(join(records, `${'c'.repeat(64)}.json.gz`), 'x'.repeat(7));
  writeFileSync(join(records, `.${'d'.repeat(64)}.tmp-0123456789ab`), 'x'.repeat(1000));
  writeFileSync(join(records, 'notes.txt'), 'x');
  mkdirSync(join(records, `${'e'.repeat(64)}.json`));
  assert.deepEqual(await measureRecords(records), { records: 3, bytes: 157 });
  assert.deepEqual(await measureRecords(join(dir, 'missing')), { records: 0, bytes: 0 });
});

test('StoreQuota.admit reserves up to --max-records and then refuses with the usage', () => {
  const quota = new StoreQuota({ maxRecords: 3 }, { records: 1, bytes: 10 });
  assert.equal(quota.admit(5), undefined);
  assert.equal(quota.admit(5), undefined);
  assert.deepEqual(quota.admit(5), { reason: 'max-records', limit: 3, usage: { records: 3, bytes: 20 } });
  quota.release(5);
  assert.equal(quota.admit(5), undefined, 'a released reservation frees its slot');
});

test('StoreQuota.admit refuses a record that would pass --max-store-bytes', () => {
  const quota = new StoreQuota({ maxBytes: 100 });
  assert.equal(quota.admit(60), undefined);
  assert.deepEqual(quota.admit(41), { reason: 'max-store-bytes', limit: 100, usage: { records: 1, bytes: 60 } });
  assert.equal(quota.admit(40), undefined, 'a smaller one still fits');
  assert.deepEqual(quota.usage, { records: 2, bytes: 100 });
});

test('StoreQuota without limits admits everything', () => {
  const quota = new StoreQuota({});
  for (let index = 0; index < 1000; index += 1) assert.equal(quota.admit(1 << 20), undefined);
});

test('StoreQuota.open starts from the records on disk', async () => {
  const records = join(dir, 'records-open');
  mkdirSync(records);
  writeFileSync(join(records, `${'a'.repeat(64)}.json`), 'x');
  writeFileSync(join(records, `${'b'.repeat(64)}.json`), 'x');
  const quota = await StoreQuota.open(records, { maxRecords: 2 });
  assert.equal(quota.admit(1)?.reason, 'max-records');
});

test('describeRecordNotKept and explainRecordNotKept name the limit that was reached', () => {
  const entry = describeRecordNotKept('f'.repeat(64), { reason: 'max-records', limit: 3, usage: { records: 3, bytes: 900 } }, 300);
  assert.deepEqual(entry, {
    kind: 'record-not-kept',
    record: 'f'.repeat(64),
    reason: 'max-records',
    limit: 3,
    usage: { records: 3, bytes: 900 },
    bytes: 300,
  });
  assert.equal(explainRecordNotKept(entry), 'record not kept: store quota (--max-records 3 reached)');
  assert.equal(explainRecordNotKept({ reason: 'max-store-bytes', limit: 10 }), 'record not kept: store quota (--max-store-bytes 10 reached)');
});

test('parseByteSize reads plain numbers and binary units, and rejects the rest', () => {
  assert.equal(parseByteSize('1048576'), 1048576);
  assert.equal(parseByteSize('500M'), 500 * 1024 * 1024);
  assert.equal(parseByteSize('2GiB'), 2 * 1024 ** 3);
  assert.equal(parseByteSize('64k'), 65536);
  for (const bad of ['0', '-1', '1.5G', 'lots', '', '5X']) assert.throws(() => parseByteSize(bad), { code: 'ERR_USAGE' }, bad);
});

test('StoreQuota.admit refuses a requester group past its share while other groups still get room', () => {
  const quota = new StoreQuota({ maxBytes: 1000, requesterShare: 0.25 });
  // 192.0.2.1 floods: 250 bytes are its share of 1000.
  assert.equal(quota.admit(100, '192.0.2.1'), undefined);
  assert.equal(quota.admit(100, '192.0.2.1'), undefined);
  const refused = quota.admit(100, '192.0.2.1');
  assert.deepEqual(refused, {
    reason: 'requester-share',
    limit: 250,
    usage: { records: 2, bytes: 200 },
    group: '192.0.2.1',
    of: 'max-store-bytes',
    sharePercent: 25,
  });
  for (let index = 0; index < 10; index += 1) assert.equal(quota.admit(100, '192.0.2.1')?.reason, 'requester-share', 'still refused');
  // Another requester is untouched by the flood.
  assert.equal(quota.admit(200, '198.51.100.9'), undefined);
  assert.deepEqual(quota.groupUsage('198.51.100.9'), { records: 1, bytes: 200 });
  assert.deepEqual(quota.usage, { records: 3, bytes: 400 });
  // A released reservation gives the group its room back.
  quota.release(100, '192.0.2.1');
  assert.equal(quota.admit(100, '192.0.2.1'), undefined);
});

test('StoreQuota.admit shares --max-records per group too, and at least one record each', () => {
  const quota = new StoreQuota({ maxRecords: 3, requesterShare: 0.1 });
  assert.equal(quota.admit(1, '192.0.2.1'), undefined);
  assert.equal(quota.admit(1, '192.0.2.1')?.reason, 'requester-share');
  assert.equal(quota.admit(1, '192.0.2.2'), undefined);
  assert.equal(quota.admit(1, '192.0.2.3'), undefined);
  assert.equal(quota.admit(1, '192.0.2.4')?.reason, 'max-records', 'the store limit still holds for all of them');
});

test('StoreQuota.open counts the records of each requester group, reading each record\'s requester', async () => {
  const records = join(dir, 'records-groups');
  mkdirSync(records);
  const record = (address: string, salt: string): string =>
    `{"connection":{},"processes":[{"cmdline":"x \\"requester\\":{\\"address\\":\\"203.0.113.66\\""}],"request":{"line":"1,2:SV","requester":{"address":"${address}","port":9}},"salt":"${salt}"}`;
  writeFileSync(join(records, `${'a'.repeat(64)}.json`), record('192.0.2.1', 'a'));
  writeFileSync(join(records, `${'b'.repeat(64)}.json`), record('192.0.2.1', 'b'));
  writeFileSync(join(records, `${'c'.repeat(64)}.json`), record('2001:db8:1:2::5', 'c'));
  const quota = await StoreQuota.open(records, { maxRecords: 100, requesterShare: 0.02 });
  assert.equal(quota.groupUsage('192.0.2.1').records, 2);
  assert.equal(quota.groupUsage('2001:db8:1:2::/64').records, 1, 'IPv6 is counted per /64');
  assert.equal(quota.groupUsage('203.0.113.66').records, 0, 'a command line cannot claim another requester');
  assert.equal(quota.admit(1, '192.0.2.1')?.reason, 'requester-share', 'its share of 100 is 2, both on disk');
  assert.equal(quota.admit(1, '2001:db8:1:2::77'), undefined);
});

test('explainRecordNotKept names the requester and its share', () => {
  const entry = describeRecordNotKept(
    'f'.repeat(64),
    { reason: 'requester-share', limit: 250, usage: { records: 2, bytes: 200 }, group: '192.0.2.1', of: 'max-store-bytes', sharePercent: 25 },
    100,
  );
  assert.equal(entry.group, '192.0.2.1');
  assert.equal(explainRecordNotKept(entry), 'record not kept: requester 192.0.2.1 reached its share of the store (--max-requester-share 25%: 250 bytes)');
});
