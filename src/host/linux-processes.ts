/**
 * The Linux process view: processes, their open sockets and pipes, and which processes hold
 * a given socket or pipe inode, read from /proc with synchronous calls (DESIGN.md, Host
 * view) so one request sees one coherent snapshot and never interleaves with another.
 * Where the descriptors come from is a {@link DescriptorSource}: a JavaScript readdir
 * (readdir-descriptor-source.ts), the native one-pass scan (native-scan-descriptor-source.ts)
 * or the persistent descriptor index (indexed-descriptor-source.ts).
 */
import { createHash } from 'node:crypto';
import { closeSync, openSync, readFileSync, readlinkSync, readSync } from 'node:fs';
import { BlockList, isIPv4, isIPv6 } from 'node:net';
import { endianness, networkInterfaces } from 'node:os';
import { HostLookupError } from '../errors.js';
import { pushTo, type DescriptorSource } from './descriptor-source.js';
import { IndexedDescriptorSource } from './indexed-descriptor-source.js';
import { loadNativeScanner, NativeScanDescriptorSource } from './native-scan-descriptor-source.js';
import type { PersistentFdIndex } from './persistent-fd-index.js';
import { describeProcError, isGone, ProcFdReader } from './proc-fd-reader.js';
import { ReaddirDescriptorSource } from './readdir-descriptor-source.js';
import { readBootTimeMs } from './host-facts.js';
import { forgetRecent, recent } from './recent.js';
import { MAX_CMDLINE_BYTES, type ProcessInfo, type ProcessTable } from './types.js';
import {
  decodeTtyNr,
  parseAuxvClockTicks,
  parseProcStat,
  parseStatusUids,
} from './proc-stat.js';

export { listPids } from './proc-fd-reader.js';

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

/** Creates the /proc-backed process view; see {@link LinuxProcessTable} for its snapshot rule. */
export function createLinuxProcessTable(options: LinuxProcessTableOptions = {}): LinuxProcessTable {
  const fdIndex = options.fdIndex;
  const procRoot = fdIndex?.procRoot ?? options.procRoot ?? '/proc';
  const namedPipes = fdIndex?.namedPipes ?? options.namedPipes ?? true;
  const onDenied = options.onDenied ?? (process.geteuid?.() === 0 ? 'skip' : 'throw');
  const clockTicks = options.clockTicks ?? recent(`clock ticks of ${procRoot}`, () => readClockTicks(procRoot), Number.POSITIVE_INFINITY);
  const scanFds = fdIndex === undefined && (options.nativeScan ?? procRoot === '/proc') ? loadNativeScanner() : undefined;
  if (!(clockTicks > 0)) throw new HostLookupError(`Cannot use clock ticks ${clockTicks}: must be positive`);
  if (options.procRoot !== undefined && options.procRoot !== procRoot) {
    throw new HostLookupError(`Cannot use a descriptor index of ${procRoot} for processes in ${options.procRoot}`);
  }
  const hideSelf = options.hideSelf ?? false;
  if (fdIndex?.skipSelf === true && !hideSelf) {
    throw new HostLookupError('Cannot use a descriptor index that skips this process without hideSelf');
  }
  // This process as the proc root numbers it, when it is to be left out (read once: it never changes).
  const hiddenPid = hideSelf ? recent(`own pid in ${procRoot}`, () => selfPid(procRoot), Number.POSITIVE_INFINITY) : undefined;
  const reader = new ProcFdReader({ procRoot, namedPipes, onDenied });
  let source: DescriptorSource;
  if (fdIndex !== undefined) source = new IndexedDescriptorSource(fdIndex, reader);
  else if (scanFds !== undefined) source = new NativeScanDescriptorSource(reader, scanFds);
  else source = new ReaddirDescriptorSource(reader, { hiddenPid });
  return new ProcfsProcessTable(reader, source, { readCmdline: options.readCmdline ?? true, clockTicks, hiddenPid });
}

/** Settings of a {@link ProcfsProcessTable} beyond its reader and source, resolved by createLinuxProcessTable. */
interface ProcfsProcessTableSettings {
  readonly readCmdline: boolean;
  readonly clockTicks: number;
  readonly hiddenPid: number | undefined;
}

/** The {@link LinuxProcessTable}: one snapshot of /proc, with its descriptors from a {@link DescriptorSource}. */
class ProcfsProcessTable implements LinuxProcessTable {
  readonly #reader: ProcFdReader;
  readonly #source: DescriptorSource;
  readonly #settings: ProcfsProcessTableSettings;
  #bootTimeMs: number | undefined;
  #localAddresses: BlockList | undefined;
  /** isLocalAddress's answers in this snapshot. */
  readonly #localAnswers = new Map<string, boolean>();
  /** `/proc/PID/status` as first read in this snapshot: the holder order and getProcess both need it. */
  readonly #statusTexts = new Map<number, string | undefined>();
  /** The descriptors of each holder of each inode the last findHolders found live, for pipeEndOf. */
  readonly #liveFds = new Map<number, Map<number, number[]>>();

  constructor(reader: ProcFdReader, source: DescriptorSource, settings: ProcfsProcessTableSettings) {
    this.#reader = reader;
    this.#source = source;
    this.#settings = settings;
  }

