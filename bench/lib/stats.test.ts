import assert from 'node:assert/strict';
import { test } from 'node:test';
import { quantile, repeated, round, summarize } from './stats.js';

test('quantile takes the nearest rank', () => {
  const sorted = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
  assert.equal(quantile(sorted, 0.5), 5);
  assert.equal(quantile(sorted, 0.9), 9);
  assert.equal(quantile(sorted, 0.99), 10);
  assert.equal(quantile(sorted, 0), 1);
  assert.ok(Number.isNaN(quantile([], 0.5)));
});

test('summarize sorts a copy and reports order statistics', () => {
  const values = [5, 1, 4, 2, 3];
  const summary = summarize(values);
  assert.deepEqual(values, [5, 1, 4, 2, 3]);
  assert.deepEqual({ n: summary.n, min: summary.min, p50: summary.p50, max: summary.max, mean: summary.mean }, { n: 5, min: 1, p50: 3, max: 5, mean: 3 });
});

test('repeated gives the median of an even count as the mean of the middle two', () => {
  assert.deepEqual(repeated([4, 1, 3, 2]), { median: 2.5, min: 1, max: 4, runs: [4, 1, 3, 2] });
  assert.equal(repeated([7]).median, 7);
});

test('round keeps significant digits', () => {
  assert.equal(round(123.456), 123);
  assert.equal(round(0.0012345, 2), 0.0012);
  assert.equal(round(0), 0);
});
