import assert from 'node:assert/strict';
import { test } from 'node:test';
import { OverloadError } from '../errors.js';
import { Semaphore } from './semaphore.js';

test('Semaphore hands slots out in order and refuses waiters beyond maxWaiting', async () => {
  const semaphore = new Semaphore(1, { maxWaiting: 3 });
  const first = await semaphore.acquire();
  // Three waiters queue behind the one slot; each, once it holds the slot, notes its name and
  // passes the slot on. FIFO means they run in the order they asked.
  const order: string[] = [];
  const waiters = ['second', 'third', 'fourth'].map((name) =>
    semaphore.acquire().then((release) => {
      order.push(name);
      release();
    }),
  );
  await assert.rejects(semaphore.acquire(), OverloadError);
  assert.deepEqual(order, [], 'no waiter may run while the slot is held');
  first();
  await Promise.all(waiters);
  assert.deepEqual(order, ['second', 'third', 'fourth']);
});

test('Semaphore with no waiting room refuses at once while busy', async () => {
  const semaphore = new Semaphore(1, { maxWaiting: 0 });
  const release = await semaphore.acquire();
  await assert.rejects(semaphore.acquire(), { code: 'ERR_OVERLOADED' });
  release();
  release(); // idempotent
  (await semaphore.acquire())();
});
