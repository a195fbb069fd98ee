/**
 * The crowd helper (test/support/crowd.ts) itself: `kill()` must end the holder and every
 * child. It once signalled a process group that did not exist (the holder was not its group's
 * leader), so crowds lived until the test process exited, slowing the tests after them, and a
 * bench whose listener still held the crowd's connection never exited.
 */
import assert from 'node:assert/strict';
import { createServer, type Socket } from 'node:net';
import { test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { startCrowd } from './support/crowd.js';
import { isAlive as running } from './support/testnet.js';

test('kill() ends the holder and every child, and so closes the connection they held', async (t) => {
  const accepted: Socket[] = [];
  const server = createServer((socket) => {
    socket.on('error', () => undefined);
    accepted.push(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.2', resolve));
  t.after(() => server.close());
  const address = server.address();
  assert.ok(typeof address === 'object' && address !== null);
  const crowd = await startCrowd({ mode: 'pipe', count: 3, connectTo: { host: '127.0.0.2', port: address.port } });
  t.after(() => crowd.kill());
  const pids = [crowd.pid, ...crowd.children];
  assert.equal(pids.length, 4);
  assert.deepEqual(pids.filter(running), pids, 'the crowd runs before kill()');
  while (accepted.length === 0) await delay(10);
  const closed = new Promise<void>((resolve) => accepted[0]?.once('close', () => resolve()));

  crowd.kill();
  const deadline = Date.now() + 5000;
  while (pids.some(running) && Date.now() < deadline) await delay(20);
  assert.deepEqual(pids.filter(running), [], 'no process of the crowd runs after kill()');
  await closed;
});
