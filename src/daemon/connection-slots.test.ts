import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConnectionSlots } from './connection-slots.js';

/** A stand-in connection: a name and whether a request waits for its reply. */
interface Item {
  readonly name: string;
  busy: boolean;
}

function fill(slots: ConnectionSlots<Item>, group: string, count: number, busy = false): Item[] {
  const items: Item[] = [];
  for (let i = 0; i < count; i++) {
    const item = { name: `${group}#${i}`, busy };
    assert.notEqual(slots.decide(group).kind, 'refuse', `room for ${item.name}`);
    slots.add(group, item);
    items.push(item);
  }
  return items;
}

const newSlots = (maxConnections: number, maxPerRequester: number): ConnectionSlots<Item> =>
  new ConnectionSlots<Item>({ maxConnections, maxPerRequester }, (item) => !item.busy);

test('ConnectionSlots.decide refuses a requester at its own limit while the table has room', () => {
  const slots = newSlots(100, 3);
  fill(slots, '192.0.2.1', 3);
  assert.deepEqual(slots.decide('192.0.2.1'), { kind: 'refuse', reason: 'requester-limit' });
  assert.deepEqual(slots.decide('192.0.2.2'), { kind: 'admit' });
});

test('ConnectionSlots.decide evicts the oldest idle connection of the heaviest requester when full', () => {
  const slots = newSlots(10, 10);
  const light = fill(slots, '192.0.2.1', 3);
  const heavy = fill(slots, '192.0.2.2', 7);
  (heavy[0] as Item).busy = true; // sent a request, waits for its reply
  const decision = slots.decide('192.0.2.3');
  assert.deepEqual(decision, { kind: 'evict', victim: heavy[1], victimGroup: '192.0.2.2' }, 'the oldest idle one, not the busy older one');
  assert.ok(light.every((item) => decision.kind === 'evict' && decision.victim !== item));
});

test('ConnectionSlots.decide never evicts a connection that waits for its reply', () => {
  const slots = newSlots(6, 10);
  fill(slots, '192.0.2.1', 6, true);
  assert.deepEqual(slots.decide('192.0.2.2'), { kind: 'refuse', reason: 'table-full' });
});

test('ConnectionSlots.decide passes over a heaviest requester with nothing idle to the next', () => {
  const slots = newSlots(9, 10);
  fill(slots, '192.0.2.1', 5, true);
  const next = fill(slots, '192.0.2.2', 4);
  assert.deepEqual(slots.decide('192.0.2.3'), { kind: 'evict', victim: next[0], victimGroup: '192.0.2.2' });
});

test('ConnectionSlots.decide does not let requesters evict each other back and forth', () => {
  const slots = newSlots(4, 10);
  fill(slots, '192.0.2.1', 2);
  fill(slots, '192.0.2.2', 2);
  assert.deepEqual(slots.decide('192.0.2.1'), { kind: 'refuse', reason: 'table-full' }, 'not from the one it would then equal');
  assert.deepEqual(slots.decide('192.0.2.3'), { kind: 'evict', victim: { name: '192.0.2.1#0', busy: false }, victimGroup: '192.0.2.1' });
  assert.deepEqual(slots.decide('192.0.2.2'), { kind: 'refuse', reason: 'table-full' }, 'a requester never evicts itself');
});

test('ConnectionSlots keeps counts through add and remove, and remove is idempotent', () => {
  const slots = newSlots(10, 10);
  const [first] = fill(slots, '192.0.2.1', 2);
  slots.remove('192.0.2.1', first as Item);
  slots.remove('192.0.2.1', first as Item);
  assert.equal(slots.size, 1);
  assert.equal(slots.countOf('192.0.2.1'), 1);
  slots.add('192.0.2.1', first as Item);
  slots.add('192.0.2.1', first as Item);
  assert.equal(slots.size, 2);
});

test('ConnectionSlots.configure applies new limits to the next decision', () => {
  const slots = newSlots(10, 2);
  fill(slots, '192.0.2.1', 2);
  assert.equal(slots.decide('192.0.2.1').kind, 'refuse');
  slots.configure({ maxConnections: 10, maxPerRequester: 3 });
  assert.equal(slots.decide('192.0.2.1').kind, 'admit');
});
