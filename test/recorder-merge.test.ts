/**
 * The reading side of the recorder's per-CPU rings (native/recorder_merge.c), driven over
 * ordinary memory by test/support/recorder-merge-driver.c, which plays the BPF program: records
 * written on several CPUs come out in the order of their numbers, a record waits while an
 * earlier number is still being written, a number that never comes is given up after three
 * reads (or at the last read, before closing), numbers wrap at 2^32, and a small read buffer
 * changes nothing. (The daemon-level
 * counterpart, with the real program: test/connection-recorder-reads.test.ts.)
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';

const ROOT = resolve(import.meta.dirname, '../..');

describe('merging the per-CPU rings', () => {
  let dir: string;
  let driver: string;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'stopd-merge-'));
    driver = join(dir, 'recorder-merge-driver');
    execFileSync('cc', ['-O2', '-Wall', '-Werror', '-std=gnu11', '-I', join(ROOT, 'native'), join(ROOT, 'native/recorder_merge.c'), join(ROOT, 'test/support/recorder-merge-driver.c'), '-o', driver]);
  });
  after(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  /** Runs the commands; returns the numbers of each read, as strings ('' for none). */
  function drive(commands: readonly string[]): string[] {
    const out = execFileSync(driver, { input: `${commands.join('\n')}\n`, encoding: 'utf8' });
    return out.split('\n').filter((line) => line.startsWith('read')).map((line) => line.slice('read'.length).trim());
  }

  test('records of two CPUs come out by number, whichever CPU is read first', () => {
    // An open written on CPU 1, its close on CPU 0 (read first): the close must not come first.
    assert.deepEqual(drive(['rings 2 64', 'write 1 0', 'write 0 1', 'write 1 2', 'write 0 3', 'read 100']), ['0 1 2 3']);
  });

  test('a record waits while an earlier number has not arrived, and comes out with it at the next read', () => {
    assert.deepEqual(drive(['rings 2 64', 'write 0 0', 'write 0 2', 'read 100', 'write 1 1', 'read 100']), ['0', '1 2']);
  });

  test('a number that never comes is given up at the third read that misses it', () => {
    assert.deepEqual(drive(['rings 2 64', 'write 0 1', 'read 10', 'read 10', 'read 10', 'write 1 2', 'read 10']), ['', '', '1', '2']);
  });

  test('the last read before closing hands out what waits for a missing number, in order', () => {
    assert.deepEqual(drive(['rings 2 64', 'write 0 0', 'write 0 3', 'write 1 2', 'read 10', 'last 10']), ['0', '2 3']);
  });

  test('numbers wrap at 2^32', () => {
    const start = 2 ** 32 - 2;
    // The first number the reader waits for is 0: give it up first, then cross the wrap.
    assert.deepEqual(drive(['rings 2 64', `write 0 ${start}`, 'read 10', 'read 10', 'read 10', `write 1 ${start + 1}`, 'write 0 0', 'write 1 1', 'read 10']), [
      '',
      '',
      String(start),
      `${start + 1} 0 1`,
    ]);
  });

  test('a buffer of one record hands out the same records in the same order', () => {
    const writes = Array.from({ length: 12 }, (_, seq) => `write ${seq % 3 === 0 ? 1 : 0} ${11 - seq}`);
    const reads = Array.from({ length: 13 }, () => 'read 1');
    assert.deepEqual(drive(['rings 2 64', ...writes, ...reads]), [...Array.from({ length: 12 }, (_, seq) => String(seq)), '']);
  });

  test('waiting records that would fill the batch are handed out in order, the missing number given up', () => {
    // Two rings of 64: 128 records (numbers 1..128) wait for number 0; 64 more overflow what
    // may wait, so all 192 come out, in order.
    const first = Array.from({ length: 128 }, (_, i) => `write ${i % 2} ${i + 1}`);
    const more = Array.from({ length: 64 }, (_, i) => `write 0 ${129 + i}`);
    const reads = drive(['rings 2 64', ...first, 'read 1000', ...more, 'read 1000']);
    assert.deepEqual(reads, ['', Array.from({ length: 192 }, (_, i) => String(i + 1)).join(' ')]);
  });
});
