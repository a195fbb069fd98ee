/**
 * The Linux process view: processes, their open sockets and pipes, and which processes hold
 * a given socket or pipe inode, read from /proc with synchronous calls (DESIGN.md, Host
 * view) so one request sees one coherent snapshot and never interleaves with another.
 */
import { createHash } from 'node:crypto';
import { closeSync, lstatSync, openSync, readdirSync, readFileSync, readlinkSync, readSync, statSync } from 'node:fs';
import { BlockList, isIPv4, isIPv6 } from 'node:net';
import { endianness, networkInterfaces } from 'node:os';
import { errnoCode, HostLookupError } from '../errors.js';
import { decodeFdEntry, FD_SCAN_ENTRY_WIDTH, loadNativeAddon, type NativeAddon } from './native-addon.js';
import { forgetRecent, recent } from './recent.js';
import type { PersistentFdIndex } from './persistent-fd-index.js';
import { MAX_CMDLINE_BYTES, type OpenFd, type ProcessInfo, type ProcessTable } from './types.js';
import {
  decodeTtyNr,
  parseAuxvClockTicks,
  parseBootTime,
  parseProcStat,
  parseStatusUids,
} from './proc-stat.js';

/** Options of {@link createLinuxProcessTable}. */
export interface LinuxProcessTableOptions {
  /** Where procfs is mounted; default `/proc`. */
  readonly procRoot?: string;
  /** Read `/proc/PID/cmdline` (argv may hold secrets, so operators can turn it off); default true. */
  readonly readCmdline?: boolean;
  /** CLK_TCK, the unit of `starttime`; default from `AT_CLKTCK` in `PROCROOT/self/auxv`, else 100. */
  readonly clockTicks?: number;
  /**
   * Resolve descriptors that name a path to see whether they are named pipes (FIFOs); default
   * true. Each such descriptor costs one stat() of the open file, which on a dead network
   * mount (NFS) can block: turn it off on hosts with hard-mounted network filesystems.
   */
  readonly namedPipes?: boolean;
  /**
   * What to do when the kernel refuses a process's descriptors (EACCES/EPERM). `throw`: a
   * HostLookupError, because an SV record must not silently hold less than the host has; the
   * default when not running as root, where it means stopd lacks the privilege. `skip`: treat
   * the process as holding no sockets or pipes and list it in `deniedPids()`; the default as
   * root, where a refusal is policy (an LSM, a process of an outer container or sandbox) that
   * no request can change, and throwing would fail every SV request on the host.
   */
  readonly onDenied?: 'throw' | 'skip';
  /**
   * Build the holder index with the native addon's `scanFds` (one C pass over every
   * `PROCROOT/PID/fd`) instead of from JavaScript. Default: true for `/proc` when the addon
   * is built with `scanFds`; a fake proc root is scanned from JavaScript unless this is set.
   * Without the addon the JavaScript scan is used whatever this says.
   */
  readonly nativeScan?: boolean;
  /**
   * Answer descriptor questions from a {@link PersistentFdIndex} kept between requests instead
   * of scanning every process: the table refreshes it (incrementally) at its first
   * `findHolders` and after each {@link LinuxProcessTable.refresh}. Its proc root and
   * `namedPipes` apply; `nativeScan` is then ignored. The table never closes it.
   */
  readonly fdIndex?: PersistentFdIndex;
  /**
   * Leave the calling process (the one the proc root's `self` names) out of `findHolders`, so
   * it never joins a closure; default false. stopd sets it for itself: its sockets are
   * requesters', collectors' and upstream hosts', never part of a session, and a closure
   * member connected to it (a local ident query) would otherwise make every host asking stopd
   * at that moment look like an upstream hop. Its descriptors are then not read at all. Set
   * for a {@link PersistentFdIndex} opened with `skipSelf`.
   */
  readonly hideSelf?: boolean;
}