  getProcess(pid: number): ProcessInfo | undefined {
    if (!Number.isSafeInteger(pid) || pid <= 0) return undefined;
    const statText = this.#readText(pid, 'stat', 'utf8');
    if (statText === undefined) return undefined;
    const stat = parseProcStat(statText);
    const status = this.#readStatus(pid);
    if (status === undefined) return undefined;
    let cmdline: string[] = [];
    let cmdlineTruncated: ProcessInfo['cmdlineTruncated'];
    if (this.#settings.readCmdline) {
      const path = `${this.#reader.procRoot}/${pid}/cmdline`;
      let read: CmdlinePrefix;
      try {
        read = readCmdlinePrefix(path);
      } catch (error) {
        if (isGone(error)) return undefined;
        throw new HostLookupError(`Cannot read ${path}: ${describeProcError(error)}`, { cause: error });
      }
      cmdline = splitCmdline(read.prefix);
      cmdlineTruncated = read.truncated;
    }
    const fds = this.#source.fds(pid) ?? this.#reader.readFds(pid)?.map((entry) => entry.fd);
    if (fds === undefined) return undefined;
    return {
      pid,
      ppid: stat.ppid,
      name: stat.name,
      uid: parseStatusUids(status),
      startTime: new Date(this.#bootTime() + Math.round((stat.startTicks * 1000) / this.#settings.clockTicks)).toISOString(),
      tty: decodeTtyNr(stat.ttyNr),
      priority: stat.priority,
      nice: stat.nice,
      pgid: stat.pgrp,
      sid: stat.session,
      cmdline,
      ...(cmdlineTruncated === undefined ? {} : { cmdlineTruncated }),
      fds,
    };
  }

  findHolders(inode: number, ownerUid?: number): number[] {
    if (!Number.isSafeInteger(inode) || inode <= 0) return [];
    const live = this.#source.holders(inode).filter((holder) => this.#reader.stillHolds(holder, inode));
    this.#source.retain(inode, live);
    const byPid = new Map<number, number[]>();
    for (const holder of live) pushTo(byPid, holder.pid, holder.fd);
    this.#liveFds.set(inode, byPid);
    const pids = [...byPid.keys()].filter((pid) => pid !== this.#settings.hiddenPid).sort((a, b) => a - b);
    if (ownerUid === undefined) return pids;
    // The owner's processes first (DESIGN.md: scan the socket owner's uid first); the scan
    // itself is always complete, so the hint only orders the answer.
    const owned: number[] = [];
    const others: number[] = [];
    for (const pid of pids) (this.#effectiveUid(pid) === ownerUid ? owned : others).push(pid);
    return [...owned, ...others];
  }

  pipeEndOf(pid: number, inode: number): 'read' | 'write' | 'both' | undefined {
    let end: 'read' | 'write' | 'both' | undefined;
    for (const fd of this.#liveFds.get(inode)?.get(pid) ?? []) {
      const mine = this.#reader.pipeEndOf(pid, fd);
      if (mine === undefined) continue;
      end = end === undefined || end === mine ? mine : 'both';
    }
    return end;
  }

  isLocalAddress(address: string): boolean {
    // A closure asks about the same few addresses again and again; BlockList.check builds
    // objects at every call.
    let answer = this.#localAnswers.get(address);
    if (answer === undefined) {
      this.#localAddresses ??= recent('local addresses', buildLocalAddresses);
      const bare = address.replace(/%.*$/, '');
      // BlockList matches IPv4-mapped IPv6 (`::ffff:127.0.0.1`) against IPv4 rules.
      answer = isIPv4(bare) ? this.#localAddresses.check(bare, 'ipv4') : isIPv6(bare) && this.#localAddresses.check(bare, 'ipv6');
      this.#localAnswers.set(address, answer);
    }
    return answer;
  }

  deniedPids(): number[] {
    return this.#reader.deniedPids();
  }

  refresh(): void {
    this.#reader.forgetDenied();
    this.#statusTexts.clear();
    forgetRecent();
    this.#bootTimeMs = undefined;
    this.#source.forget();
    this.#localAddresses = undefined;
    this.#localAnswers.clear();
    this.#liveFds.clear();
  }

  #bootTime(): number {
    const procRoot = this.#reader.procRoot;
    this.#bootTimeMs ??= recent(`boot time of ${procRoot}`, () => readBootTimeMs(procRoot));
    return this.#bootTimeMs;
  }

  #readText(pid: number, file: string, encoding: BufferEncoding): string | undefined {
    const path = `${this.#reader.procRoot}/${pid}/${file}`;
    try {
      return readSmallFile(path, encoding);
    } catch (error) {
      if (isGone(error)) return undefined;
      throw new HostLookupError(`Cannot read ${path}: ${describeProcError(error)}`, { cause: error });
    }
  }

  #readStatus(pid: number): string | undefined {
    if (!this.#statusTexts.has(pid)) this.#statusTexts.set(pid, this.#readText(pid, 'status', 'latin1'));
    return this.#statusTexts.get(pid);
  }

  #effectiveUid(pid: number): number | undefined {
    const status = this.#readStatus(pid);
    return status === undefined ? undefined : parseStatusUids(status).effective;
  }
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
