import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { OpenFd } from './types.js';

/**
 * One TCP socket as the kernel reports it (inet_diag_msg), before any normalisation. The
 * procfs fallback (proc-net.ts) produces the same shape, so one conversion serves both.
 */
export interface RawTcpEntry {
  /** Family of the socket itself: a dual-stack IPv6 socket reports 6 even for IPv4 peers (v4-mapped addresses). */
  readonly family: 4 | 6;
  /** Kernel TCP state number (include/net/tcp_states.h: 1 ESTABLISHED .. 12 NEW_SYN_RECV). */
  readonly state: number;
  readonly uid: number;
  /** 0 for TIME_WAIT and request sockets, which have no file. */
  readonly inode: number;
  /** 4 or 16 bytes, network order. */
  readonly localAddr: Buffer;
  readonly localPort: number;
  readonly remoteAddr: Buffer;
  readonly remotePort: number;
}

/** One UNIX socket as unix_diag (or /proc/net/unix) reports it. */
export interface RawUnixEntry {
  readonly inode: number;
  /** SOCK_STREAM 1, SOCK_DGRAM 2, SOCK_SEQPACKET 5. */
  readonly type: number;
  /** Kernel TCP-style state number (10 LISTEN, 1 ESTABLISHED, 7 CLOSE). */
  readonly state: number;
  /** Bound name; in abstract names (leading NUL) every NUL is printed as `@`, as in /proc/net/unix; null when unbound. */
  readonly path: string | null;
  /** Peer inode, 0 when unconnected or unknown. */
  readonly peer: number;
}

/**
 * What one socket descriptor of a process is, as `socketOf` reads it from the socket itself:
 * a TCP socket with the fields of {@link RawTcpEntry} (for listeners, closed sockets and
 * SYN_SENT ones the remote end is all zero, port 0: the kernel names no peer before the
 * handshake completes), a UNIX socket, or another kind (UDP, netlink, raw, ...).
 */
export type RawFdSocket =
  | ({ readonly domain: 'tcp' } & RawTcpEntry)
  | { readonly domain: 'unix'; readonly inode: number }
  | { readonly domain: 'other'; readonly inode: number };

/**
 * Every socket and pipe descriptor under a proc root, from one native pass (`scanFds`).
 * Typed arrays rather than objects: one scan on a busy host is tens of thousands of
 * descriptors, and one object per descriptor would cost more than the system calls.
 */
export interface RawFdScan {
  /** Processes scanned completely (each may hold no socket or pipe), in directory order. */
  readonly pids: Int32Array;
  /**
   * {@link FD_SCAN_ENTRY_WIDTH} numbers per descriptor: pid, fd, kind (0 socket, 1 pipe),
   * inode, end (0 read, 1 write, 2 both; 0 for sockets). Float64 because a FIFO's inode
   * number can exceed 2^32 (exact up to 2^53).
   */
  readonly entries: Float64Array;
  /** Processes whose descriptors the kernel refused (EACCES/EPERM); none of their entries is listed. */
  readonly denied: Int32Array;
  /** Processes that failed with any other error (not vanishing); none of their entries is listed. */
  readonly failed: Int32Array;
}

/** Numbers per descriptor in {@link RawFdScan.entries}. */
export const FD_SCAN_ENTRY_WIDTH = 5;

/** Numbers per holder in what `fdIndexHolders` returns: pid, fd, kind (0 socket, 1 pipe). */
export const FD_INDEX_HOLDER_WIDTH = 3;

/** An incremental descriptor index living in the addon (an opaque handle). */
export type RawFdIndex = { readonly __brand: 'RawFdIndex' };

/** What one `fdIndexRefresh` did. */
export interface RawFdIndexRefresh {
  /** Whether it listed the whole proc root (the first refresh, the safety interval, a big pid jump). */
  readonly full: boolean;
  /** Processes the index knows after the refresh. */
  readonly tracked: number;
  /** schedstat files it keeps open (at most `maxKeptFiles`). */
  readonly kept: number;
  /** Processes whose descriptors it read again: new, volatile, changed, beyond the cap, or unreadable. */
  readonly rescanned: Int32Array;
}

