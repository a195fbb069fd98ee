import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { filterUtmpForUsers, parseUtmp, readUtmp, UTMP_RECORD_SIZE } from './utmp.js';

const dir = mkdtempSync(join(tmpdir(), 'stopd-utmp-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** One glibc x86_64 `struct utmp`, written at the offsets of bits/utmp.h. */
function record(fields: {
  type: number;
  pid?: number;
  line?: string;
  id?: string;
  user?: string;
  host?: string;
  sec?: number;
  usec?: number;
  addr?: number[];
}): Buffer {
  const buf = Buffer.alloc(UTMP_RECORD_SIZE);
  buf.writeInt16LE(fields.type, 0);
  buf.writeInt32LE(fields.pid ?? 0, 4);
  buf.write(fields.line ?? '', 8, 32, 'utf8');
  buf.write(fields.id ?? '', 40, 4, 'utf8');
  buf.write(fields.user ?? '', 44, 32, 'utf8');
  buf.write(fields.host ?? '', 76, 256, 'utf8');
  buf.writeInt32LE(4242, 336); // ut_session
  buf.writeInt32LE(fields.sec ?? 0, 340);
  buf.writeInt32LE(fields.usec ?? 0, 344);
  Buffer.from(fields.addr ?? []).copy(buf, 348);
  buf.fill(0xee, 364, 384); // reserved bytes must not leak into any field
  return buf;
}

const alice = record({
  type: 7,
  pid: 8337,
  line: 'pts/1',
  id: 'ts/1',
  user: 'alice',
  host: '1.1.1.1',
  sec: 1_700_000_000,
  usec: 250_000,
  addr: [1, 1, 1, 1],
});
const boot = record({ type: 2, line: '~', user: 'reboot', host: '6.1.0-18-amd64', sec: 1_699_999_000 });
const bob6 = record({
  type: 7,
  pid: 9000,
  line: 'pts/2',
  user: 'bob',
  host: 'fd00::2',
  sec: 1_700_000_100,
  addr: [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
});

void test('parseUtmp reads type, pid, line, user, host, time and IPv4 address', () => {
  assert.deepEqual(parseUtmp(alice), [
    {
      type: 'USER_PROCESS',
      pid: 8337,
      line: 'pts/1',
      user: 'alice',
      host: '1.1.1.1',
      time: '2023-11-14T22:13:20.250Z',
      address: '1.1.1.1',
    },
  ]);
});

void test('parseUtmp reads several records with boot and IPv6 entries', () => {
  const entries = parseUtmp(Buffer.concat([boot, alice, bob6]));
  assert.deepEqual(
    entries.map((entry) => [entry.type, entry.user, entry.address]),
    [
      ['BOOT_TIME', 'reboot', null],
      ['USER_PROCESS', 'alice', '1.1.1.1'],
      ['USER_PROCESS', 'bob', 'fd00::2'],
    ],
  );
});

void test('parseUtmp gives an IPv4-mapped address as plain IPv4', () => {
  const mapped = record({ type: 7, user: 'carol', addr: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 9] });
  assert.equal(parseUtmp(mapped)[0]?.address, '192.0.2.9');
});

void test('parseUtmp prints an IPv4-compatible address in hex, like every other address (RFC 5952)', () => {
  const compatible = record({ type: 7, user: 'dave', addr: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 192, 0, 2, 9] });
  assert.equal(parseUtmp(compatible)[0]?.address, '::c000:209');
});

void test('parseUtmp reads a field that fills its whole array without a NUL', () => {
  const full = record({ type: 7, user: 'u'.repeat(32), line: 'l'.repeat(32) });
  const [entry] = parseUtmp(full);
  assert.equal(entry?.user, 'u'.repeat(32));
  assert.equal(entry.line, 'l'.repeat(32));
  assert.equal(entry.host, '');
});

void test('parseUtmp names every ut_type and keeps unknown ones', () => {
  const names = parseUtmp(Buffer.concat([0, 1, 3, 4, 5, 6, 8, 9, 42].map((type) => record({ type })))).map(
    (entry) => entry.type,
  );
  assert.deepEqual(names, [
    'EMPTY',
    'RUN_LVL',
    'NEW_TIME',
    'OLD_TIME',
    'INIT_PROCESS',
    'LOGIN_PROCESS',
    'DEAD_PROCESS',
    'ACCOUNTING',
    'TYPE_42',
  ]);
});

void test('parseUtmp ignores a trailing partial record', () => {
  const entries = parseUtmp(Buffer.concat([alice, bob6.subarray(0, 200)]));
  assert.equal(entries.length, 1);
  assert.equal(entries[0]?.user, 'alice');
});

void test('parseUtmp returns no entries for an empty buffer', () => {
  assert.deepEqual(parseUtmp(Buffer.alloc(0)), []);
});

void test('readUtmp returns [] for a missing file and reads an existing one', () => {
  assert.deepEqual(readUtmp(join(dir, 'missing')), []);
  const path = join(dir, 'utmp');
  writeFileSync(path, Buffer.concat([boot, alice]));
  assert.deepEqual(
    readUtmp(path).map((entry) => entry.user),
    ['reboot', 'alice'],
  );
  const empty = join(dir, 'empty');
  writeFileSync(empty, '');
  assert.deepEqual(readUtmp(empty), []);
});

void test('filterUtmpForUsers keeps only the entries of the given users, in order', () => {
  const entries = parseUtmp(Buffer.concat([boot, alice, bob6, record({ type: 8, line: 'pts/3' })]));
  assert.deepEqual(
    filterUtmpForUsers(entries, ['bob', 'alice', 'nobody']).map((entry) => entry.user),
    ['alice', 'bob'],
  );
  assert.deepEqual(filterUtmpForUsers(entries, ['']), []);
  assert.deepEqual(filterUtmpForUsers(entries, []), []);
});
