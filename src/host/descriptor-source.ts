/**
 * Where a Linux process table gets its descriptors from: the one question that differs between
 * a per-request JavaScript readdir, the native one-pass scan and the persistent descriptor
 * index (one implementation each, one file each). Everything else about a process (stat,
 * status, cmdline) the table reads itself.
 */
import type { OpenFd } from './types.js';

/** One descriptor remembered as holding an inode, to be re-checked before it is believed. */
export interface Holder {
  readonly pid: number;
  readonly fd: number;
  /**
   * The link text at scan time, compared on re-validation; undefined for pipes found by
   * native code, which reports inodes, not link text: those are re-validated by inode.
   */
  readonly link: string | undefined;
}

/** A socket or pipe descriptor as read from `/proc/PID/fd`, with its link text. */
export interface LinkedFd {
  readonly fd: OpenFd;
  readonly link: string;
}

/**
 * The descriptors of one snapshot. The table re-checks every holder a source returns (one
 * readlink each), so a source may answer from a scan made earlier in the same snapshot.
 */
export interface DescriptorSource {
  /** The descriptors remembered as holding `inode`; the first call of a snapshot scans (or refreshes). */
  holders(inode: number): readonly Holder[];
  /** Which of `holders(inode)` are still live, so a source that owns its snapshot may drop the rest. */
  retain(inode: number, live: readonly Holder[]): void;
  /** A process's socket and pipe descriptors as this snapshot read them, or undefined when it has not (the table reads them). */
  fds(pid: number): readonly OpenFd[] | undefined;
  /** Forgets the snapshot: the next `holders` scans (or refreshes) again. */
  forget(): void;
}

/**
 * A source whose snapshot is a holder index built by one scan of every process and owned by
 * this table alone, so holders found dead are pruned from it.
 */
export abstract class ScanningDescriptorSource implements DescriptorSource {
  #index: Map<number, Holder[]> | undefined;

  /** Reads every process's descriptors once: the holder index of this snapshot. */
  protected abstract scan(): Map<number, Holder[]>;

  holders(inode: number): readonly Holder[] {
    this.#index ??= this.scan();
    return this.#index.get(inode) ?? [];
  }

  retain(inode: number, live: readonly Holder[]): void {
    if (this.#index === undefined) return;
    if (live.length === 0) this.#index.delete(inode);
    else this.#index.set(inode, [...live]);
  }

  fds(_pid: number): readonly OpenFd[] | undefined {
    return undefined;
  }

  forget(): void {
    this.#index = undefined;
  }
}

/** Appends `item` to the list `map` holds under `key`, starting the list if there is none. */
export function pushTo<K, V>(map: Map<K, V[]>, key: K, item: V): void {
  const list = map.get(key);
  if (list === undefined) map.set(key, [item]);
  else list.push(item);
}
