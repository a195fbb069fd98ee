/**
 * The store's lock (`<store>/lock`, DESIGN "Evidence"): the file holds the pid of the one
 * process that may write the ledger. The daemon takes it for its lifetime, `stopctl prune`
 * for its run; `stopctl verify` only asks whether someone holds it (a daemon may be writing
 * while it reads). This module is the one place that answers "who holds the store?".
 */
import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { StoreOpenError } from '../errors.js';

/** The pid in a lock file; undefined when there is none, or while it is being written. */
export function readLockOwner(lockPath: string): number | undefined {
  try {
    const owner = Number.parseInt(readFileSync(lockPath, 'utf8'), 10);
    return Number.isInteger(owner) && owner > 0 ? owner : undefined;
  } catch {
    return undefined;
  }
}

/** Whether a process with this pid exists (EPERM: it exists, under another user). */
export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The pid of the live process holding the store's lock; undefined when none does (no lock, or a stale one). */
export function findLockHolder(lockPath: string): number | undefined {
  const owner = readLockOwner(lockPath);
  return owner !== undefined && isProcessAlive(owner) ? owner : undefined;
}

/**
 * Takes the lock, waiting up to `waitMs` for a live holder to let go. A lock left by a process
 * that no longer exists is taken over. Fails with a {@link StoreOpenError} naming the holder.
 */
export async function takeStoreLock(lockPath: string, waitMs: number): Promise<void> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    try {
      const fd = openSync(lockPath, 'wx', 0o600);
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new StoreOpenError(`Cannot lock the store: ${(error as Error).message}`, { cause: error });
      }
    }
    const owner = readLockOwner(lockPath);
    if (owner !== undefined && !isProcessAlive(owner) && readLockOwner(lockPath) === owner) {
      // A stale lock of a dead process (read twice, so a lock being replaced is left alone).
      try {
        unlinkSync(lockPath);
      } catch {
        // Someone else removed it first: try again.
      }
      continue;
    }
    if (Date.now() >= deadline) {
      const who = owner === undefined ? 'another process' : `running process ${owner}`;
      throw new StoreOpenError(`Cannot lock the store: ${lockPath} is held by ${who}; stop that daemon or use another --store`);
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Removes the lock if this process holds it. */
export function releaseStoreLock(lockPath: string): void {
  try {
    if (readLockOwner(lockPath) === process.pid) unlinkSync(lockPath);
  } catch {
    // Already gone: nothing to release.
  }
}