/** Options of `fdIndexCreate` (and of createPersistentFdIndex, which adds `procRoot`). */
export interface RawFdIndexOptions {
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
   * process table over such an index must hide this process too (LinuxProcessTableOptions.hideSelf),
   * which is also what leaves it out with a build older than the option (that ignores it).
   */
  readonly skipSelf?: boolean;
  /**
   * The run tracker's BPF object (native/bpf/run-tracker.bpf.o): where it loads, the index
   * learns which processes ran from the kernel instead of keeping a schedstat file per thread,
   * so that a refresh costs the same with 100 or 10 000 idle processes (native/FD_INDEX.md,
   * "With the run tracker"). Where it does not load, the index keeps its schedstat files;
   * `fdIndexRunTracker` says why.
   */
  readonly runTracker?: string;
}

/** One descriptor in the `entries` layout shared by `scanFds` and `fdIndexFds`. */
export interface RawFdEntry {
  readonly pid: number;
  readonly fd: OpenFd;
}

/** Decodes entry `i` (counted in entries, not numbers) of a `scanFds`/`fdIndexFds` array. */
export function decodeFdEntry(entries: Float64Array, i: number): RawFdEntry {
  const at = i * FD_SCAN_ENTRY_WIDTH;
  const pid = entries[at] ?? 0;
  const fd = entries[at + 1] ?? 0;
  const inode = entries[at + 3] ?? 0;
  if (entries[at + 2] === 0) return { pid, fd: { fd, kind: 'socket', inode } };
  const endCode = entries[at + 4];
  return { pid, fd: { fd, kind: 'pipe', inode, end: endCode === 2 ? 'both' : endCode === 1 ? 'write' : 'read' } };
}

/**
 * The functions of the native addon (`native/addon.c` lists its parts). All are synchronous (a sock_diag round trip is
 * microseconds) and throw an Error whose `code` is the errno name (`EPERM`, ...) on failure.
 */
