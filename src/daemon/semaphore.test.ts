import assert from 'node:assert/strict';
import { test } from 'node:test';
import { OverloadError, Semaphore } from './semaphore.js';

test('Semaphore hands slots out in order and refuses waiters beyond maxWaiting', async () => {
  const semaphore = new Semaphore(1, { maxWaiting: 1 });
  const first = await semaphore.acquire();
  const order: string[] = [];
  const second = semaphore.acquire().then((release) => {
    order.push('second');
    return release;
  });
  await assert.rejects(semaphore.acquire(), OverloadError);
  first();
  const releaseSecond = await second;
  assert.deepEqual(order, ['second']);
  releaseSecond();
  const third = await semaphore.acquire();
  third();
});

test('Semaphore with no waiting room refuses at once while busy', async () => {
  const semaphore = new Semaphore(1, { maxWaiting: 0 });
  const release = await semaphore.acquire();
  await assert.rejects(semaphore.acquire(), { code: 'ERR_OVERLOADED' });
  release();
  release(); // idempotent
  (await semaphore.acquire())();
});
