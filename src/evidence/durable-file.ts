/**
 * The one way evidence files are replaced crash-safely (DESIGN "Evidence"): write a temporary
 * file in the same directory, flush it, rename it over the target, and (by default) flush the
 * directory so the rename itself survives a crash. A reader sees the old file or the new one,
 * never a mix. Used for records, gzipped records, the forwarding state and the ledger key
 * state; the differences between them are the options below, each chosen by its caller.
 *
 * The local system calls run synchronously: each takes microseconds, less than a round trip
 * through libuv's thread pool. Only the flushes to disk (fsync) are waited for.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, fchmodSync, fdatasync, fdatasyncSync, fsync, fsyncSync, futimesSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { promisify } from 'node:util';

const fsyncAsync = promisify(fsync);
const fdatasyncAsync = promisify(fdatasync);

/** Options of {@link writeFileDurably} and {@link writeFileDurablySync}. */
export interface DurableWriteOptions {
  /**
   * The temporary file (default `<path>.tmp-<random>`, created exclusively). A caller whose
   * crash leftovers are cleaned by name (records: `.<token>.tmp-<random>`) picks its own.
   */
  readonly temporaryPath?: string;
  /**
   * Overwrite a temporary file left by an earlier crash instead of refusing it (default
   * false). For a fixed temporary name with a single writer (the key state's `<path>.tmp`).
   */
  readonly overwriteTemporary?: boolean;
  /** The file's mode, set exactly (the umask cannot narrow it); default 0600: evidence is for root only. */
  readonly mode?: number;
  /**
   * `data` (fdatasync: the bytes and the size, enough for a new file) or `full` (fsync, every
   * inode field); default `full`.
   */
  readonly flush?: 'data' | 'full';
  /**
   * Flush the directory after the rename (default true). False where losing the rename in a
   * crash is harmless and a flush per write would cost: the key state (restart evolves an
   * older key forward), the forwarding state (an older seq means sending again), or a caller
   * that flushes the directory once for a batch (prune).
   */
  readonly syncDirectory?: boolean;
  /** Access and modification times to give the file (prune keeps a record's age). */
  readonly times?: { readonly atime: Date; readonly mtime: Date };
}

/**
 * Replaces `path` with `data` crash-safely (see the module comment). On any failure the
 * temporary file is removed and the error thrown; `path` is then unchanged.
 */
export async function writeFileDurably(path: string, data: string | Uint8Array, options: DurableWriteOptions = {}): Promise<void> {
  const temporary = createTemporary(path, data, options);
  try {
    await (options.flush === 'data' ? fdatasyncAsync(temporary.fd) : fsyncAsync(temporary.fd));
  } catch (error) {
    temporary.abandon();
    throw error;
  }
  temporary.commit();
  if (options.syncDirectory !== false) await directorySync(dirname(path));
}

/** {@link writeFileDurably} for the few writes that must finish before anything else runs (a ledger's open). */
export function writeFileDurablySync(path: string, data: string | Uint8Array, options: DurableWriteOptions = {}): void {
  const temporary = createTemporary(path, data, options);
  try {
    if (options.flush === 'data') fdatasyncSync(temporary.fd);
    else fsyncSync(temporary.fd);
  } catch (error) {
    temporary.abandon();
    throw error;
  }
  temporary.commit();
  if (options.syncDirectory !== false) syncDirectorySync(dirname(path));
}

/** A written, not yet flushed temporary file. */
interface Temporary {
  readonly fd: number;
  /** Closes it, sets its times and renames it over the target; removes it on failure. */
  commit(): void;
  /** Closes and removes it. */
  abandon(): void;
}

function createTemporary(path: string, data: string | Uint8Array, options: DurableWriteOptions): Temporary {
  const temporaryPath = options.temporaryPath ?? `${path}.tmp-${randomBytes(6).toString('hex')}`;
  const mode = options.mode ?? 0o600;
  const fd = openSync(temporaryPath, options.overwriteTemporary === true ? 'w' : 'wx', mode);
  let open = true;
  const abandon = (): void => {
    if (open) closeQuietly(fd);
    open = false;
    try {
      unlinkSync(temporaryPath);
    } catch {
      // Gone already, or the directory is failing too: the original error is the one to report.
    }
  };
  try {
    // The umask may have narrowed the mode further (or a reused temporary had another).
    fchmodSync(fd, mode);
    writeAllSync(fd, typeof data === 'string' ? Buffer.from(data, 'utf8') : data);
    if (options.times !== undefined) futimesSync(fd, options.times.atime, options.times.mtime);
  } catch (error) {
    abandon();
    throw error;
  }
  return {
    fd,
    abandon,
    commit() {
      try {
        open = false;
        closeSync(fd);
        renameSync(temporaryPath, path);
      } catch (error) {
        abandon();
        throw error;
      }
    },
  };
}

/**
 * Writes all of `bytes` at the file position of `fd`: a short write (a nearly full disk) is
 * continued, never ignored; a write that accepts nothing throws.
 */
export function writeAllSync(fd: number, bytes: Uint8Array): void {
  let offset = 0;
  while (offset < bytes.length) {
    const written = writeSync(fd, bytes, offset, bytes.length - offset);
    if (written <= 0) throw new Error('the file system accepted no bytes');
    offset += written;
  }
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // Already failing: the original error is the one to report.
  }
}

/** fsyncs a directory, so that a rename, a new file or an unlink in it survives a crash. */
export async function syncDirectory(dir: string): Promise<void> {
  const fd = openSync(dir, 'r');
  try {
    await fsyncAsync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * {@link syncDirectory} without waiting for the thread pool. With `bestEffort`, a failure is
 * ignored: on a file system without directory fsync the rename is still atomic, only its
 * survival of a crash is less certain.
 */
export function syncDirectorySync(dir: string, options: { readonly bestEffort?: boolean } = {}): void {
  try {
    const fd = openSync(dir, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch (error) {
    if (options.bestEffort !== true) throw error;
  }
}

/** The directory flush each directory has in flight, and the one queued behind it. */
const directoryFlushes = new Map<string, { running: Promise<void>; queued: Promise<void> | undefined }>();

/**
 * Group commit of directory flushes: resolves once an fsync of `dir` that STARTED after this
 * call has completed, so every rename made before the call is durable. Concurrent callers
 * share flushes: while one runs, all later callers wait for the single next one, so a burst
 * of records costs two directory fsyncs, not one each.
 */
export function directorySync(dir: string): Promise<void> {
  const current = directoryFlushes.get(dir);
  if (current === undefined) {
    const running = syncDirectory(dir).finally(() => {
      const state = directoryFlushes.get(dir);
      if (state?.queued === undefined) directoryFlushes.delete(dir);
    });
    directoryFlushes.set(dir, { running, queued: undefined });
    return running;
  }
  current.queued ??= current.running
    .catch(() => undefined)
    .then(() => {
      directoryFlushes.delete(dir);
      return directorySync(dir);
    });
  return current.queued;
}