export interface NativeAddon {
  /**
   * Exact SOCK_DIAG_BY_FAMILY lookup of one TCP socket by its 4-tuple (no dump). With remote
   * `0.0.0.0:0` / `:::0` the kernel returns the listener that would accept at the local end,
   * wildcard and dual-stack listeners included. An IPv4 lookup also finds IPv4 connections of
   * dual-stack IPv6 sockets. Returns null when there is no such socket.
   */
  tcpLookup(
    family: 4 | 6,
    localAddr: Buffer,
    localPort: number,
    remoteAddr: Buffer,
    remotePort: number,
  ): RawTcpEntry | null;
  /** Every TCP socket of one family, in states 1..12 (not the "bound, inactive" pseudo-state). */
  tcpDump(family: 4 | 6): RawTcpEntry[];
  /** Every UNIX socket, with its bound name and peer inode. */
  unixDump(): RawUnixEntry[];
  /**
   * Reads every `PROCROOT/PID/fd` and classifies each descriptor: `socket:[N]`, `pipe:[N]`
   * (end from the link's mode) and, unless `namedPipes` is false, paths that stat as FIFOs.
   * Processes that vanish meanwhile are left out silently. Throws only when the proc root
   * cannot be listed or memory runs out. Absent in a build older than the function: callers
   * then scan from JavaScript.
   */
  scanFds?(procRoot: string, options?: { readonly namedPipes?: boolean }): RawFdScan;
  /**
   * What descriptor `fd` of process `pid` is, read from a duplicate that pidfd_getfd (Linux
   * 5.6) lends and that is closed before returning (native/socket_fd.c). `uid` is the socket
   * inode's owner, the value sock_diag reports. A socket of another network namespace is
   * `other`: sock_diag and the dumps do not see it either. Null when the process or
   * descriptor is gone, or the descriptor is no longer the socket `inode` (its number was
   * reused). Throws with `code` ENOSYS (no pidfd_getfd: older kernel, or a seccomp filter),
   * ENOPROTOOPT (no SO_NETNS_COOKIE: older than Linux 5.14) or EPERM (no ptrace access to
   * `pid`), among others. Absent in a build older than the function.
   */
  socketOf?(pid: number, fd: number, inode: number): RawFdSocket | null;
  /**
   * Exact UNIX_DIAG lookup of one UNIX socket by inode (no dump), the same record as one
   * {@link NativeAddon.unixDump} entry, or null when there is no such socket. Absent in a
   * build older than the function.
   */
  unixLookup?(inode: number): RawUnixEntry | null;
  /**
   * Opens an incremental index of the same descriptors over `procRoot` (see
   * native/FD_INDEX.md for why it stays exact). Empty until the first refresh.
   * The functions below come all together or not at all (a build older than them).
   */
  fdIndexCreate?(procRoot: string, options?: RawFdIndexOptions): RawFdIndex;
  /** Brings the index up to date, re-reading only processes that may have changed. */
  fdIndexRefresh?(index: RawFdIndex): RawFdIndexRefresh;
  /** Holders of `inode` at the last refresh: {@link FD_INDEX_HOLDER_WIDTH} numbers each, by pid then fd. */
  fdIndexHolders?(index: RawFdIndex, inode: number): Int32Array;
  /** The descriptors of `pid` at the last refresh, in the `entries` layout; null when untracked, refused or failed. */
  fdIndexFds?(index: RawFdIndex, pid: number): Float64Array | null;
  /** Processes whose descriptors were refused or failed at the last refresh, ascending. */
  fdIndexDenied?(index: RawFdIndex): { readonly denied: Int32Array; readonly failed: Int32Array };
  /** Closes the kept files and forgets everything; later calls but this one throw. Idempotent. */
  fdIndexClose?(index: RawFdIndex): void;
  /** Whether the index learns which processes ran from the run tracker, and why not ("" when not asked for). */
  fdIndexRunTracker?(index: RawFdIndex): { readonly active: boolean; readonly why: string };
  /**
   * Why libbpf (`libbpf.so.1`, opened at run time) cannot be used, or null. The recorder
   * functions come all together or not at all (a build older than them).
   */
  recorderSupport?(): string | null;
  /**
   * Loads the connection recorder's BPF object and attaches it (native/bpf_recorder.c), with
   * rings of `recordsPerCpu` records; `onBurst` (which must not throw) is called on this
   * thread's event loop when a CPU's ring got half full since the last read. Throws
   * with `code` the errno name: EPERM (capabilities), ELIBACC (no libbpf), ENOENT, EINVAL ...;
   * the message carries libbpf's first warning.
   */
  recorderOpen?(objectPath: string, recordsPerCpu: number, onBurst?: () => void): RawRecorder;
  /**
   * Moves waiting records, all CPUs' rings merged in the order they were made, into `into`
   * (kept and reused by the caller: no allocation per read) until none waits or `into` is
   * full: see {@link RawRecorderRead}. `last`, for the reads before closing: records still
   * waiting for an earlier one (being written on another CPU) come out too, in order.
   */
  recorderRead?(recorder: RawRecorder, into: Uint8Array, last?: boolean): RawRecorderRead;
  /** Detaches and frees the recorder; later reads throw. Idempotent. */
  recorderClose?(recorder: RawRecorder): void;
  /**
   * One conntrack entry (TCP) whose `direction` tuple is `src:srcPort -> dst:dstPort`, by one
   * NETLINK_NETFILTER GET (native/conntrack.c; never a dump), in this thread's network namespace
   * and the default zone; null when the kernel tracks no such flow. Throws with `code` EPERM
   * without CAP_NET_ADMIN, EPROTONOSUPPORT or EOPNOTSUPP without ctnetlink. Absent in a build
   * older than the function.
   */
  conntrackLookup?(family: 4 | 6, direction: 'orig' | 'reply', src: Buffer, srcPort: number, dst: Buffer, dstPort: number): RawConntrackEntry | null;
  /**
   * Subscribes to conntrack's new and destroyed flows (this thread's network namespace) with a
   * receive buffer of `bufferBytes`; needs CAP_NET_ADMIN. Comes with the two below.
   */
  conntrackEventsOpen?(bufferBytes: number): RawConntrackEvents;
  /** The TCP events waiting (at most 1024), without blocking; `lost` when the kernel dropped some. */
  conntrackEventsRead?(events: RawConntrackEvents): { readonly events: readonly { readonly kind: 'new' | 'destroy'; readonly entry: RawConntrackEntry }[]; readonly lost: boolean };
  /** Ends the subscription. Idempotent. */
  conntrackEventsClose?(events: RawConntrackEvents): void;
}

