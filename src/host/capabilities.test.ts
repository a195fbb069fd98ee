import assert from 'node:assert/strict';
import { test } from 'node:test';
import { missingCapabilities, PROCESS_VIEW_CAPABILITIES, readEffectiveCapabilities } from './capabilities.js';

test('missingCapabilities names the capabilities a mask lacks', () => {
  assert.deepEqual(missingCapabilities(0n, PROCESS_VIEW_CAPABILITIES), ['CAP_DAC_READ_SEARCH', 'CAP_SYS_PTRACE']);
  assert.deepEqual(missingCapabilities(0x80004n, PROCESS_VIEW_CAPABILITIES), []);
  assert.deepEqual(missingCapabilities(0x4n, PROCESS_VIEW_CAPABILITIES), ['CAP_SYS_PTRACE']);
});

test('readEffectiveCapabilities reads this process mask', () => {
  const mask = readEffectiveCapabilities();
  assert.equal(typeof mask, 'bigint');
  if (process.geteuid?.() === 0) assert.deepEqual(missingCapabilities(mask ?? 0n, PROCESS_VIEW_CAPABILITIES), []);
});
