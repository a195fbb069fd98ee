/**
 * Reading and re-checking `/proc/PID/fd` from JavaScript, with one rule for what the kernel
 * refuses: shared by the process table and every descriptor source, so a process ends the same
 * way whichever source read it first.
 */
import { lstatSync, readdirSync, readlinkSync, statSync } from 'node:fs';
import { errnoCode, HostLookupError } from '../errors.js';
import type { Holder, LinkedFd } from './descriptor-source.js';
import type { OpenFd } from './types.js';

/** Options of {@link ProcFdReader}. */
export interface ProcFdReaderOptions {
  readonly procRoot: string;
  /** Stat descriptors that name a path to find named pipes (FIFOs). */
  readonly namedPipes: boolean;
  /** See LinuxProcessTableOptions.onDenied. */
  readonly onDenied: 'throw' | 'skip';
}

/** Numeric entries of the proc root (thread-group leaders, i.e. processes), ascending. */
export function listPids(procRoot = '/proc'): number[] {
  let names: string[];
  try {
    names = readdirSync(procRoot);
  } catch (error) {
    throw new HostLookupError(`Cannot list processes in ${procRoot}: ${describeProcError(error)}`, {
      cause: error,
    });
  }
  const pids: number[] = [];
  for (const name of names) if (/^[1-9]\d*$/.test(name)) pids.push(Number(name));
  return pids.sort((a, b) => a - b);
}

/**
 * The socket and pipe descriptors of processes, read with synchronous calls, and the pids whose
 * descriptors the kernel refused (with `onDenied: 'skip'`) since the last {@link forgetDenied}.
 */
export class ProcFdReader {
  readonly procRoot: string;
  readonly namedPipes: boolean;
  readonly onDenied: 'throw' | 'skip';
  readonly #denied = new Set<number>();

  constructor(options: ProcFdReaderOptions) {
    this.procRoot = options.procRoot;
    this.namedPipes = options.namedPipes;
    this.onDenied = options.onDenied;
  }

  /** The path of one descriptor link. */
  pathOf(pid: number, fd: number | string): string {
    return `${this.procRoot}/${pid}/fd/${fd}`;
  }

  /**
   * The socket and pipe descriptors of a process with their link text, by fd, or undefined when
   * the process is gone. When the kernel refuses them, throws HostLookupError or, with
   * `onDenied: 'skip'`, returns [] and remembers the pid.
   */
  readFds(pid: number): LinkedFd[] | undefined {
    let names: string[];
    try {
      names = readdirSync(`${this.procRoot}/${pid}/fd`);
    } catch (error) {
      if (isGone(error)) return undefined;
      if (this.#skipsDenied(pid, error)) return [];
      throw fdError(pid, error);
    }
    const out: LinkedFd[] = [];
    for (const name of names) {
      const fd = Number(name);
      if (!Number.isSafeInteger(fd)) continue;
      const path = this.pathOf(pid, name);
      try {
        const link = readlinkSync(path);
        const entry = classifyFd(fd, link, path, this.namedPipes);
        if (entry !== undefined) out.push({ fd: entry, link });
      } catch (error) {
        // The descriptor was closed (or the process exited) between readdir and readlink.
        if (isGone(error)) continue;
        // The kernel checks access per descriptor read (ptrace_may_access), not on readdir.
        if (this.#skipsDenied(pid, error)) return [];
        throw fdError(pid, error);
      }
    }
    return out.sort((a, b) => a.fd.fd - b.fd.fd);
  }

  /**
   * Processes native code could not read, ending exactly as if read here: a HostLookupError,
   * or with `onDenied: 'skip'` no descriptors and a place in {@link deniedPids}. Failures are
   * read again (gone ones are left out). Refusals with 'skip' are taken as the native code saw
   * them, without a second read: they repeat at every request (init in some containers) and a
   * read costs as much as a whole descriptor table.
   */
  retryUnreadable(refused: Iterable<number>, failed: Iterable<number>): Map<number, LinkedFd[]> {
    const out = new Map<number, LinkedFd[]>();
    const again = [...failed];
    for (const pid of refused) {
      if (this.onDenied === 'skip') {
        this.#denied.add(pid);
        out.set(pid, []);
      } else again.push(pid);
    }
    for (const pid of again.sort((a, b) => a - b)) {
      const fds = this.readFds(pid);
      if (fds !== undefined) out.set(pid, fds);
    }
    return out;
  }

  /** Whether a remembered descriptor still names the same object (one readlink). */
  stillHolds(holder: Holder, inode: number): boolean {
    try {
      if (holder.link === undefined) return this.#isSamePipe(holder.pid, holder.fd, inode);
      return readlinkSync(this.pathOf(holder.pid, holder.fd)) === holder.link;
    } catch (error) {
      if (isGone(error)) return false;
      // Readable at scan time, refused now (it exec'ed a setuid program): keep what was seen.
      if (this.#skipsDenied(holder.pid, error)) return true;
      throw fdError(holder.pid, error);
    }
  }

  /** The pipe end `pid` holds through descriptor `fd`, or undefined when it is gone or refused. */
  pipeEndOf(pid: number, fd: number): 'read' | 'write' | 'both' | undefined {
    try {
      return pipeEnd(this.pathOf(pid, fd));
    } catch (error) {
      if (isGone(error) || isDenied(error)) return undefined;
      throw fdError(pid, error);
    }
  }

  /** Pids refused since the last {@link forgetDenied}, ascending. */
  deniedPids(): number[] {
    return [...this.#denied].sort((a, b) => a - b);
  }

  forgetDenied(): void {
    this.#denied.clear();
  }

  /** With `onDenied: 'skip'`, whether `error` is a refusal (then `pid` is remembered as denied). */
  #skipsDenied(pid: number, error: unknown): boolean {
    if (!isDenied(error) || this.onDenied !== 'skip') return false;
    this.#denied.add(pid);
    return true;
  }

  /** Whether a descriptor link (or, for a FIFO, the file it opens) is still `inode`'s pipe. */
  #isSamePipe(pid: number, fd: number, inode: number): boolean {
    const path = this.pathOf(pid, fd);
    const link = readlinkSync(path);
    if (link === `pipe:[${inode}]`) return true;
    if (!this.namedPipes || !link.startsWith('/')) return false;
    const stats = statSync(path);
    return stats.isFIFO() && stats.ino === inode;
  }
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

/** The process (or descriptor) disappeared while being read. */
export function isGone(error: unknown): boolean {
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
  return new HostLookupError(`Cannot read open files of process ${pid}: ${describeProcError(error)}${hint}`, {
    cause: error,
  });
}

/** A /proc read failure for a message: "permission denied", the errno code, or the error's message. */
export function describeProcError(error: unknown): string {
  const code = errnoCode(error);
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code !== undefined) return code;
  return error instanceof Error ? error.message : String(error);
}