/** A loaded connection recorder in the addon (an opaque handle). */
export type RawRecorder = { readonly __brand: 'RawRecorder' };

/** What one `recorderRead` returns. */
export interface RawRecorderRead {
  /**
   * Bytes written at the start of `into`: fixed-size records back to back, in the layout of
   * `struct record` (native/bpf/connection-recorder.bpf.c). When no further record would fit,
   * `into` is full and more may wait: read again.
   */
  readonly bytes: number;
  /** Running totals of the kernel's loss counters since the recorder was loaded. */
  readonly ringFull: number;
  readonly unattributed: number;
  /** Runs the kernel skipped because the program was already running on that CPU. */
  readonly recursion: number;
  /** CLOCK_REALTIME minus CLOCK_MONOTONIC now, in milliseconds: kernel time + this = epoch time. */
  readonly epochOffsetMs: number;
}

/** The names of the recorder functions, which a build has all or none of. */
const RECORDER_FUNCTIONS = ['recorderSupport', 'recorderOpen', 'recorderRead', 'recorderClose'] as const;

/** The addon's recorder functions, when the build has them. */
export type NativeRecorderFunctions = Required<Pick<NativeAddon, (typeof RECORDER_FUNCTIONS)[number]>>;

/** The recorder functions of the loaded addon, or undefined (no addon, or an older build). */
export function nativeRecorderFunctions(): NativeRecorderFunctions | undefined {
  const { binding } = loadNativeAddon();
  if (binding === undefined) return undefined;
  const record = binding as unknown as Record<string, unknown>;
  if (!RECORDER_FUNCTIONS.every((name) => typeof record[name] === 'function')) return undefined;
  return binding as NativeRecorderFunctions;
}

/** A conntrack event subscription living in the addon (an opaque handle). */
export type RawConntrackEvents = { readonly __brand: 'RawConntrackEvents' };

/** One direction of a tracked flow, as the kernel reports it (addresses of 4 or 16 bytes). */
export interface RawConntrackTuple {
  readonly src: Buffer;
  readonly srcPort: number;
  readonly dst: Buffer;
  readonly dstPort: number;
}

/** One conntrack entry (native/conntrack.h, struct ct_entry). */
export interface RawConntrackEntry {
  readonly family: 4 | 6;
  /** enum tcp_conntrack (linux/netfilter/nf_conntrack_tcp.h): 3 ESTABLISHED; 0 when absent. */
  readonly tcpState: number;
  readonly zone: number;
  /** enum ip_conntrack_status bits: 0x10 SRC_NAT, 0x20 DST_NAT, ... */
  readonly status: number;
  readonly id: number;
  /** Seconds left before the kernel forgets the entry. */
  readonly timeout: number;
  readonly orig: RawConntrackTuple;
  readonly reply: RawConntrackTuple;
}

