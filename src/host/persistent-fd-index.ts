/**
 * The socket and pipe descriptors of every process, kept between SV requests and brought up to
 * date incrementally by the native addon: a refresh re-reads only the processes that may have
 * changed since the last one, so with a thousand idle processes it costs about a millisecond
 * instead of the tens a full `/proc/PID/fd` scan takes. Why that stays exact, and its known
 * blind spots, are described at "incremental fd index" in native/stopd_native.c.
 */
import { HostLookupError } from '../errors.js';
import {
  decodeFdEntry,
  FD_INDEX_HOLDER_WIDTH,
  FD_SCAN_ENTRY_WIDTH,
  nativeFdIndexFunctions,
  type NativeFdIndexFunctions,
  type RawFdIndex,
} from './native-addon.js';
import type { OpenFd } from './types.js';

/** Options of {@link createPersistentFdIndex}. */
export interface PersistentFdIndexOptions {
  /** Where procfs is mounted; default `/proc`. */
  readonly procRoot?: string;
  /** Resolve path descriptors to find named pipes (see LinuxProcessTableOptions.namedPipes); default true. */
  readonly namedPipes?: boolean;
  /**
   * schedstat files kept open between refreshes at most, one per thread of a multi-threaded
   * process; default 4096 (and never more than half the descriptor limit). Each pins a page of
   * kernel memory; processes beyond the cap, and multi-threaded ones whose threads do not all
   * fit, are read again at every refresh.
   */
  readonly maxKeptFiles?: number;
  /** List the whole proc root at least this often, whatever else says nothing is new; default 10 000 ms. */
  readonly listIntervalMs?: number;
  /**
   * Read every process again at least this often, even when nothing says it changed: bounds
   * how long the index's known blind spots can last; 0 never; default 60 000 ms. Spread over
   * the second half of the interval, so this costs a few processes per refresh, not a spike.
   */
  readonly rescanIntervalMs?: number;
  /**
   * Keep the schedstat files in a thread of the addon's with a descriptor table of its own
   * (default true), so that they neither appear in this process's `/proc/PID/fd` nor make every
   * refresh read them there. When the kernel refuses that thread its table (unshare), or with
   * false, they stay in this process's table and are skipped by number when it is read.
   * The price is a hand-over to that thread and back at every refresh: on a busy virtual
   * machine, where waking a thread on another CPU is slow, 100 to 170 us. With `skipSelf` this
   * process's table is not read anyway, so the daemon turns it off.
   */
  readonly separateTable?: boolean;
  /**
   * Leave out this process (as the proc root's `self` names it); default false. Its own
   * table, busy with every request it serves, would otherwise be read at every refresh. A
   * process table over such an index must hide this process too (LinuxProcessTableOptions.hideSelf).
   */
  readonly skipSelf?: boolean;
}

/** One descriptor holding an inode. */
export interface FdHolder {
  readonly pid: number;
  readonly fd: number;
  readonly kind: 'socket' | 'pipe';
}

/** What one {@link PersistentFdIndex.refresh} did. */
export interface FdIndexRefresh {
  /** Whether it listed the whole proc root. */
  readonly full: boolean;
  /** Processes known after it. */
  readonly tracked: number;
  /** schedstat files kept open. */
  readonly kept: number;
  /** Pids whose descriptors it read (new, volatile, changed, beyond the cap, or unreadable). */
  readonly rescanned: readonly number[];
}

/**
 * A descriptor index that lives as long as the daemon. It answers from its last
 * {@link refresh}: callers refresh it at the start of each request and re-check what it
 * returns (a readlink per holder) at query time. Not safe for interleaved use by two requests;
 * the daemon runs one analysis at a time.
 */
export interface PersistentFdIndex {
  readonly procRoot: string;
  readonly namedPipes: boolean;
  /** Whether it leaves this process out. */
  readonly skipSelf: boolean;
  /** Brings the index up to date. Throws HostLookupError when the proc root cannot be read. */
  refresh(): FdIndexRefresh;
  /** The descriptors holding `inode` at the last refresh, by pid then fd. */
  holders(inode: number): FdHolder[];
  /**
   * The socket and pipe descriptors of `pid` at the last refresh, by fd; undefined when the
   * index has none for it (not a process then, or its descriptors were refused or failed).
   */
  fds(pid: number): OpenFd[] | undefined;
  /** Processes whose descriptors were refused (EACCES/EPERM) or failed otherwise at the last refresh, ascending. */
  unreadable(): { denied: number[]; failed: number[] };
  /** Closes the kept files; the index cannot be used afterwards. Idempotent. */
  close(): void;
}

