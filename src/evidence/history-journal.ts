/**
 * The history journal (issue 14, "Storing it"): every outbound TCP connection the recorder
 * saw, kept beside the ledger in hash-chained segment files (history-files.ts), bounded by a
 * retention time and a size cap, with an in-memory index (history-index.ts) so that a request
 * about a closed connection is answered without reading more than its own entry.
 *
 * Loss is evidence: the journal writes to the LEDGER (whose entries are MACed once a key is
 * installed) every segment it seals (`history-sealed`), every segment it drops
 * (`history-dropped`, with the hash the kept entries chain onto), the head at each clean stop
 * (`history-checkpoint`), and every gap the daemon reports or it finds itself
 * (`history-gap`): the time the recorder was off between two runs, events lost in the kernel.
 */
import { closeSync, chmodSync, ftruncateSync, mkdirSync, openSync, readSync, unlinkSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { StoreWriteError } from '../errors.js';
import type { Endpoint } from '../host/types.js';
import type { HistoryConnection, HistoryLookup } from './history-entry.js';
import {
  formatHistoryLine,
  formatHistorySegmentName,
  formatTupleKey,
  historyDirOf,
  listHistorySegments,
  parseHistoryLine,
  scanHistoryIndexFields,
  toHistoryConnection,
  type HistoryAppendItem,
  type HistoryEntryBody,
  type HistoryIndexFields,
  type HistoryLineEntry,
} from './history-files.js';
import { HistoryIndex, INDEX_KIND } from './history-index.js';
import type { SaveCategory } from './record.js';
import { syncDirectorySync, writeAllSync } from './durable-file.js';
import { visitLinesForward } from './line-reader.js';
import { matchesHistoryFilter, type HistoryFilter } from './history-read.js';
import { GENESIS_HASH, hashLine, type LedgerEntry, type LedgerEntryInput } from './ledger-format.js';

/** Defaults of the journal's bounds (`--history-retention`, `--history-max-bytes`). */
export const HISTORY_DEFAULTS = {
  retentionMs: 24 * 3600 * 1000,
  maxBytes: 1024 * 1024 * 1024,
  maxEntries: 2_000_000,
  segmentBytes: 16 * 1024 * 1024,
  pruneIntervalMs: 60 * 1000,
} as const;

/** Where the journal writes what happened to it: the store's ledger. */
export interface HistoryLedger {
  append(input: LedgerEntryInput): Promise<LedgerEntry>;
}

/** Options of {@link HistoryJournal.open}. */
export interface HistoryJournalOptions {
  readonly ledger: HistoryLedger;
  /** Segments whose last entry is older than this are dropped (default 24 h). */
  readonly retentionMs?: number;
  /** The oldest segments are dropped while all together hold more (default 1 GiB). */
  readonly maxBytes?: number;
  /**
   * ... or more entries than this (default 2 000 000): the in-memory index costs about 47 bytes
   * an entry, and small entries (connections recorded without capture, under a flood) would
   * otherwise let 1 GiB of journal hold five times as many.
   */
  readonly maxEntries?: number;
  /** A new segment is started once the current one holds this much (default 16 MiB, at most half of maxBytes). */
  readonly segmentBytes?: number;
  /** How often retention is applied besides after each new segment (default 60 s; 0: only then and by `prune`). */
  readonly pruneIntervalMs?: number;
  /** The present (tests); default `Date.now`. */
  readonly now?: () => number;
  /**
   * `--save`: what SV records keep applies to the captures too: without `processes` no
   * ancestry, without `cmdline` no command lines, without `sockets` no upstream candidates.
   */
  readonly save?: readonly SaveCategory[];
}

/** Why history is incomplete for a while (a `history-gap` ledger entry). */
export interface HistoryGap {
  readonly reason: 'ring-buffer-full' | 'unattributed' | 'recursion' | 'recorder-off' | 'overload' | 'write-failed';
  readonly count?: number;
  /** Milliseconds since the epoch. */
  readonly from: number;
  readonly to: number;
  /** Free text for the investigator (why the recorder was off, ...). */
  readonly note?: string;
}

/** What {@link HistoryJournal.append} did with a batch. */
export interface HistoryAppendResult {
  /** The connections of the batch's `open` items, in order, as now durably recorded. */
  readonly opened: readonly HistoryConnection[];
  /** `close` items whose connection the journal does not hold (opened before the recorder, or dropped). */
  readonly unmatchedCloses: number;
}

interface Segment {
  readonly path: string;
  readonly name: string;
  readonly firstSeq: number;
  lastSeq: number;
  lastHash: string;
  firstTime: number | undefined;
  lastTime: number | undefined;
  bytes: number;
}

interface Pending {
  readonly items: readonly HistoryAppendItem[];
  readonly resolve: (result: HistoryAppendResult) => void;
  readonly reject: (error: unknown) => void;
}

const NOOP = (): void => undefined;

/** The journal of one store, owned by the daemon that holds the store's lock. Implements {@link HistoryLookup}. */
export class HistoryJournal implements HistoryLookup {
  readonly dir: string;
  readonly #ledger: HistoryLedger;
  readonly #retentionMs: number;
  readonly #maxBytes: number;
  readonly #maxEntries: number;
  readonly #segmentBytes: number;
  readonly #now: () => number;
  readonly #save: ReadonlySet<SaveCategory> | undefined;
  readonly #index: HistoryIndex;
  /** Oldest first; the last is the one written (unless `#rotated`). */
  #segments: Segment[];
  /** The last segment is sealed: the next write starts a new file. */
  #rotated = false;
  #handle: FileHandle | undefined;
  #seq: number;
  #prev: string;
  #queue: Pending[] = [];
  #flushing: Promise<void> | undefined;
  /** Retention runs one at a time, and never during a flush. */
  #exclusive: Promise<void> = Promise.resolve();
  #readers = new Map<string, number>();
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  private constructor(dir: string, options: HistoryJournalOptions, state: { segments: Segment[]; index: HistoryIndex; seq: number; prev: string }) {
    this.dir = dir;
    this.#ledger = options.ledger;
    this.#retentionMs = options.retentionMs ?? HISTORY_DEFAULTS.retentionMs;
    this.#maxBytes = options.maxBytes ?? HISTORY_DEFAULTS.maxBytes;
    this.#maxEntries = options.maxEntries ?? HISTORY_DEFAULTS.maxEntries;
    this.#segmentBytes = Math.min(options.segmentBytes ?? HISTORY_DEFAULTS.segmentBytes, Math.floor(this.#maxBytes / 2));
    this.#now = options.now ?? Date.now;
    this.#save = options.save === undefined ? undefined : new Set(options.save);
    this.#segments = state.segments;
    this.#index = state.index;
    this.#seq = state.seq;
    this.#prev = state.prev;
  }

  /**
   * Opens (creating `<store>/history/`, mode 0700) the journal of `storeDir` and rebuilds its
   * index by reading every segment once. A partial last line (a crash in a write) is cut off:
   * it was never acknowledged. The time since the last entry (the `stop` entry of a clean
   * stop, else the last one written before a crash) is written to the ledger as a
   * `recorder-off` gap, and retention is applied.
   */
  static async open(storeDir: string, options: HistoryJournalOptions): Promise<HistoryJournal> {
    const dir = historyDirOf(storeDir);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    // Every outbound connection of every user: only root may read it.
    chmodSync(dir, 0o700);
    const index = new HistoryIndex(1);
    const segments: Segment[] = [];
    let seq = 0;
    let prev = GENESIS_HASH;
    let last: HistoryIndexFields | undefined;
    let discarded: Buffer | undefined;
    for (const file of listHistorySegments(storeDir)) {
      const segment: Segment = { path: file.path, name: file.name, firstSeq: file.firstSeq, lastSeq: file.firstSeq - 1, lastHash: prev, firstTime: undefined, lastTime: undefined, bytes: 0 };
      let lastLine: { offset: number; length: number } | undefined;
      let partial: { bytes: Buffer; offset: number } | undefined;
      visitLinesForward(
        file.path,
        (line) => {
          if (!line.complete) {
            partial = { bytes: line.bytes, offset: line.offset };
            return false;
          }
          lastLine = { offset: line.offset, length: line.bytes.length };
          segment.bytes = line.end;
          const entry = scanHistoryIndexFields(line.bytes, 0, line.bytes.length);
          if (entry === undefined || entry.seq <= seq) return true; // damage: `stopctl verify` reports it
          seq = entry.seq;
          segment.lastSeq = seq;
          const time = Date.parse(entry.time);
          segment.firstTime ??= time;
          segment.lastTime = time;
          last = entry;
          addToIndex(index, entry, line.offset);
          return true;
        },
        { partialLast: 'include', chunkBytes: 4 * 1024 * 1024 },
      );
      // Only the last line's hash is needed: the next entry's prev, and the segment's anchor.
      if (lastLine !== undefined) prev = hashLine(readLine(file.path, lastLine.offset, lastLine.length));
      segment.lastHash = prev;
      if (partial !== undefined && file.active) {
        // A crash in the middle of a write: cut it off (only the active file is written).
        discarded = partial.bytes;
        truncateFile(file.path, partial.offset);
      }
      segments.push(segment);
    }
    const journal = new HistoryJournal(dir, options, { segments, index, seq, prev });
    if (last !== undefined) {
      const from = Date.parse(last.time);
      await journal.noteGap({
        reason: 'recorder-off',
        from,
        to: journal.#now(),
        note:
          last.kind === 'stop'
            ? 'the daemon was stopped: connections opened meanwhile were not recorded'
            : `the journal ended without a clean stop (a crash or a kill) after seq ${last.seq}: connections of this period were not recorded${discarded === undefined ? '' : `; a partial entry of ${discarded.length} bytes was cut off its end`}`,
      });
    }
    await journal.prune();
    const interval = options.pruneIntervalMs ?? HISTORY_DEFAULTS.pruneIntervalMs;
    if (interval > 0) {
      journal.#timer = setInterval(() => {
        journal.prune().catch(NOOP);
      }, interval);
      journal.#timer.unref();
    }
    return journal;
  }

  /** Segments, bytes on disk, entries kept and the index's memory. */
  get usage(): { readonly segments: number; readonly bytes: number; readonly firstSeq: number; readonly lastSeq: number; readonly indexBytes: number } {
    return {
      segments: this.#segments.length,
      bytes: this.#segments.reduce((sum, segment) => sum + segment.bytes, 0),
      firstSeq: this.#index.firstSeq,
      lastSeq: this.#seq,
      indexBytes: this.#index.bytes,
    };
  }

  /**
   * Appends a batch of opens and closes and resolves once it is on disk. Batches that arrive
   * while one is being synced are written and synced together (group commit): one fdatasync
   * per round however many events arrive. A close is matched to the latest open of its tuple
   * not yet closed. A failed write rejects the batch and is noted in the ledger as a
   * `write-failed` gap; the file is cut back so the chain stays whole.
   */
  append(items: readonly HistoryAppendItem[]): Promise<HistoryAppendResult> {
    if (this.#closed) return Promise.reject(new StoreWriteError('Cannot write to the history journal: it is closed'));
    return new Promise((resolve, reject) => {
      this.#queue.push({ items, resolve, reject });
      this.#flushing ??= this.#flush();
    });
  }

  async #flush(): Promise<void> {
    let sealed = false;
    while (this.#queue.length > 0) {
      const release = await this.#lock();
      const batch = this.#queue;
      this.#queue = [];
      try {
        // The written segment is full: seal it (in the ledger) and start the next one.
        const active = this.#segments.at(-1);
        if (active !== undefined && !this.#rotated && active.bytes >= this.#segmentBytes) {
          await this.#seal(active).catch(NOOP);
          sealed = true;
        }
        await this.#writeBatch(batch);
      } finally {
        release();
      }
    }
    this.#flushing = undefined;
    // A new segment: apply the size cap now rather than at the next interval.
    if (sealed && !this.#closed) this.prune().catch(NOOP);
  }

  async #writeBatch(batch: readonly Pending[]): Promise<void> {
    const nowMs = this.#now();
    const time = new Date(nowMs).toISOString();
    const lines: string[] = [];
    const entries: HistoryLineEntry[] = [];
    const opened: HistoryConnection[][] = [];
    const unmatched: number[] = [];
    let seq = this.#seq;
    let prev = this.#prev;
    // Closes may refer to opens of the same batch, not yet in the index.
    const batchOpens = new Map<string, number>();
    const closedInBatch = new Set<number>();
    const push = (body: HistoryEntryBody): HistoryLineEntry => {
      seq += 1;
      const line = formatHistoryLine({ seq, time, prev }, body);
      const entry = { seq, time, prev, ...body } as HistoryLineEntry;
      lines.push(line);
      entries.push(entry);
      prev = hashLine(line);
      return entry;
    };
    for (const pending of batch) {
      const mine: HistoryConnection[] = [];
      let lost = 0;
      for (const item of pending.items) {
        if (item.kind === 'open') {
          const entry = push({ kind: 'open', ...limitCapture(item.connection, this.#save) });
          batchOpens.set(formatTupleKey(item.connection.local, item.connection.remote), entry.seq);
          mine.push({ ...item.connection, seq: entry.seq });
          continue;
        }
        const key = formatTupleKey(item.local, item.remote);
        const inBatch = batchOpens.get(key);
        const openSeq = inBatch !== undefined && !closedInBatch.has(inBatch) ? inBatch : this.#findOpenToClose(item.local, item.remote, item.socket);
        if (openSeq === undefined || closedInBatch.has(openSeq)) {
          lost += 1;
          continue;
        }
        closedInBatch.add(openSeq);
        push({ kind: 'close', open: openSeq, closedAt: new Date(item.closedAt).toISOString(), socket: item.socket });
      }
      opened.push(mine);
      unmatched.push(lost);
    }
    if (lines.length === 0) {
      batch.forEach((pending, index) => pending.resolve({ opened: opened[index] ?? [], unmatchedCloses: unmatched[index] ?? 0 }));
      return;
    }
    let segment: Segment | undefined;
    let start = 0;
    try {
      segment = await this.#activeSegment(this.#seq + 1);
      start = segment.bytes;
      const bytes = Buffer.from(lines.map((line) => `${line}\n`).join(''), 'utf8');
      writeAllSync(this.#requireHandle().fd, bytes);
      await this.#requireHandle().datasync();
    } catch (error) {
      if (segment !== undefined) truncateFile(segment.path, start);
      const rejection = new StoreWriteError(`Cannot write to the history journal ${this.dir}: ${(error as Error).message}`, { cause: error });
      for (const pending of batch) pending.reject(rejection);
      const count = entries.filter((entry) => entry.kind === 'open').length;
      await this.noteGap({ reason: 'write-failed', count, from: nowMs, to: nowMs, note: `the journal could not be written: ${(error as Error).message}` }).catch(NOOP);
      return;
    }
    let offset = start;
    for (const [index, entry] of entries.entries()) {
      addToIndex(this.#index, entry, offset);
      offset += Buffer.byteLength(lines[index] ?? '') + 1;
    }
    segment.bytes = offset;
    segment.lastSeq = seq;
    segment.lastHash = prev;
    segment.firstTime ??= nowMs;
    segment.lastTime = nowMs;
    this.#seq = seq;
    this.#prev = prev;
    batch.forEach((pending, index) => pending.resolve({ opened: opened[index] ?? [], unmatchedCloses: unmatched[index] ?? 0 }));
  }

  /** The latest open entry of this tuple that is not closed (and, when the socket is known, was that socket). */
  #findOpenToClose(local: Endpoint, remote: Endpoint, socket: string): number | undefined {
    for (let seq = this.#index.latestWithKey(formatTupleKey(local, remote)); seq !== undefined; seq = this.#index.previousWithKey(seq)) {
      const known = this.#index.entry(seq);
      if (known === undefined || !Number.isNaN(known.closedAt)) return undefined;
      const entry = this.#readEntry(seq);
      if (entry?.kind === 'open' && sameTuple(entry, local, remote)) return socket === '' || entry.socket === socket ? seq : undefined;
    }
    return undefined;
  }

  /** The segment to write entry `nextSeq` to, starting a new file after a rotation (or the first). */
  async #activeSegment(nextSeq: number): Promise<Segment> {
    const current = this.#segments.at(-1);
    if (current !== undefined && !this.#rotated && this.#handle !== undefined) return current;
    if (current !== undefined && !this.#rotated) {
      this.#handle = await open(current.path, 'a', 0o600);
      return current;
    }
    const name = formatHistorySegmentName(nextSeq);
    const segment: Segment = { path: join(this.dir, name), name: `history/${name}`, firstSeq: nextSeq, lastSeq: nextSeq - 1, lastHash: this.#prev, firstTime: undefined, lastTime: undefined, bytes: 0 };
    const old = this.#handle;
    this.#handle = await open(segment.path, 'a', 0o600);
    await old?.close().catch(NOOP);
    // The new file must survive a crash before the entries written to it.
    syncDirectorySync(this.dir, { bestEffort: true });
    this.#segments.push(segment);
    this.#rotated = false;
    return segment;
  }

  #requireHandle(): FileHandle {
    if (this.#handle === undefined) throw new Error('the history segment is not open');
    return this.#handle;
  }

  /** The latest recorded connection with exactly this 4-tuple (the newest when the tuple was reused), read from disk. */
  findConnection(local: Endpoint, remote: Endpoint): HistoryConnection | undefined {
    for (let seq = this.#index.latestWithKey(formatTupleKey(local, remote)); seq !== undefined; seq = this.#index.previousWithKey(seq)) {
      const entry = this.#readEntry(seq);
      if (entry?.kind === 'open' && sameTuple(entry, local, remote)) return this.#connectionOf(entry);
    }
    return undefined;
  }

  /** The recorded connection whose `open` entry has this seq (what an ID token points to), or undefined. */
  getConnection(seq: number): HistoryConnection | undefined {
    const entry = this.#readEntry(seq);
    return entry?.kind === 'open' ? this.#connectionOf(entry) : undefined;
  }

  /**
   * Recorded connections passing `filter`, oldest first. A time range starts at the first
   * entry written at or after `since` (a bisection of the index); entries are read from disk.
   */
  list(filter: HistoryFilter = {}): HistoryConnection[] {
    const found: HistoryConnection[] = [];
    const limit = filter.limit ?? Number.POSITIVE_INFINITY;
    // An entry is written after its connect: from `since` on, all candidates lie at or after it.
    const first = filter.since === undefined ? this.#index.firstSeq : this.#index.firstSeqAtOrAfter(filter.since);
    for (let seq = first; seq <= this.#seq && found.length < limit; seq += 1) {
      if (this.#index.entry(seq)?.kind !== INDEX_KIND.open) continue;
      const entry = this.#readEntry(seq);
      if (entry?.kind !== 'open') continue;
      const connection = this.#connectionOf(entry);
      if (matchesHistoryFilter(connection, filter)) found.push(connection);
    }
    return found;
  }

  #connectionOf(entry: HistoryLineEntry & { kind: 'open' }): HistoryConnection {
    const closedAt = this.#index.entry(entry.seq)?.closedAt ?? Number.NaN;
    return toHistoryConnection(entry, Number.isNaN(closedAt) ? null : new Date(closedAt).toISOString());
  }

  /** Reads the entry `seq` from its segment by the offset the index keeps. */
  #readEntry(seq: number): HistoryLineEntry | undefined {
    const known = this.#index.entry(seq);
    const segment = this.#segmentOf(seq);
    if (known === undefined || segment === undefined) return undefined;
    const next = seq < segment.lastSeq ? this.#index.entry(seq + 1) : undefined;
    const end = next !== undefined && next.offset > known.offset ? next.offset : segment.bytes;
    const length = end - known.offset;
    if (length <= 0) return undefined;
    const buffer = Buffer.alloc(length);
    let fd = this.#readers.get(segment.path);
    try {
      if (fd === undefined) {
        fd = openSync(segment.path, 'r');
        this.#readers.set(segment.path, fd);
      }
      readSync(fd, buffer, 0, length, known.offset);
    } catch {
      return undefined;
    }
    const newline = buffer.indexOf(0x0a);
    const entry = parseHistoryLine(buffer.toString('utf8', 0, newline < 0 ? length : newline));
    return entry?.seq === seq ? entry : undefined;
  }

  #segmentOf(seq: number): Segment | undefined {
    let low = 0;
    let high = this.#segments.length - 1;
    while (low <= high) {
      const middle = (low + high) >>> 1;
      const segment = this.#segments[middle];
      if (segment === undefined) return undefined;
      if (seq < segment.firstSeq) high = middle - 1;
      else if (seq > segment.lastSeq) low = middle + 1;
      else return segment;
    }
    return undefined;
  }

  /** Writes a gap to the ledger: a time range in which history is incomplete, and why. */
  async noteGap(gap: HistoryGap): Promise<void> {
    await this.#ledger.append({
      kind: 'history-gap',
      reason: gap.reason,
      ...(gap.count === undefined ? {} : { count: gap.count }),
      from: new Date(gap.from).toISOString(),
      to: new Date(gap.to).toISOString(),
      note: gap.note ?? describeGap(gap.reason),
    });
  }

  /**
   * Applies retention (`now` defaults to the present): seals the written segment when it is
   * full or its last entry is past retention, then drops the oldest sealed segments while they
   * are past retention or the journal is over its size cap. Each drop is noted in the ledger
   * (durably) before the file is deleted.
   */
  async prune(now = this.#now()): Promise<void> {
    const release = await this.#lock();
    try {
      const cutoff = now - this.#retentionMs;
      const active = this.#segments.at(-1);
      if (active !== undefined && !this.#rotated && active.lastSeq >= active.firstSeq && (active.bytes >= this.#segmentBytes || (active.lastTime ?? now) < cutoff)) {
        await this.#seal(active);
      }
      let total = this.usage.bytes;
      let entries = this.#index.lastSeq - this.#index.firstSeq + 1;
      for (;;) {
        const oldest = this.#segments[0];
        const sealed = oldest !== undefined && (this.#segments.length > 1 || this.#rotated);
        if (!sealed || oldest === undefined) break;
        const tooBig = total > this.#maxBytes;
        const tooMany = entries > this.#maxEntries;
        const tooOld = oldest.lastTime !== undefined && oldest.lastTime < cutoff;
        if (!tooBig && !tooMany && !tooOld) break;
        await this.#drop(oldest, tooBig ? 'history-max-bytes' : tooMany ? 'history-max-entries' : 'history-retention');
        total -= oldest.bytes;
        entries -= oldest.lastSeq - oldest.firstSeq + 1;
      }
    } finally {
      release();
    }
  }

  /** Waits for the writer or retention before it; the caller must call the function returned when done. */
  async #lock(): Promise<() => void> {
    const before = this.#exclusive;
    let release = NOOP;
    // Taken before awaiting, so that two waiters never both see the same release.
    this.#exclusive = new Promise((resolve) => (release = resolve));
    await before;
    return release;
  }

  async #seal(segment: Segment): Promise<void> {
    await this.#ledger.append({
      kind: 'history-sealed',
      segment: segment.name,
      firstSeq: segment.firstSeq,
      lastSeq: segment.lastSeq,
      lastHash: segment.lastHash,
      lastTime: segment.lastTime === undefined ? null : new Date(segment.lastTime).toISOString(),
      bytes: segment.bytes,
      note: `history segment ${segment.name} is complete; the hash of its last line anchors it in this ledger`,
    });
    this.#rotated = true;
    const handle = this.#handle;
    this.#handle = undefined;
    await handle?.close().catch(NOOP);
  }

  async #drop(segment: Segment, reason: 'history-max-bytes' | 'history-max-entries' | 'history-retention'): Promise<void> {
    const limit = reason === 'history-max-bytes' ? this.#maxBytes : reason === 'history-max-entries' ? this.#maxEntries : this.#retentionMs;
    const why =
      reason === 'history-max-bytes'
        ? `--history-max-bytes ${limit}`
        : reason === 'history-max-entries'
          ? `more than ${limit} entries, the bound of the in-memory index`
          : `--history-retention, older than ${Math.round(limit / 1000)} s`;
    await this.#ledger.append({
      kind: 'history-dropped',
      segment: segment.name,
      firstSeq: segment.firstSeq,
      lastSeq: segment.lastSeq,
      firstTime: segment.firstTime === undefined ? null : new Date(segment.firstTime).toISOString(),
      lastTime: segment.lastTime === undefined ? null : new Date(segment.lastTime).toISOString(),
      lastHash: segment.lastHash,
      bytes: segment.bytes,
      reason,
      limit,
      note:
        `history entries ${segment.firstSeq}-${segment.lastSeq} were deleted (${why}); ` +
        `the entry after seq ${segment.lastSeq} chains onto lastHash, so the journal is checked from there on`,
    });
    const fd = this.#readers.get(segment.path);
    if (fd !== undefined) closeSync(fd);
    this.#readers.delete(segment.path);
    try {
      unlinkSync(segment.path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
    this.#segments = this.#segments.filter((candidate) => candidate !== segment);
    if (this.#segments.length === 0) this.#rotated = true;
    this.#index.dropBefore(segment.lastSeq + 1);
  }

  /**
   * Writes what is queued, a `stop` entry, and a `history-checkpoint` in the ledger (close the
   * journal before the store), then closes the files. Idempotent.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer !== undefined) clearInterval(this.#timer);
    while (this.#flushing !== undefined) await this.#flushing;
    const release = await this.#lock();
    try {
      const segment = await this.#activeSegment(this.#seq + 1);
      const time = new Date(this.#now()).toISOString();
      const line = formatHistoryLine({ seq: this.#seq + 1, time, prev: this.#prev }, { kind: 'stop' });
      writeAllSync(this.#requireHandle().fd, Buffer.from(`${line}\n`));
      await this.#requireHandle().datasync();
      this.#seq += 1;
      this.#prev = hashLine(line);
      segment.lastSeq = this.#seq;
      segment.lastHash = this.#prev;
      segment.bytes += Buffer.byteLength(line) + 1;
      await this.#ledger.append({ kind: 'history-checkpoint', segment: segment.name, lastSeq: this.#seq, lastHash: this.#prev, note: 'the history journal was closed cleanly here' });
    } catch {
      // A full disk or a closed ledger: the next start notes a recorder-off gap from the last entry.
    } finally {
      release();
    }
    for (const fd of this.#readers.values()) closeSync(fd);
    this.#readers.clear();
    const handle = this.#handle;
    this.#handle = undefined;
    await handle?.close().catch(NOOP);
  }
}

/** A capture with what `--save` leaves out removed (the same categories as SV records). */
function limitCapture(connection: Omit<HistoryConnection, 'seq'>, save: ReadonlySet<SaveCategory> | undefined): Omit<HistoryConnection, 'seq'> {
  if (save === undefined) return connection;
  const ancestry = !save.has('processes')
    ? []
    : save.has('cmdline')
      ? connection.ancestry
      : connection.ancestry.map((process) => {
          // eslint-disable-next-line @typescript-eslint/no-unused-vars
          const { cmdlineTruncated: _truncated, ...rest } = process;
          return { ...rest, cmdline: [] };
        });
  return { ...connection, ancestry, upstream: save.has('sockets') ? connection.upstream : [] };
}

function addToIndex(index: HistoryIndex, entry: HistoryIndexFields, offset: number): void {
  const time = Date.parse(entry.time);
  if (entry.kind === 'open') {
    const closed = entry.closedAt === null ? Number.NaN : Date.parse(entry.closedAt);
    index.add(entry.seq, { kind: 'open', offset, time, key: formatTupleKey(entry.local, entry.remote), closedAt: closed });
  } else if (entry.kind === 'close') {
    index.add(entry.seq, { kind: 'close', offset, time, open: entry.open, closedAt: Date.parse(entry.closedAt) });
  } else {
    index.add(entry.seq, { kind: 'stop', offset, time });
  }
}

function sameTuple(entry: { local: Endpoint; remote: Endpoint }, local: Endpoint, remote: Endpoint): boolean {
  return formatTupleKey(entry.local, entry.remote) === formatTupleKey(local, remote);
}

function describeGap(reason: HistoryGap['reason']): string {
  switch (reason) {
    case 'ring-buffer-full':
      return 'a kernel ring of the recorder was full: connection events of this period were lost';
    case 'unattributed':
      return 'connection events of this period could not be attributed to a process (their connect was before the recorder started)';
    case 'recursion':
      return 'the kernel skipped the recorder for some TCP state changes of this period (it was already running on that CPU): connections of this period may lack their open or close, or show no established time';
    case 'recorder-off':
      return 'the connection recorder was off: connections of this period were not recorded';
    case 'overload':
      return 'the daemon was overloaded: connection events of this period were not recorded';
    case 'write-failed':
      return 'the history journal could not be written: connections of this period were not recorded';
  }
}

function readLine(path: string, offset: number, length: number): string {
  const buffer = Buffer.alloc(length);
  const fd = openSync(path, 'r');
  try {
    readSync(fd, buffer, 0, length, offset);
  } finally {
    closeSync(fd);
  }
  return buffer.toString('utf8');
}

function truncateFile(path: string, length: number): void {
  try {
    const fd = openSync(path, 'r+');
    try {
      ftruncateSync(fd, length);
    } finally {
      closeSync(fd);
    }
  } catch {
    // Cannot cut: verify reports the partial line.
  }
}