/**
 * A {@link ProcessTable} over /proc.
 *
 * Snapshot rule: the first `findHolders` call scans every `/proc/PID/fd` once and indexes
 * every socket and pipe inode; later calls answer from that index, re-checking each
 * remembered descriptor with one readlink (so holders that closed it or exited since are
 * dropped). Descriptors opened after the scan are not seen until {@link refresh}. The daemon
 * creates one table per request, or calls `refresh()` between requests, so a request costs
 * at most one full scan.
 *
 * With the native scan (see {@link LinuxProcessTableOptions.nativeScan}) the same pass also
 * keeps each process's descriptors: `getProcess` then answers `fds` from it for processes the
 * scan read (stat, status and cmdline are still read fresh), so a request reads each
 * `/proc/PID/fd` once.
 *
 * With a persistent index ({@link LinuxProcessTableOptions.fdIndex}) the snapshot rule is the
 * same, but "scan" means "refresh the index", which re-reads only the processes that may have
 * changed since the previous request.
 */
export interface LinuxProcessTable extends ProcessTable {
  /** See {@link ProcessTable.pipeEndOf}: one lstat of each descriptor the last findHolders found. */
  pipeEndOf(pid: number, inode: number): 'read' | 'write' | 'both' | undefined;
  /**
   * Pids whose descriptors the kernel refused since the last refresh (only with `onDenied:
   * 'skip'`), ascending: the caller records them so the evidence says what could not be seen.
   */
  deniedPids(): number[];
  /**
   * Forgets the holder index, denied pids, status texts, boot time and local addresses (also
   * the copies shared by the tables of the last second); the next calls read them again. A
   * persistent index is not discarded: the next `findHolders` refreshes it.
   */
  refresh(): void;
}

/** One descriptor remembered by the holder index. */
interface Holder {
  readonly pid: number;
  readonly fd: number;
  /**
   * The link text at scan time, compared on re-validation; undefined for pipes found by the
   * native scan, which reports inodes, not link text: those are re-validated by inode.
   */
  readonly link: string | undefined;
}

/** What a table read around its persistent index in one snapshot. */
interface IndexedSnapshot {
  /** Processes the index could not read, as retryUnreadable ends them. */
  readonly retried: ReadonlyMap<number, readonly { fd: OpenFd; link: string }[]>;
  /** The same descriptors by inode. */
  readonly retriedHolders: ReadonlyMap<number, readonly Holder[]>;
}

/** The link text a native descriptor is re-validated against: sockets by text, pipes by inode (undefined). */
function nativeLink(fd: OpenFd): string | undefined {
  return fd.kind === 'socket' ? `socket:[${fd.inode}]` : undefined;
}

/** The native scanner, when the addon has one. */
type ScanFds = NonNullable<NativeAddon['scanFds']>;

function nativeScanner(): ScanFds | undefined {
  const { binding } = loadNativeAddon();
  return binding?.scanFds?.bind(binding);
}

/** Numeric entries of the proc root (thread-group leaders, i.e. processes), ascending. */
export function listPids(procRoot = '/proc'): number[] {
  let names: string[];
  try {
    names = readdirSync(procRoot);
  } catch (error) {
    throw new HostLookupError(`Cannot list processes in ${procRoot}: ${describe(error)}`, {
      cause: error,
    });
  }
  const pids: number[] = [];
  for (const name of names) if (/^[1-9]\d*$/.test(name)) pids.push(Number(name));
  return pids.sort((a, b) => a - b);
}

