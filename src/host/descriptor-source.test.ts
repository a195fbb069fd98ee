import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pushTo, ScanningDescriptorSource, type Holder } from './descriptor-source.js';

/** A scanning source over a fixed list of holders, counting its scans. */
class CountingSource extends ScanningDescriptorSource {
  scans = 0;
  readonly #found: readonly (Holder & { readonly inode: number })[];
  constructor(found: readonly (Holder & { readonly inode: number })[]) {
    super();
    this.#found = found;
  }
  protected override scan(): Map<number, Holder[]> {
    this.scans += 1;
    const index = new Map<number, Holder[]>();
    for (const { inode, ...holder } of this.#found) pushTo(index, inode, holder);
    return index;
  }
}

const found = [
  { inode: 7, pid: 10, fd: 3, link: 'socket:[7]' },
  { inode: 7, pid: 11, fd: 4, link: 'socket:[7]' },
  { inode: 8, pid: 10, fd: 5, link: undefined },
];

void test('ScanningDescriptorSource scans once per snapshot and again after forget', () => {
  const source = new CountingSource(found);
  assert.equal(source.scans, 0, 'nothing is read before the first question');
  assert.deepEqual(source.holders(7).map((holder) => holder.pid), [10, 11]);
  assert.deepEqual(source.holders(8).map((holder) => holder.fd), [5]);
  assert.deepEqual(source.holders(9), []);
  assert.equal(source.scans, 1);
  source.forget();
  assert.deepEqual(source.holders(7).map((holder) => holder.pid), [10, 11]);
  assert.equal(source.scans, 2);
});

void test('ScanningDescriptorSource keeps only the holders retain calls live, until forget', () => {
  const source = new CountingSource(found);
  const [first] = source.holders(7);
  assert.ok(first);
  source.retain(7, [first]);
  assert.deepEqual(source.holders(7), [first]);
  source.retain(8, []);
  assert.deepEqual(source.holders(8), []);
  source.forget();
  assert.equal(source.holders(7).length, 2, 'a new snapshot sees every holder again');
});

void test('ScanningDescriptorSource leaves descriptors of processes to the table', () => {
  const source = new CountingSource(found);
  source.holders(7);
  assert.equal(source.fds(10), undefined);
});