/**
 * Opens a persistent index, or returns undefined when the native addon is missing or older
 * than the index (callers then scan per request as before). Throws HostLookupError when the
 * proc root cannot be opened.
 */
export function createPersistentFdIndex(options: PersistentFdIndexOptions = {}): PersistentFdIndex | undefined {
  const native = nativeFdIndexFunctions();
  if (native === undefined) return undefined;
  const procRoot = options.procRoot ?? '/proc';
  const namedPipes = options.namedPipes ?? true;
  let handle: RawFdIndex;
  try {
    handle = native.fdIndexCreate(procRoot, {
      namedPipes,
      ...(options.maxKeptFiles === undefined ? {} : { maxKeptFiles: options.maxKeptFiles }),
      ...(options.listIntervalMs === undefined ? {} : { listIntervalMs: options.listIntervalMs }),
      ...(options.rescanIntervalMs === undefined ? {} : { rescanIntervalMs: options.rescanIntervalMs }),
      ...(options.separateTable === undefined ? {} : { separateTable: options.separateTable }),
      skipSelf: options.skipSelf ?? false,
    });
  } catch (error) {
    throw new HostLookupError(`Cannot index the descriptors in ${procRoot}: ${describe(error)}`, { cause: error });
  }
  return wrapIndex(native, handle, { procRoot, namedPipes, skipSelf: options.skipSelf ?? false });
}

function wrapIndex(
  native: NativeFdIndexFunctions,
  handle: RawFdIndex,
  settings: Pick<PersistentFdIndex, 'procRoot' | 'namedPipes' | 'skipSelf'>,
): PersistentFdIndex {
  const { procRoot } = settings;
  let closed = false;
  const use = (): RawFdIndex => {
    if (closed) throw new HostLookupError(`Cannot use the descriptor index of ${procRoot}: it is closed`);
    return handle;
  };
  return {
    ...settings,
    refresh() {
      let raw;
      try {
        raw = native.fdIndexRefresh(use());
      } catch (error) {
        if (error instanceof HostLookupError) throw error;
        throw new HostLookupError(`Cannot refresh the descriptor index of ${procRoot}: ${describe(error)}`, { cause: error });
      }
      return { full: raw.full, tracked: raw.tracked, kept: raw.kept, rescanned: [...raw.rescanned] };
    },
    holders(inode) {
      if (!Number.isSafeInteger(inode) || inode <= 0) return [];
      const raw = native.fdIndexHolders(use(), inode);
      const out: FdHolder[] = [];
      for (let i = 0; i + FD_INDEX_HOLDER_WIDTH <= raw.length; i += FD_INDEX_HOLDER_WIDTH) {
        out.push({ pid: raw[i] ?? 0, fd: raw[i + 1] ?? 0, kind: raw[i + 2] === 0 ? 'socket' : 'pipe' });
      }
      return out;
    },
    fds(pid) {
      if (!Number.isSafeInteger(pid) || pid <= 0 || pid > 0x7fffffff) return undefined;
      const raw = native.fdIndexFds(use(), pid);
      if (raw === null) return undefined;
      const out: OpenFd[] = [];
      for (let i = 0; i < raw.length / FD_SCAN_ENTRY_WIDTH; i++) out.push(decodeFdEntry(raw, i).fd);
      return out;
    },
    unreadable() {
      const raw = native.fdIndexDenied(use());
      return { denied: [...raw.denied], failed: [...raw.failed] };
    },
    close() {
      if (closed) return;
      closed = true;
      native.fdIndexClose(handle);
    },
  };
}

function describe(error: unknown): string {
  if (typeof error === 'object' && error !== null && 'code' in error && typeof error.code === 'string') return error.code;
  return error instanceof Error ? error.message : String(error);
}
