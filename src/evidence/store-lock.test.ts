import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { StoreOpenError } from '../errors.js';
import { findLockHolder, isProcessAlive, readLockOwner, releaseStoreLock, takeStoreLock } from './store-lock.js';

const root = mkdtempSync(join(tmpdir(), 'stopd-store-lock-'));
after(() => rmSync(root, { recursive: true, force: true }));
let counter = 0;

function lockPath(): string {
  counter += 1;
  return join(root, `lock-${counter}`);
}

/** The pid of a process that has exited (and been reaped), so no process has it now. */
function deadPid(): number {
  const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(child.stdout);
}

test('takeStoreLock writes our pid; the holder is found; releaseStoreLock removes only our own lock', async () => {
  const path = lockPath();
  await takeStoreLock(path, 0);
  assert.equal(readFileSync(path, 'utf8'), `${process.pid}\n`);
  assert.equal(readLockOwner(path), process.pid);
  assert.equal(findLockHolder(path), process.pid);
  releaseStoreLock(path);
  assert.equal(existsSync(path), false);
  const other = lockPath();
  writeFileSync(other, '1\n');
  releaseStoreLock(other);
  assert.equal(existsSync(other), true, "another process's lock stays");
});

test('a lock held by a live process is refused in one sentence naming it', async () => {
  const path = lockPath();
  // pid 1 always exists.
  writeFileSync(path, '1\n');
  assert.equal(findLockHolder(path), 1);
  await assert.rejects(takeStoreLock(path, 0), (error: unknown) => {
    assert.ok(error instanceof StoreOpenError);
    assert.match(error.message, /held by running process 1; stop that daemon or use another --store/);
    return true;
  });
});

test('a stale lock of a dead process has no holder and is taken over', async () => {
  const path = lockPath();
  const dead = deadPid();
  assert.equal(isProcessAlive(dead), false);
  writeFileSync(path, `${dead}\n`);
  assert.equal(readLockOwner(path), dead);
  assert.equal(findLockHolder(path), undefined);
  await takeStoreLock(path, 0);
  assert.equal(readLockOwner(path), process.pid);
  releaseStoreLock(path);
});

test('no lock file, or one without a pid, has no holder', () => {
  assert.equal(findLockHolder(join(root, 'missing')), undefined);
  const path = lockPath();
  writeFileSync(path, 'garbage');
  assert.equal(readLockOwner(path), undefined);
  assert.equal(findLockHolder(path), undefined);
});
