import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LoopTable } from './loop-table.js';

const request = { sid: '42', requester: '192.0.2.1', connection: '198.51.100.2:968>192.0.2.1:23' };

test('LoopTable.admit refuses a repeat within the window and admits it after', () => {
  const table = new LoopTable({ windowMs: 120_000 });
  assert.equal(table.admit(request, 0), 'new');
  assert.equal(table.admit(request, 119_999), 'repeat');
  assert.equal(table.admit(request, 120_000), 'new');
});

test('LoopTable.admit tells requests apart by SID, requester and connection', () => {
  const table = new LoopTable({ windowMs: 1000 });
  assert.equal(table.admit(request, 0), 'new');
  assert.equal(table.admit({ ...request, sid: '43' }, 0), 'new');
  assert.equal(table.admit({ ...request, requester: '192.0.2.9' }, 0), 'new');
  assert.equal(table.admit({ ...request, connection: 'other' }, 0), 'new');
});

test('LoopTable bounds the work of one SID per window', () => {
  const table = new LoopTable({ windowMs: 1000, maxWorkPerSid: 3 });
  assert.equal(table.admit({ ...request, connection: 'a' }, 0), 'new');
  assert.equal(table.take('42', 5, 0), 2);
  assert.equal(table.admit({ ...request, connection: 'b' }, 0), 'budget');
  assert.equal(table.admit({ ...request, connection: 'c' }, 1000), 'new');
});

test('LoopTable stays bounded when full', () => {
  const table = new LoopTable({ windowMs: 1000, maxEntries: 2 });
  assert.equal(table.admit({ ...request, sid: '1' }, 0), 'new');
  assert.equal(table.admit({ ...request, sid: '2' }, 0), 'new');
  assert.equal(table.admit({ ...request, sid: '3' }, 0), 'full');
  assert.equal(table.size, 2);
  assert.equal(table.admit({ ...request, sid: '3' }, 1000), 'new');
});