/** Creates the /proc-backed process view; see {@link LinuxProcessTable} for its snapshot rule. */
export function createLinuxProcessTable(options: LinuxProcessTableOptions = {}): LinuxProcessTable {
  const fdIndex = options.fdIndex;
  const procRoot = fdIndex?.procRoot ?? options.procRoot ?? '/proc';
  const readCmdline = options.readCmdline ?? true;
  const namedPipes = fdIndex?.namedPipes ?? options.namedPipes ?? true;
  const onDenied = options.onDenied ?? (process.geteuid?.() === 0 ? 'skip' : 'throw');
  const clockTicks = options.clockTicks ?? recent(`clock ticks of ${procRoot}`, () => readClockTicks(procRoot), Number.POSITIVE_INFINITY);
  const scanFds = fdIndex === undefined && (options.nativeScan ?? procRoot === '/proc') ? nativeScanner() : undefined;
  if (!(clockTicks > 0)) throw new HostLookupError(`Cannot use clock ticks ${clockTicks}: must be positive`);
  if (options.procRoot !== undefined && options.procRoot !== procRoot) {
    throw new HostLookupError(`Cannot use a descriptor index of ${procRoot} for processes in ${options.procRoot}`);
  }
  const hideSelf = options.hideSelf ?? false;
  if (fdIndex?.skipSelf === true && !hideSelf) {
    throw new HostLookupError('Cannot use a descriptor index that skips this process without hideSelf');
  }
  /** This process as the proc root numbers it, when it is to be left out (read once: it never changes). */
  const hiddenPid = hideSelf ? recent(`own pid in ${procRoot}`, () => selfPid(procRoot), Number.POSITIVE_INFINITY) : undefined;

  let bootTimeMs: number | undefined;
  let index: Map<number, Holder[]> | undefined;
  /** The descriptors of each process the native scan read, so getProcess need not read them again. */
  let scannedFds: Map<number, OpenFd[]> | undefined;
  /** With a persistent index: set once it was refreshed for this snapshot. */
  let indexed: IndexedSnapshot | undefined;
  let localAddresses: BlockList | undefined;
  /** isLocalAddress's answers in this snapshot. */
  const localAnswers = new Map<string, boolean>();
  const denied = new Set<number>();
  /** The descriptors of each holder of each inode the last findHolders found live, for pipeEndOf. */
  const liveFds = new Map<number, Map<number, number[]>>();

  const bootTime = (): number => {
    bootTimeMs ??= recent(`boot time of ${procRoot}`, () => {
      const path = `${procRoot}/stat`;
      let text: string;
      try {
        text = readFileSync(path, 'latin1');
      } catch (error) {
        throw new HostLookupError(`Cannot read ${path}: ${describe(error)}`, { cause: error });
      }
      return parseBootTime(text) * 1000;
    });
    return bootTimeMs;
  };

  const fdOf = (pid: number, fd: number | string): string => `${procRoot}/${pid}/fd/${fd}`;

  /**
   * The socket and pipe descriptors of a process with their link text, or undefined when the
   * process is gone. When the kernel refuses them, throws HostLookupError or, with `onDenied:
   * 'skip'`, returns [] and remembers the pid.
   */
  const readFds = (pid: number): { fd: OpenFd; link: string }[] | undefined => {
    let names: string[];
    try {
      names = readdirSync(`${procRoot}/${pid}/fd`);
    } catch (error) {
      if (isGone(error)) return undefined;
      if (isDenied(error) && onDenied === 'skip') {
        denied.add(pid);
        return [];
      }
      throw fdError(pid, error);
    }
    const out: { fd: OpenFd; link: string }[] = [];
    for (const name of names) {
      const fd = Number(name);
      if (!Number.isSafeInteger(fd)) continue;
      const path = fdOf(pid, name);
      try {
        const link = readlinkSync(path);
        const entry = classifyFd(fd, link, path, namedPipes);
        if (entry !== undefined) out.push({ fd: entry, link });
      } catch (error) {
        // The descriptor was closed (or the process exited) between readdir and readlink.
        if (isGone(error)) continue;
        // The kernel checks access per descriptor read (ptrace_may_access), not on readdir.
        if (isDenied(error) && onDenied === 'skip') {
          denied.add(pid);
          return [];
        }
        throw fdError(pid, error);
      }
    }
    return out.sort((a, b) => a.fd.fd - b.fd.fd);
  };

  const readText = (pid: number, file: string, encoding: BufferEncoding): string | undefined => {
    try {
      return readSmallFile(`${procRoot}/${pid}/${file}`, encoding);
    } catch (error) {
      if (isGone(error)) return undefined;
      throw new HostLookupError(`Cannot read ${procRoot}/${pid}/${file}: ${describe(error)}`, {
        cause: error,
      });
    }
  };

  const buildIndex = (): Map<number, Holder[]> => {
    const built = new Map<number, Holder[]>();
    for (const pid of listPids(procRoot)) {
      if (pid === hiddenPid) continue;
      for (const { fd, link } of readFds(pid) ?? []) pushTo(built, fd.inode, { pid, fd: fd.fd, link });
    }
    return built;
  };

  /**
   * The index from one native pass. Processes the scan could not read (refused, or another
   * error) are read again from JavaScript, so they end exactly as in the JavaScript scan:
   * a HostLookupError, or with `onDenied: 'skip'` no descriptors and a place in deniedPids.
   */
  const buildNativeIndex = (scan: ScanFds): Map<number, Holder[]> => {
    let raw;
    try {
      raw = scan(procRoot, { namedPipes });
    } catch (error) {
      throw new HostLookupError(`Cannot list processes in ${procRoot}: ${describe(error)}`, {
        cause: error,
      });
    }
    const built = new Map<number, Holder[]>();
    const perPid = new Map<number, OpenFd[]>();
    const add = (pid: number, fd: OpenFd, link: string | undefined): void => {
      pushTo(built, fd.inode, { pid, fd: fd.fd, link });
      pushTo(perPid, pid, fd);
    };
    for (const pid of raw.pids) perPid.set(pid, []);
    const { entries } = raw;
    for (let i = 0; i < entries.length / FD_SCAN_ENTRY_WIDTH; i++) {
      const { pid, fd } = decodeFdEntry(entries, i);
      add(pid, fd, nativeLink(fd));
    }
    for (const [pid, fds] of retryUnreadable(raw.denied, raw.failed)) {
      perPid.set(pid, []);
      for (const { fd, link } of fds) add(pid, fd, link);
    }
    for (const fds of perPid.values()) fds.sort((a, b) => a.fd - b.fd);
    scannedFds = perPid;
    return built;
  };

  /**
   * Processes the native code could not read, ending exactly as in the JavaScript scan: a
   * HostLookupError, or with `onDenied: 'skip'` no descriptors and a place in deniedPids.
   * Failures are read again from JavaScript (gone ones are left out). Refusals with 'skip'
   * are taken as the native code saw them, without a second read: they repeat at every
   * request (init in some containers) and a read costs as much as a whole descriptor table.
   */
  const retryUnreadable = (refused: Iterable<number>, failed: Iterable<number>): Map<number, { fd: OpenFd; link: string }[]> => {
    const out = new Map<number, { fd: OpenFd; link: string }[]>();
    const again = [...failed];
    for (const pid of refused) {
      if (onDenied === 'skip') {
        denied.add(pid);
        out.set(pid, []);
      } else again.push(pid);
    }
    for (const pid of again.sort((a, b) => a - b)) {
      const fds = readFds(pid);
      if (fds !== undefined) out.set(pid, fds);
    }
    return out;
  };

  /** Refreshes the persistent index once per snapshot, and retries what it could not read. */
  const indexSnapshot = (persistent: PersistentFdIndex): IndexedSnapshot => {
    if (indexed !== undefined) return indexed;
    persistent.refresh();
    const { denied: refused, failed } = persistent.unreadable();
    const retried = retryUnreadable(refused, failed);
    const retriedHolders = new Map<number, Holder[]>();
    for (const [pid, fds] of retried) {
      for (const { fd, link } of fds) pushTo(retriedHolders, fd.inode, { pid, fd: fd.fd, link });
    }
    indexed = { retried, retriedHolders };
    return indexed;
  };

  /** Whether a descriptor link (or, for a FIFO, the file it opens) is still `inode`'s pipe. */
  const isSamePipe = (pid: number, fd: number, inode: number): boolean => {
    const path = fdOf(pid, fd);
    const link = readlinkSync(path);
    if (link === `pipe:[${inode}]`) return true;
    if (!namedPipes || !link.startsWith('/')) return false;
    const stats = statSync(path);
    return stats.isFIFO() && stats.ino === inode;
  };

  /** Whether a remembered descriptor still names the same object (one readlink). */
  const stillHolds = (holder: Holder, inode: number): boolean => {
    try {
      if (holder.link === undefined) return isSamePipe(holder.pid, holder.fd, inode);
      return readlinkSync(fdOf(holder.pid, holder.fd)) === holder.link;
    } catch (error) {
      if (isGone(error)) return false;
      if (isDenied(error) && onDenied === 'skip') {
        // Readable at scan time, refused now (it exec'ed a setuid program): keep what was seen.
        denied.add(holder.pid);
        return true;
      }
      throw fdError(holder.pid, error);
    }
  };

  /** A process's descriptors from the persistent index, once it was refreshed for this snapshot. */
  const indexedFds = (pid: number): OpenFd[] | undefined => {
    if (fdIndex === undefined || indexed === undefined) return undefined;
    return indexed.retried.get(pid)?.map((entry) => entry.fd) ?? fdIndex.fds(pid);
  };

  /** `/proc/PID/status` as first read in this snapshot: the holder order and getProcess both need it. */
  const statusTexts = new Map<number, string | undefined>();
  const readStatus = (pid: number): string | undefined => {
    if (!statusTexts.has(pid)) statusTexts.set(pid, readText(pid, 'status', 'latin1'));
    return statusTexts.get(pid);
  };

  const effectiveUid = (pid: number): number | undefined => {
    const status = readStatus(pid);
    return status === undefined ? undefined : parseStatusUids(status).effective;
  };

  return {
    getProcess(pid: number): ProcessInfo | undefined {
      if (!Number.isSafeInteger(pid) || pid <= 0) return undefined;
      const statText = readText(pid, 'stat', 'utf8');
      if (statText === undefined) return undefined;
      const stat = parseProcStat(statText);
      const status = readStatus(pid);
      if (status === undefined) return undefined;
      let cmdline: string[] = [];
      let cmdlineTruncated: ProcessInfo['cmdlineTruncated'];
      if (readCmdline) {
        const path = `${procRoot}/${pid}/cmdline`;
        let read: CmdlinePrefix;
        try {
          read = readCmdlinePrefix(path);
        } catch (error) {
          if (isGone(error)) return undefined;
          throw new HostLookupError(`Cannot read ${path}: ${describe(error)}`, { cause: error });
        }
        cmdline = splitCmdline(read.prefix);
        cmdlineTruncated = read.truncated;
      }
      const fds = scannedFds?.get(pid) ?? indexedFds(pid) ?? readFds(pid)?.map((entry) => entry.fd);
      if (fds === undefined) return undefined;
      return {
        pid,
        ppid: stat.ppid,
        name: stat.name,
        uid: parseStatusUids(status),
        startTime: new Date(bootTime() + Math.round((stat.startTicks * 1000) / clockTicks)).toISOString(),
        tty: decodeTtyNr(stat.ttyNr),
        priority: stat.priority,
        nice: stat.nice,
        pgid: stat.pgrp,
        sid: stat.session,
        cmdline,
        ...(cmdlineTruncated === undefined ? {} : { cmdlineTruncated }),
        fds,
      };
    },

    findHolders(inode: number, ownerUid?: number): number[] {
      if (!Number.isSafeInteger(inode) || inode <= 0) return [];
      let live: Holder[];
      if (fdIndex !== undefined) {
        const snapshot = indexSnapshot(fdIndex);
        const remembered: Holder[] = fdIndex
          .holders(inode)
          .map(({ pid, fd, kind }) => ({ pid, fd, link: kind === 'socket' ? `socket:[${inode}]` : undefined }));
        remembered.push(...(snapshot.retriedHolders.get(inode) ?? []));
        // The index is shared with later requests: filter, never prune it.
        live = remembered.filter((holder) => stillHolds(holder, inode));
      } else {
        index ??= scanFds === undefined ? buildIndex() : buildNativeIndex(scanFds);
        const remembered = index.get(inode);
        if (remembered === undefined) return [];
        live = remembered.filter((holder) => stillHolds(holder, inode));
        if (live.length === 0) index.delete(inode);
        else index.set(inode, live);
      }
      const byPid = new Map<number, number[]>();
      for (const holder of live) pushTo(byPid, holder.pid, holder.fd);
      liveFds.set(inode, byPid);
      const pids = [...byPid.keys()].filter((pid) => pid !== hiddenPid).sort((a, b) => a - b);
      if (ownerUid === undefined) return pids;
      // The owner's processes first (DESIGN.md: scan the socket owner's uid first); the scan
      // itself is always complete, so the hint only orders the answer.
      const owned: number[] = [];
      const others: number[] = [];
      for (const pid of pids) (effectiveUid(pid) === ownerUid ? owned : others).push(pid);
      return [...owned, ...others];
    },

    pipeEndOf(pid: number, inode: number): 'read' | 'write' | 'both' | undefined {
      let end: 'read' | 'write' | 'both' | undefined;
      for (const fd of liveFds.get(inode)?.get(pid) ?? []) {
        let mine: 'read' | 'write' | 'both';
        try {
          mine = pipeEnd(fdOf(pid, fd));
        } catch (error) {
          if (isGone(error) || isDenied(error)) continue;
          throw fdError(pid, error);
        }
        end = end === undefined || end === mine ? mine : 'both';
      }
      return end;
    },

    isLocalAddress(address: string): boolean {
      // A closure asks about the same few addresses again and again; BlockList.check builds
      // objects at every call.
      let answer = localAnswers.get(address);
      if (answer === undefined) {
        localAddresses ??= recent('local addresses', buildLocalAddresses);
        const bare = address.replace(/%.*$/, '');
        // BlockList matches IPv4-mapped IPv6 (`::ffff:127.0.0.1`) against IPv4 rules.
        answer = isIPv4(bare) ? localAddresses.check(bare, 'ipv4') : isIPv6(bare) && localAddresses.check(bare, 'ipv6');
        localAnswers.set(address, answer);
      }
      return answer;
    },

    deniedPids(): number[] {
      return [...denied].sort((a, b) => a - b);
    },

    refresh(): void {
      denied.clear();
      statusTexts.clear();
      forgetRecent();
      bootTimeMs = undefined;
      index = undefined;
      scannedFds = undefined;
      indexed = undefined;
      localAddresses = undefined;
      localAnswers.clear();
      liveFds.clear();
    },
  };
}

