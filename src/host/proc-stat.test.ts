import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HostLookupError } from '../errors.js';
import {
  decodeTtyNr,
  encodeTtyNr,
  parseAuxvClockTicks,
  parseBootTime,
  parseProcStat,
  parseStatusUids,
} from './proc-stat.js';

const SLEEP_STAT =
  '3610 (sleep) S 3609 3605 2000 34816 -1 4194304 117 0 0 0 0 0 0 0 20 0 1 0 26873 2990080 410 ' +
  '18446744073709551615 94299565993984 94299566011913 140736182225888 0 0 0 0 0 0 1 0 0 17 0 0 0 0 0 0\n';

void test('parseProcStat reads pid, comm, ids, tty, priority, nice and start ticks', () => {
  assert.deepEqual(parseProcStat(SLEEP_STAT), {
    pid: 3610,
    name: 'sleep',
    state: 'S',
    ppid: 3609,
    pgrp: 3605,
    session: 2000,
    ttyNr: 34816,
    priority: 20,
    nice: 0,
    startTicks: 26873,
  });
});

void test('parseProcStat splits at the last parenthesis when comm holds spaces and parentheses', () => {
  const stat = parseProcStat(SLEEP_STAT.replace('(sleep)', '(a) b (c) 9 9)'));
  assert.equal(stat.name, 'a) b (c) 9 9');
  assert.equal(stat.ppid, 3609);
  assert.equal(stat.startTicks, 26873);
});

void test('parseProcStat reads negative nice and real-time priority', () => {
  const stat = parseProcStat(SLEEP_STAT.replace(' 20 0 1 0 26873', ' -51 -5 1 0 26873'));
  assert.equal(stat.priority, -51);
  assert.equal(stat.nice, -5);
});

void test('parseProcStat rejects a line without comm or with missing fields', () => {
  assert.throws(() => parseProcStat('3610 sleep S 1'), HostLookupError);
  assert.throws(() => parseProcStat('3610 (sleep) S 1 2 3'), /field 7 is missing/);
  assert.throws(() => parseProcStat(''), HostLookupError);
});

void test('parseStatusUids reads real and effective uid from the Uid line', () => {
  const status = 'Name:\tsu\nUmask:\t0022\nState:\tS (sleeping)\nUid:\t1000\t0\t0\t0\nGid:\t100\t100\t100\t100\n';
  assert.deepEqual(parseStatusUids(status), { real: 1000, effective: 0 });
  assert.throws(() => parseStatusUids('Name:\tx\n'), HostLookupError);
});

void test('parseBootTime reads the btime line of /proc/stat', () => {
  const text = 'cpu  1 2 3 4\nintr 5\nctxt 6\nbtime 1700000000\nprocesses 7\n';
  assert.equal(parseBootTime(text), 1_700_000_000);
  assert.throws(() => parseBootTime('cpu 1 2 3\n'), /no btime line/);
});

void test('decodeTtyNr returns null for no terminal and names pts, virtual consoles and serial ports', () => {
  assert.equal(decodeTtyNr(0), null);
  assert.equal(decodeTtyNr(34816), '/dev/pts/0');
  assert.equal(decodeTtyNr(encodeTtyNr(136, 3)), '/dev/pts/3');
  assert.equal(decodeTtyNr(encodeTtyNr(136, 300)), '/dev/pts/300');
  assert.equal(decodeTtyNr(encodeTtyNr(137, 2)), '/dev/pts/258');
  assert.equal(decodeTtyNr(encodeTtyNr(4, 1)), '/dev/tty1');
  assert.equal(decodeTtyNr(encodeTtyNr(4, 64)), '/dev/ttyS0');
  assert.equal(decodeTtyNr(encodeTtyNr(5, 1)), '/dev/console');
  assert.equal(decodeTtyNr(encodeTtyNr(188, 2)), '/dev/ttyUSB2');
  assert.equal(decodeTtyNr(encodeTtyNr(229, 0)), '/dev/hvc0');
});

void test('decodeTtyNr names an unknown device by its /dev/char major:minor link', () => {
  assert.equal(decodeTtyNr(encodeTtyNr(250, 7)), '/dev/char/250:7');
});

function auxv(pairs: [number, number][], wordSize: 4 | 8): Buffer {
  const buf = Buffer.alloc(pairs.length * 2 * wordSize);
  pairs.forEach(([type, value], i) => {
    const offset = i * 2 * wordSize;
    if (wordSize === 8) {
      buf.writeBigUInt64LE(BigInt(type), offset);
      buf.writeBigUInt64LE(BigInt(value), offset + 8);
    } else {
      buf.writeUInt32LE(type, offset);
      buf.writeUInt32LE(value, offset + 4);
    }
  });
  return buf;
}

void test('parseAuxvClockTicks finds AT_CLKTCK in 64- and 32-bit vectors', () => {
  assert.equal(parseAuxvClockTicks(auxv([[33, 1], [16, 2], [6, 4096], [17, 250], [0, 0]], 8)), 250);
  assert.equal(parseAuxvClockTicks(auxv([[6, 4096], [17, 100], [0, 0]], 4), { wordSize: 4 }), 100);
});

void test('parseAuxvClockTicks returns undefined without AT_CLKTCK or after AT_NULL', () => {
  assert.equal(parseAuxvClockTicks(auxv([[6, 4096], [0, 0], [17, 100]], 8)), undefined);
  assert.equal(parseAuxvClockTicks(Buffer.alloc(0)), undefined);
  assert.equal(parseAuxvClockTicks(auxv([[17, 0], [0, 0]], 8)), undefined);
});
