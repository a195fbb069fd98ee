/**
 * The descriptor source over a {@link PersistentFdIndex} kept between requests: a snapshot
 * starts with one incremental refresh of the index instead of a scan of every process.
 */
import { pushTo, type DescriptorSource, type Holder, type LinkedFd } from './descriptor-source.js';
import { linkOfNativeFd } from './native-scan-descriptor-source.js';
import type { PersistentFdIndex } from './persistent-fd-index.js';
import type { ProcFdReader } from './proc-fd-reader.js';
import type { OpenFd } from './types.js';

/** What a snapshot read around the persistent index: the processes it could not read, as retryUnreadable ended them. */
interface IndexedSnapshot {
  readonly retried: ReadonlyMap<number, readonly LinkedFd[]>;
  /** The same descriptors by inode. */
  readonly retriedHolders: ReadonlyMap<number, readonly Holder[]>;
}

/** Answers from a persistent index, refreshed at the first holder question of each snapshot. */
export class IndexedDescriptorSource implements DescriptorSource {
  readonly #index: PersistentFdIndex;
  readonly #reader: ProcFdReader;
  /** Set once the index was refreshed for this snapshot. */
  #snapshot: IndexedSnapshot | undefined;

  constructor(index: PersistentFdIndex, reader: ProcFdReader) {
    this.#index = index;
    this.#reader = reader;
  }

  holders(inode: number): readonly Holder[] {
    const snapshot = this.#refresh();
    const remembered: Holder[] = this.#index
      .holders(inode)
      .map(({ pid, fd, kind }) => ({ pid, fd, link: linkOfNativeFd({ kind, inode }) }));
    remembered.push(...(snapshot.retriedHolders.get(inode) ?? []));
    return remembered;
  }

  retain(): void {
    // The index is shared with later requests: the table filters what it returns, never prunes it.
  }

  fds(pid: number): readonly OpenFd[] | undefined {
    if (this.#snapshot === undefined) return undefined;
    return this.#snapshot.retried.get(pid)?.map((entry) => entry.fd) ?? this.#index.fds(pid);
  }

  forget(): void {
    // The index itself is kept: the next holders() refreshes it.
    this.#snapshot = undefined;
  }

  /** Refreshes the index once per snapshot, and retries what it could not read. */
  #refresh(): IndexedSnapshot {
    if (this.#snapshot !== undefined) return this.#snapshot;
    this.#index.refresh();
    const { denied: refused, failed } = this.#index.unreadable();
    const retried = this.#reader.retryUnreadable(refused, failed);
    const retriedHolders = new Map<number, Holder[]>();
    for (const [pid, fds] of retried) {
      for (const { fd, link } of fds) pushTo(retriedHolders, fd.inode, { pid, fd: fd.fd, link });
    }
    this.#snapshot = { retried, retriedHolders };
    return this.#snapshot;
  }
}
