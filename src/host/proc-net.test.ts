import assert from 'node:assert/strict';
import { test } from 'node:test';

import { decodeProcAddress, parseProcNetTcp, parseProcNetUnix } from './proc-net.js';

// Captured from a Linux 6.18 x86_64 host (trailing columns shortened).
const TCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 504 1 00000000cf59cd8c 100 0 0 10 0
   1: 0100007F:8202 0100007F:1F90 01 00000000:00000000 00:00000000 00000000 65534        0 33151 2 000000002b4e6b2a 20 0 0 10 -1
   2: 0100007F:A05E 0100007F:B303 06 00000000:00000000 03:0000152E 00000000     0        0 0 3 0000000021d43e37
`;

const TCP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 33149 1 00000000ff7de174 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:1F90 0000000000000000FFFF00000100007F:8202 01 00000000:00000000 00:00000000 00000000     0        0 33152 1 00000000557f3efe 20 0 0 10 -1
   2: B80D0120000000000000000001000000:9950 00000000000000000000000001000000:1F91 01 00000000:00000000 00:00000000 00000000  1000        0 33153 2 00000000194a8baf 20 0 0 10 -1
`;

const UNIX = `Num       RefCount Protocol Flags    Type St Inode Path
000000004fe02870: 00000002 00000000 00010000 0001 01 33156 /tmp/stopd test.sock
00000000bae763a5: 00000003 00000000 00000000 0001 03 32632
00000000ed460641: 00000003 00000000 00000000 0002 03   500
000000008e8e9122: 00000002 00000000 00010000 0005 01 33155 @stopd-abstract@@@
00000000aaaaaaaa: 00000002 00000000 00010000 0001 01 33160 /tmp/new
line
`;

void test('decodeProcAddress reverses the bytes of each 32-bit word on little-endian hosts', () => {
  assert.equal(decodeProcAddress('0100007F', true).toString('hex'), '7f000001');
  assert.equal(
    decodeProcAddress('B80D0120000000000000000001000000', true).toString('hex'),
    '20010db8000000000000000000000001',
  );
});

void test('decodeProcAddress keeps word order as printed on big-endian hosts', () => {
  assert.equal(decodeProcAddress('7F000001', false).toString('hex'), '7f000001');
});

void test('decodeProcAddress rejects text that is not 8 or 32 hex digits', () => {
  assert.throws(() => decodeProcAddress('0100007', true), SyntaxError);
  assert.throws(() => decodeProcAddress('0100007G', true), SyntaxError);
});

void test('parseProcNetTcp reads state, ports, uid and inode of IPv4 rows', () => {
  const rows = parseProcNetTcp(TCP, 4, { littleEndian: true });
  assert.equal(rows.length, 3);
  const [listener, conn, timeWait] = rows;
  assert.deepEqual(
    { ...listener, localAddr: listener?.localAddr.toString('hex'), remoteAddr: listener?.remoteAddr.toString('hex') },
    { family: 4, state: 10, uid: 0, inode: 504, localAddr: '00000000', localPort: 2024, remoteAddr: '00000000', remotePort: 0 },
  );
  assert.equal(conn?.localAddr.toString('hex'), '7f000001');
  assert.equal(conn?.localPort, 0x8202);
  assert.equal(conn?.remotePort, 8080);
  assert.equal(conn?.state, 1);
  assert.equal(conn?.uid, 65534);
  assert.equal(conn?.inode, 33151);
  assert.equal(timeWait?.state, 6);
  assert.equal(timeWait?.inode, 0);
});

void test('parseProcNetTcp decodes IPv6 and v4-mapped rows of tcp6', () => {
  const rows = parseProcNetTcp(TCP6, 6, { littleEndian: true });
  assert.equal(rows.length, 3);
  assert.equal(rows[0]?.localAddr.toString('hex'), '0'.repeat(32));
  assert.equal(rows[0]?.state, 10);
  assert.equal(rows[1]?.localAddr.toString('hex'), '00000000000000000000ffff7f000001');
  assert.equal(rows[1]?.remotePort, 0x8202);
  assert.equal(rows[2]?.localAddr.toString('hex'), '20010db8000000000000000000000001');
  assert.equal(rows[2]?.remoteAddr.toString('hex'), '00000000000000000000000000000001');
  assert.equal(rows[2]?.uid, 1000);
  assert.equal(rows[2]?.family, 6);
});

void test('parseProcNetTcp returns nothing for a header-only table', () => {
  assert.deepEqual(parseProcNetTcp(TCP.split('\n')[0] ?? '', 4), []);
});

void test('parseProcNetTcp rejects a row whose address length does not match the family', () => {
  assert.throws(() => parseProcNetTcp(TCP6, 4, { littleEndian: true }), SyntaxError);
});

void test('parseProcNetTcp rejects a row with a malformed inode', () => {
  const bad = TCP.replace(' 504 ', ' 5x4 ');
  assert.throws(() => parseProcNetTcp(bad, 4, { littleEndian: true }), /Cannot parse \/proc\/net inode/);
});

void test('parseProcNetUnix reads inode, type, state and paths with spaces', () => {
  const rows = parseProcNetUnix(UNIX);
  assert.deepEqual(rows[0], { inode: 33156, type: 1, state: 1, path: '/tmp/stopd test.sock', peer: 0 });
  assert.deepEqual(rows[1], { inode: 32632, type: 1, state: 3, path: null, peer: 0 });
});

void test('parseProcNetUnix reads padded inodes and abstract names', () => {
  const rows = parseProcNetUnix(UNIX);
  assert.deepEqual(rows[2], { inode: 500, type: 2, state: 3, path: null, peer: 0 });
  assert.deepEqual(rows[3], { inode: 33155, type: 5, state: 1, path: '@stopd-abstract@@@', peer: 0 });
});

void test('parseProcNetUnix skips the fragment of a path that contains a newline', () => {
  const rows = parseProcNetUnix(UNIX);
  assert.equal(rows.length, 5);
  assert.deepEqual(rows[4], { inode: 33160, type: 1, state: 1, path: '/tmp/new', peer: 0 });
});