/** The socket or pipe a descriptor link names, or undefined for anything else. */
function classifyFd(fd: number, link: string, path: string, namedPipes: boolean): OpenFd | undefined {
  const anon = /^(socket|pipe):\[(\d+)\]$/.exec(link);
  if (anon?.[1] !== undefined && anon[2] !== undefined) {
    const inode = Number(anon[2]);
    if (anon[1] === 'socket') return { fd, kind: 'socket', inode };
    return { fd, kind: 'pipe', inode, end: pipeEnd(path) };
  }
  if (namedPipes && link.startsWith('/')) {
    // stat() through the /proc link reaches the open file itself, even when its path was
    // renamed, deleted or lives in another mount namespace; the link text may not.
    const stats = statSync(path);
    if (stats.isFIFO()) return { fd, kind: 'pipe', inode: stats.ino, end: pipeEnd(path) };
  }
  return undefined;
}

/** The access mode a descriptor was opened with: the kernel shows it in the link's owner r/w bits. */
function pipeEnd(path: string): 'read' | 'write' | 'both' {
  const mode = lstatSync(path).mode;
  const readable = (mode & 0o400) !== 0;
  const writable = (mode & 0o200) !== 0;
  if (readable && writable) return 'both';
  return writable ? 'write' : 'read';
}