/** The names of the incremental index functions, which a build has all or none of. */
const FD_INDEX_FUNCTIONS = ['fdIndexCreate', 'fdIndexRefresh', 'fdIndexHolders', 'fdIndexFds', 'fdIndexDenied', 'fdIndexClose', 'fdIndexRunTracker'] as const;

/** The addon's incremental index functions, when the build has them. */
export type NativeFdIndexFunctions = Required<Pick<NativeAddon, (typeof FD_INDEX_FUNCTIONS)[number]>>;

/** The incremental index functions of the loaded addon, or undefined (no addon, or an older build). */
export function nativeFdIndexFunctions(): NativeFdIndexFunctions | undefined {
  const { binding } = loadNativeAddon();
  if (binding === undefined) return undefined;
  const record = binding as unknown as Record<string, unknown>;
  if (!FD_INDEX_FUNCTIONS.every((name) => typeof record[name] === 'function')) return undefined;
  return binding as NativeFdIndexFunctions;
}

/** The outcome of loading the addon: the binding, or why there is none. */
export type NativeAddonLoad =
  | { readonly binding: NativeAddon; readonly error?: undefined }
  | { readonly binding: undefined; readonly error: Error };

/** Where node-gyp puts the addon, relative to the package root. */
const ADDON_PATH = join('build', 'Release', 'stopd_native.node');

/**
 * The package root: the nearest directory above this module holding a package.json. This
 * module runs from `dist/src/host/` once built, but walking up (rather than counting `..`)
 * keeps working if the layout changes or the sources are run directly.
 */
export function findPackageRoot(from: string = dirname(fileURLToPath(import.meta.url))): string | undefined {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    if (dirname(dir) === dir) return undefined;
  }
}

/** A BPF object shipped in native/bpf/ (e.g. `run-tracker.bpf.o`), or undefined when the package root cannot be found. */
export function findBpfObject(name: string): string | undefined {
  const root = findPackageRoot();
  return root === undefined ? undefined : join(root, 'native', 'bpf', name);
}

let cached: NativeAddonLoad | undefined;

/**
 * Loads `build/Release/stopd_native.node` once per process. Never throws: callers fall back
 * to /proc when `binding` is undefined, and report `error` to the operator.
 */
export function loadNativeAddon(): NativeAddonLoad {
  cached ??= tryLoad();
  return cached;
}

function tryLoad(): NativeAddonLoad {
  const root = findPackageRoot();
  if (root === undefined) {
    return { binding: undefined, error: new Error('Cannot find the package root: no package.json above the module') };
  }
  const path = join(root, ADDON_PATH);
  try {
    const required: unknown = createRequire(import.meta.url)(path);
    // A stale build from an older version may lack a function: treat it as absent rather
    // than fail later in the middle of a request.
    const names = ['tcpLookup', 'tcpDump', 'unixDump'];
    const missing = names.filter((name) => typeof (required as Record<string, unknown> | null)?.[name] !== 'function');
    if (missing.length > 0) {
      return { binding: undefined, error: new Error(`Cannot use ${path}: missing ${missing.join(', ')}; rebuild it`) };
    }
    const binding = required as NativeAddon;
    // scanFds, socketOf and unixLookup are optional: a build without them still serves the
    // netlink lookups; the process view then scans from JavaScript, and SV analysis reads
    // whole socket tables.
    for (const name of ['scanFds', 'socketOf', 'unixLookup', 'conntrackLookup', 'conntrackEventsOpen', 'conntrackEventsRead', 'conntrackEventsClose'] as const) {
      if (binding[name] !== undefined && typeof binding[name] !== 'function') {
        return { binding: undefined, error: new Error(`Cannot use ${path}: ${name} is not a function; rebuild it`) };
      }
    }
    return { binding };
  } catch (err) {
    return { binding: undefined, error: err instanceof Error ? err : new Error(String(err)) };
  }
}
