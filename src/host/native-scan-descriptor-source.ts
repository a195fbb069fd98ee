/**
 * The descriptor source of the native addon's `scanFds`: one C pass over every
 * `/proc/PID/fd` per snapshot, which also keeps each process's descriptors so `getProcess`
 * need not read them again (a request then reads each `/proc/PID/fd` once).
 */
import { HostLookupError } from '../errors.js';
import { pushTo, ScanningDescriptorSource, type Holder } from './descriptor-source.js';
import { decodeFdEntry, FD_SCAN_ENTRY_WIDTH, loadNativeAddon, type NativeAddon } from './native-addon.js';
import { describeProcError, type ProcFdReader } from './proc-fd-reader.js';
import type { OpenFd } from './types.js';

/** The native scanner. */
export type ScanFds = NonNullable<NativeAddon['scanFds']>;

/** The native scanner, when the addon is built with one. */
export function loadNativeScanner(): ScanFds | undefined {
  const { binding } = loadNativeAddon();
  return binding?.scanFds?.bind(binding);
}

/** The link text a native descriptor is re-validated against: sockets by text, pipes by inode (undefined). */
export function linkOfNativeFd(fd: { readonly kind: 'socket' | 'pipe'; readonly inode: number }): string | undefined {
  return fd.kind === 'socket' ? `socket:[${fd.inode}]` : undefined;
}

/** Scans every process's descriptors with one native pass per snapshot. */
export class NativeScanDescriptorSource extends ScanningDescriptorSource {
  readonly #reader: ProcFdReader;
  readonly #scanFds: ScanFds;
  /** The descriptors of each process the scan read, by fd. */
  #scanned: Map<number, OpenFd[]> | undefined;

  constructor(reader: ProcFdReader, scanFds: ScanFds) {
    super();
    this.#reader = reader;
    this.#scanFds = scanFds;
  }

  /**
   * The index from one native pass. Processes the scan could not read (refused, or another
   * error) are read again from JavaScript, so they end exactly as in the JavaScript scan:
   * a HostLookupError, or with `onDenied: 'skip'` no descriptors and a place in deniedPids.
   */
  protected override scan(): Map<number, Holder[]> {
    const { procRoot, namedPipes } = this.#reader;
    let raw;
    try {
      raw = this.#scanFds(procRoot, { namedPipes });
    } catch (error) {
      throw new HostLookupError(`Cannot list processes in ${procRoot}: ${describeProcError(error)}`, {
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
      add(pid, fd, linkOfNativeFd(fd));
    }
    for (const [pid, fds] of this.#reader.retryUnreadable(raw.denied, raw.failed)) {
      perPid.set(pid, []);
      for (const { fd, link } of fds) add(pid, fd, link);
    }
    for (const fds of perPid.values()) fds.sort((a, b) => a.fd - b.fd);
    this.#scanned = perPid;
    return built;
  }

  override fds(pid: number): readonly OpenFd[] | undefined {
    return this.#scanned?.get(pid);
  }

  override forget(): void {
    super.forget();
    this.#scanned = undefined;
  }
}