/** argv from `/proc/PID/cmdline`: NUL-terminated strings. */
function splitCmdline(raw: string): string[] {
  if (raw === '') return [];
  const parts = raw.split('\0');
  if (parts.at(-1) === '') parts.pop();
  return parts;
}

function buildLocalAddresses(): BlockList {
  const list = new BlockList();
  list.addSubnet('127.0.0.0', 8, 'ipv4');
  list.addAddress('::1', 'ipv6');
  for (const infos of Object.values(networkInterfaces())) {
    for (const info of infos ?? []) {
      const bare = info.address.replace(/%.*$/, '');
      if (isIPv4(bare)) list.addAddress(bare, 'ipv4');
      else if (isIPv6(bare)) list.addAddress(bare, 'ipv6');
    }
  }
  return list;
}

/** CLK_TCK from the auxiliary vector the kernel gave this process; 100 (every mainstream Linux) if unreadable. */
function readClockTicks(procRoot: string): number {
  try {
    const wordSize = process.arch === 'ia32' || process.arch === 'arm' ? 4 : 8;
    const auxv = readFileSync(`${procRoot}/self/auxv`);
    return parseAuxvClockTicks(auxv, { wordSize, littleEndian: endianness() === 'LE' }) ?? 100;
  } catch {
    return 100;
  }
}

