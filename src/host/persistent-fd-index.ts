/**
 * The socket and pipe descriptors of every process, kept between SV requests and brought up to
 * date incrementally by the native addon: a refresh re-reads only the processes that may have
 * changed since the last one, so with a thousand idle processes it costs about a millisecond
 * instead of the tens a full `/proc/PID/fd` scan takes. Why that stays exact, and its known
 * blind spots, are described in native/FD_INDEX.md.
 */
import { errnoCode, HostLookupError } from '../errors.js';
import {
  decodeFdEntry,
  findBpfObject,
  FD_INDEX_HOLDER_WIDTH,
  FD_SCAN_ENTRY_WIDTH,
  nativeFdIndexFunctions,
  type NativeFdIndexFunctions,
  type RawFdIndex,
  type RawFdIndexOptions,
} from './native-addon.js';
import type { OpenFd } from './types.js';

/** Options of {@link createPersistentFdIndex}: the addon's (native-addon.ts), and where procfs is. */
export interface PersistentFdIndexOptions extends Omit<RawFdIndexOptions, 'runTracker'> {
  /** Where procfs is mounted; default `/proc`. */
  readonly procRoot?: string;
  /**
   * Learn which processes ran from the run tracker (native/bpf/run-tracker.bpf.o, shipped)
   * where the kernel allows BPF, instead of a schedstat file per thread: a refresh then costs
   * the same with 100 or 10 000 idle processes. Default false; {@link PersistentFdIndex.runTracker}
   * says whether it is in use and why not.
   */
  readonly runTracker?: boolean;
}

/** Whether an index learns which processes ran from the run tracker, and why not. */
export interface RunTrackerStatus {
  readonly active: boolean;
  /** Why it is not in use ("" when it is, or was not asked for). */
  readonly why: string;
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
  /** Whether it learns which processes ran from the run tracker (see {@link PersistentFdIndexOptions.runTracker}). */
  readonly runTracker: RunTrackerStatus;
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
  const { procRoot = '/proc', runTracker = false, ...raw } = options;
  const namedPipes = raw.namedPipes ?? true;
  const trackerObject = runTracker ? findBpfObject('run-tracker.bpf.o') : undefined;
  let handle: RawFdIndex;
  try {
    handle = native.fdIndexCreate(procRoot, trackerObject === undefined ? raw : { ...raw, runTracker: trackerObject });
  } catch (error) {
    throw new HostLookupError(`Cannot index the descriptors in ${procRoot}: ${describe(error)}`, { cause: error });
  }
  const status: RunTrackerStatus = !runTracker
    ? { active: false, why: '' }
    : trackerObject === undefined
      ? { active: false, why: 'the package root (and its native/bpf/run-tracker.bpf.o) cannot be found' }
      : native.fdIndexRunTracker(handle);
  return wrapIndex(native, handle, { procRoot, namedPipes, skipSelf: raw.skipSelf ?? false, runTracker: status });
}

function wrapIndex(
  native: NativeFdIndexFunctions,
  handle: RawFdIndex,
  settings: Pick<PersistentFdIndex, 'procRoot' | 'namedPipes' | 'skipSelf' | 'runTracker'>,
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
  return errnoCode(error) ?? (error instanceof Error ? error.message : String(error));
}

/** The one start-up sentence when the index was asked for the run tracker and could not use it. */
export function describeRunTrackerOff(why: string | undefined): string {
  return `Process index: the BPF run tracker is not in use (${why ?? 'no index'}); each SV refresh reads a schedstat file per thread instead, which grows with the number of processes and threads.`;
}
