import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { INITIAL_PID_NAMESPACE_INODE, readPidNamespaceView } from './pid-namespace.js';

const dir = mkdtempSync(join(tmpdir(), 'stopd-pidns-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** A fake proc root whose `<pid>/ns/pid` links read `targets[pid]`. */
function procRoot(name: string, targets: Record<string, string>): string {
  const root = join(dir, name);
  for (const [pid, target] of Object.entries(targets)) {
    mkdirSync(join(root, pid, 'ns'), { recursive: true });
    symlinkSync(target, join(root, pid, 'ns', 'pid'));
  }
  mkdirSync(root, { recursive: true });
  return root;
}

test('readPidNamespaceView reads initial when pid 1 is in the initial PID namespace', () => {
  assert.equal(readPidNamespaceView(procRoot('initial', { '1': `pid:[${INITIAL_PID_NAMESPACE_INODE}]`, self: 'pid:[4026532999]' })), 'initial');
});

test('readPidNamespaceView reads nested when the proc mount shows another namespace', () => {
  assert.equal(readPidNamespaceView(procRoot('nested', { '1': 'pid:[4026532999]' })), 'nested');
});

test('readPidNamespaceView falls back to self when pid 1 cannot be read, and to unknown', () => {
  assert.equal(readPidNamespaceView(procRoot('self-only', { self: 'pid:[4026532999]' })), 'nested');
  assert.equal(readPidNamespaceView(procRoot('garbled', { '1': 'mnt:[1]' })), 'unknown');
  assert.equal(readPidNamespaceView(join(dir, 'missing')), 'unknown');
});