/** Appends `item` to the list `map` holds under `key`, starting the list if there is none. */
function pushTo<K, V>(map: Map<K, V[]>, key: K, item: V): void {
  const list = map.get(key);
  if (list === undefined) map.set(key, [item]);
  else list.push(item);
}

/** The pid `PROCROOT/self` names (this process in the root's pid namespace), or undefined (a fake root). */
function selfPid(procRoot: string): number | undefined {
  try {
    const pid = Number(readlinkSync(`${procRoot}/self`));
    return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** Reused by {@link readSmallFile}: the event loop runs one read at a time. */
let readBuffer = Buffer.allocUnsafe(16 * 1024);
const MAX_KEPT_READ_BUFFER = 64 * 1024;

/**
 * A whole file, as readFileSync would return it, for the small /proc files read for every
 * closure member (stat, status, cmdline): one open, reads into a buffer kept between calls, one
 * close. readFileSync also fstats and allocates per call, which costs more than the kernel's
 * own work on these files. Throws what readFileSync would.
 */
function readSmallFile(path: string, encoding: BufferEncoding): string {
  const fd = openSync(path, 'r');
  try {
    let buffer = readBuffer;
    let length = 0;
    for (;;) {
      if (length === buffer.length) {
        const grown = Buffer.allocUnsafe(buffer.length * 2);
        buffer.copy(grown);
        buffer = grown;
      }
      const read = readSync(fd, buffer, length, buffer.length - length, null);
      if (read === 0) {
        // Grown for a long command line: kept up to 64 KiB, beyond that for this call only.
        if (buffer.length <= MAX_KEPT_READ_BUFFER) readBuffer = buffer;
        return buffer.toString(encoding, 0, length);
      }
      length += read;
    }
  } finally {
    closeSync(fd);
  }
}

/** A command line as kept: its first {@link MAX_CMDLINE_BYTES} bytes, and the whole's length and hash when longer. */
interface CmdlinePrefix {
  readonly prefix: string;
  readonly truncated?: { readonly bytes: number; readonly sha256: string };
}

/** Chunks of long command lines are read into this; kept between calls (the event loop reads one file at a time). */
const cmdlineChunk = Buffer.allocUnsafe(64 * 1024);

/**
 * `/proc/PID/cmdline` read as a stream (issue 13: a process may have a command line of
 * megabytes, and a thousand of them): the first MAX_CMDLINE_BYTES bytes are kept, the rest
 * only goes through SHA-256, so memory stays bounded while the hash still proves what was
 * there. Throws what openSync/readSync throw.
 */
function readCmdlinePrefix(path: string): CmdlinePrefix {
  const fd = openSync(path, 'r');
  try {
    const head = Buffer.allocUnsafe(MAX_CMDLINE_BYTES);
    let kept = 0;
    let total = 0;
    let hash: ReturnType<typeof createHash> | undefined;
    for (;;) {
      const read = readSync(fd, cmdlineChunk, 0, cmdlineChunk.length, null);
      if (read === 0) break;
      const room = Math.min(read, MAX_CMDLINE_BYTES - kept);
      if (room > 0) kept += cmdlineChunk.copy(head, kept, 0, room);
      total += read;
      if (hash === undefined && total > MAX_CMDLINE_BYTES) {
        // Longer than kept: hash the whole from its start (the head, then what followed it).
        hash = createHash('sha256').update(head.subarray(0, kept));
        if (room < read) hash.update(cmdlineChunk.subarray(room, read));
      } else if (hash !== undefined) {
        hash.update(cmdlineChunk.subarray(0, read));
      }
    }
    const prefix = head.toString('utf8', 0, kept);
    return hash === undefined ? { prefix } : { prefix, truncated: { bytes: total, sha256: hash.digest('hex') } };
  } finally {
    closeSync(fd);
  }
}

/** The process (or descriptor) disappeared while being read. */
function isGone(error: unknown): boolean {
  const code = errnoCode(error);
  return code === 'ENOENT' || code === 'ESRCH';
}

/** The kernel refused access (file mode, or ptrace access mode for /proc/PID/fd links). */
function isDenied(error: unknown): boolean {
  const code = errnoCode(error);
  return code === 'EACCES' || code === 'EPERM';
}

function fdError(pid: number, error: unknown): HostLookupError {
  const hint =
    isDenied(error)
      ? ' (reading other users\' descriptors needs root or CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH; run stopd as root)'
      : '';
  return new HostLookupError(`Cannot read open files of process ${pid}: ${describe(error)}${hint}`, {
    cause: error,
  });
}

function describe(error: unknown): string {
  const code = errnoCode(error);
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code !== undefined) return code;
  return error instanceof Error ? error.message : String(error);
}
