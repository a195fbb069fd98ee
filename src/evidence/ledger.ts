import { existsSync, mkdirSync, renameSync, unlinkSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { StoreWriteError } from '../errors.js';
import { syncDirectorySync, writeAllSync } from './durable-file.js';
import { evolveKey, evolveKeyBy, forgetKey, ledgerKeyId, readKeyState, saveKeyState, writeKeyState, type LedgerKeyState } from './forward-mac.js';
import {
  GENESIS_HASH,
  formatLedgerLine,
  hashLine,
  parseLedgerLine,
  type EntryInput,
  type ForeignEntryInput,
  type LedgerEntry,
  type LedgerEntryInput,
  type RecoveryEntryInput,
  type SegmentDroppedEntryInput,
  type SegmentStartEntryInput,
} from './ledger-format.js';
import { describeOpenRecovery, findOrphanRecords, MAX_LISTED, readInstallKey, recoverTail, unlinkIfPresent } from './ledger-recovery.js';
import { formatSegmentName, listLedgerSegments, readLedgerLines, segmentsDirOf, summarizeSegment } from './ledger-segments.js';

/** What the queue holds: a known kind, or a foreign one (see ledger-format.ts `EntryInput`). */
type AnyEntryInput = LedgerEntryInput | ForeignEntryInput;

/** The members of the recovery entry written at open, gathered as the checks run. */
type OpenNotes = { -readonly [K in Exclude<keyof RecoveryEntryInput, 'kind' | 'note'>]?: RecoveryEntryInput[K] };

/** An entry that is on disk, with its exact line (without newline). */
export interface DurableLine {
  readonly entry: LedgerEntry;
  readonly line: string;
}

/** Options of {@link Ledger.open}. */
export interface LedgerOptions {
  /**
   * Called after each group commit with the entries now on disk, in order (remote
   * forwarding, quota accounting). Must not throw; it runs on the append path, so it should
   * only queue work.
   */
  readonly onDurable?: (entries: readonly DurableLine[]) => void;
  /**
   * Where the forward-secure key state lives (`<store>/ledger.key`). When that file exists, or
   * `installKeyFile` installs one, every entry gets a MAC and the key evolves (forward-mac.ts).
   */
  readonly keyStatePath?: string;
  /**
   * An initial key A_0 made by `stopctl keygen` (`stopd --ledger-key FILE`): moved into the key
   * state (FILE is deleted once the `key-installed` entry is on disk). A missing FILE is fine
   * when the store already holds the key state (the key was moved by an earlier start); a key
   * other than the installed one is refused (rekeying is not supported).
   */
  readonly installKeyFile?: string;
  /**
   * The records directory: at open, temporary files of interrupted record writes are removed
   * and records whose reply entry never reached the ledger are named in a `recovery` entry.
   */
  readonly recordsDir?: string;
  /** Segments and retention (ledger-segments.ts); without it the ledger is one file that grows for ever. */
  readonly retention?: LedgerRetention;
}

/**
 * How the ledger is cut into segments and which old ones are dropped (`--ledger-segment-bytes`,
 * `--ledger-max-bytes`, `--ledger-retention`). Drops are decided when entries are written
 * (and at open), oldest segment first; the active segment is never dropped.
 */
export interface LedgerRetention {
  /** The active file is rotated once it holds at least this many bytes. */
  readonly segmentBytes: number;
  /** Drop the oldest segments while all files together hold more than this. */
  readonly maxBytes?: number;
  /** Drop segments whose last entry is older than this. */
  readonly maxAgeMs?: number;
  /** The present (tests); default `Date.now`. */
  readonly now?: () => number;
}

/** A rotated segment as the writer tracks it. */
interface RotatedSegment {
  readonly path: string;
  readonly name: string;
  readonly firstSeq: number;
  readonly lastSeq: number;
  readonly lastHash: string;
  readonly lastTime: number | undefined;
  readonly bytes: number;
  dropping: boolean;
}

/** An append waiting for its group commit. */
interface Pending {
  readonly input: AnyEntryInput;
  readonly time: string;
  readonly resolve: (entry: LedgerEntry) => void;
  readonly reject: (error: unknown) => void;
  /** Written by the ledger itself (failure notes, segment entries): not a caller's request. */
  readonly internal?: boolean;
}

/** What went wrong in failed group commits, written in the next successful one. */
interface FailureNote {
  failures: number;
  lastError: string;
  /** Entries that reached the file although their write failed (their requests got errors). */
  rejectedSeqs: number[];
  /** Entries that did not reach the file. */
  lostEntries: number;
  /** SV records whose reply entry did not reach the file: their tokens were never sent. */
  unrepliedRecords: string[];
}

const NOOP = (): void => undefined;

/**
 * The append-only, hash-chained ledger (DESIGN "Evidence"). Every entry carries the hash of
 * the previous line, so a deleted, altered or reordered line breaks the chain; with a key
 * installed every entry also carries a forward-secure MAC (forward-mac.ts).
 *
 * `append` resolves only once the entry is on disk (fdatasync): the daemon awaits it before
 * replying (DESIGN duty 9). Appends that arrive while a sync is in flight are written and
 * synced together (group commit), so concurrent requests share one fsync. Sequence numbers,
 * `prev` and MACs are assigned when a batch is written, so a failed write (a full disk) leaves
 * no gap: its entries are rejected, the next batch reuses their numbers, and a `recovery`
 * entry in that next batch says what failed.
 */
export class Ledger {
  readonly path: string;
  #handle: FileHandle | undefined;
  #seq: number;
  #prev: string;
  #queue: Pending[] = [];
  #flushing: Promise<void> | undefined;
  #closed = false;
  /** The key of entry `#key.seq + 1`, when keyed; `#key.seq === #seq` between commits. */
  #key: LedgerKeyState | undefined;
  #keyStateOnDisk = true;
  #failure: FailureNote | undefined;
  readonly #retention: LedgerRetention | undefined;
  /** Rotated segments still on disk, oldest first. */
  #segments: RotatedSegment[];
  #activeBytes: number;
  /** Seq of the active file's first entry; undefined while it holds none. */
  #activeFirstSeq: number | undefined;
  /** Time (ms) of the last entry written. */
  #lastTime: number | undefined;
  /** A segment-start entry owed at the head of the active file (written with the next batch). */
  #pendingStart: SegmentStartEntryInput | undefined;

  readonly #onDurable: ((entries: readonly DurableLine[]) => void) | undefined;
  readonly #keyStatePath: string | undefined;

  private constructor(
    path: string,
    handle: FileHandle,
    start: { seq: number; prev: string; key: LedgerKeyState | undefined; time: number | undefined; segments: RotatedSegment[] },
    options: LedgerOptions,
  ) {
    this.#onDurable = options.onDurable;
    this.#keyStatePath = options.keyStatePath;
    this.#retention = options.retention;
    this.path = path;
    this.#handle = handle;
    this.#seq = start.seq;
    this.#prev = start.prev;
    this.#key = start.key;
    this.#lastTime = start.time;
    this.#segments = start.segments;
    const active = summarizeSegment(path);
    this.#activeBytes = active.bytes;
    this.#activeFirstSeq = active.first?.seq;
    const last = start.segments.at(-1);
    // A crash between a rotation and the first write of the new file: the start entry is still owed.
    if (active.first === undefined && last !== undefined) this.#pendingStart = this.#describeStart(last);
  }

  /**
   * Opens (creating if needed, mode 0600) the ledger at `path` and recovers from a crash:
   * - a partial last line, left by a crash in the middle of a write, is cut off and its bytes
   *   kept in a `recovery` entry, so nothing is lost and the chain stays verifiable (its content
   *   was never acknowledged: the reply that depended on it was not sent);
   * - with `recordsDir`, temporary record files are removed and records written just before
   *   the crash whose reply entry never reached the ledger are named in that entry
   *   (`unrepliedRecords`: their tokens were never sent), so `stopctl verify` accounts for them;
   * - with a key state, a key older than the ledger (a crash between the ledger's fsync and the
   *   key write) is evolved forward; a key state *ahead* of the ledger means acknowledged entries
   *   are gone, which is noted, and numbering continues after the key state's seq so the gap stays
   *   visible;
   * - with `installKeyFile`, the initial key is installed (a `key-installed` entry, MACed with it).
   */
  static async open(path: string, options: LedgerOptions = {}): Promise<Ledger> {
    const segments = readRotatedSegments(path);
    let tail = recoverTail(path);
    const newest = segments.at(-1);
    if (tail.seq === 0 && newest !== undefined) {
      // The active file is empty (just rotated): the chain goes on from the newest segment.
      tail = { seq: newest.lastSeq, prev: newest.lastHash, ...(newest.lastTime === undefined ? {} : { time: newest.lastTime }), ...(tail.partial === undefined ? {} : { partial: tail.partial }) };
    }
    const statePath = options.keyStatePath;
    let key = statePath === undefined ? undefined : readKeyState(statePath);
    let seq = tail.seq;
    const notes: OpenNotes = {};
    if (key !== undefined && statePath !== undefined) {
      if (key.seq > tail.seq) {
        notes.missingEntries = { from: tail.seq + 1, to: key.seq };
        seq = key.seq;
      } else if (key.seq < tail.seq) {
        // The entries after key.seq were MACed with keys this file still allows computing.
        const evolved = evolveKeyBy(key.key, tail.seq - key.seq);
        forgetKey(key.key);
        key = { ...key, seq: tail.seq, head: tail.prev, key: evolved };
        writeKeyState(statePath, key);
      }
    }
    let movedKeyFile: string | undefined;
    if (options.installKeyFile !== undefined) {
      if (statePath === undefined) throw new Error('a ledger key needs a key state path');
      const initial = readInstallKey(options.installKeyFile, key !== undefined);
      if (initial !== undefined) {
        const keyId = ledgerKeyId(initial);
        if (key === undefined) {
          key = { version: 1, keyId, installSeq: seq + 1, seq, head: tail.prev, key: initial };
          writeKeyState(statePath, key);
        } else if (key.keyId !== keyId) {
          forgetKey(initial);
          throw new Error(
            `the store already has a ledger key (key id ${key.keyId}), and ${options.installKeyFile} holds another (key id ${keyId}); start without --ledger-key`,
          );
        } else {
          forgetKey(initial);
        }
        movedKeyFile = options.installKeyFile;
      }
    }
    const handle = await open(path, 'a', 0o600);
    const ledger = new Ledger(path, handle, { seq, prev: tail.prev, key, time: tail.time, segments }, options);
    if (key !== undefined && key.installSeq > seq) {
      // A new key, or one whose key-installed entry a crash kept from the disk.
      await ledger.append({
        kind: 'key-installed',
        keyId: key.keyId,
        note: 'from this entry on, every entry carries a forward-secure MAC; verify with `stopctl verify --key` and the initial key kept off this host',
      });
    }
    if (movedKeyFile !== undefined) unlinkIfPresent(movedKeyFile);
    if (tail.partial !== undefined) notes.discarded = tail.partial.toString('base64');
    if (options.recordsDir !== undefined) {
      const orphans = findOrphanRecords(options.recordsDir, path, tail.time);
      if (orphans.removedTemporaryFiles.length > 0) notes.removedTemporaryFiles = orphans.removedTemporaryFiles;
      if (orphans.unrepliedRecords.length > 0) notes.unrepliedRecords = orphans.unrepliedRecords;
    }
    if (Object.keys(notes).length > 0) {
      await ledger.append({ kind: 'recovery', note: describeOpenRecovery(notes), ...notes });
    }
    // Segments past the retention limits (the limits may have been lowered since the last run).
    ledger.#planDrops();
    if (ledger.#queue.length > 0) {
      ledger.#flushing ??= ledger.#flush();
      await ledger.#flushing;
    }
    return ledger;
  }

  /** Rotated segments still on disk, and the bytes of all ledger files. */
  get usage(): { readonly segments: number; readonly bytes: number } {
    return { segments: this.#segments.length, bytes: this.#activeBytes + this.#segments.reduce((sum, segment) => sum + segment.bytes, 0) };
  }

  #describeStart(previous: RotatedSegment): SegmentStartEntryInput {
    return {
      kind: 'segment-start',
      previous: { segment: previous.name, firstSeq: previous.firstSeq, lastSeq: previous.lastSeq, lastHash: previous.lastHash },
      ...(this.#key === undefined ? {} : { keyId: this.#key.keyId, installSeq: this.#key.installSeq }),
      note: `the ledger goes on from ${previous.name}; this entry's prev is the hash of its last line (seq ${previous.lastSeq})`,
    };
  }

  /**
   * Renames the active file to a segment and starts a new one. A failure (a full disk, a name
   * taken) leaves the active file in place: the next batch tries again, and nothing is lost.
   */
  async #rotate(): Promise<void> {
    const firstSeq = this.#activeFirstSeq;
    if (firstSeq === undefined || this.#seq < firstSeq) return;
    const dir = segmentsDirOf(this.path);
    const target = join(dir, formatSegmentName(firstSeq));
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      if (existsSync(target)) return;
      renameSync(this.path, target);
    } catch {
      return;
    }
    const old = this.#requireHandle();
    this.#handle = await open(this.path, 'a', 0o600);
    await old.close().catch(NOOP);
    // The rename and the new file must survive a crash before the entries that follow them.
    // Best effort: on a file system without directory fsync the rename is still atomic.
    syncDirectorySync(dir, { bestEffort: true });
    syncDirectorySync(dirname(this.path), { bestEffort: true });
    const segment: RotatedSegment = {
      path: target,
      name: `${basename(dir)}/${formatSegmentName(firstSeq)}`,
      firstSeq,
      lastSeq: this.#seq,
      lastHash: this.#prev,
      lastTime: this.#lastTime,
      bytes: this.#activeBytes,
      dropping: false,
    };
    this.#segments.push(segment);
    this.#activeBytes = 0;
    this.#activeFirstSeq = undefined;
    this.#pendingStart = this.#describeStart(segment);
  }

  /**
   * Queues a `segment-dropped` entry for each oldest segment past the limits; the file is
   * deleted once its entry is durable, so a crash leaves a segment noted but present (it is
   * dropped again, harmlessly), never one gone without a note.
   */
  #planDrops(): void {
    const retention = this.#retention;
    if (retention === undefined) return;
    let total = this.usage.bytes;
    for (const segment of this.#segments) if (segment.dropping) total -= segment.bytes;
    const now = (retention.now ?? Date.now)();
    for (const segment of this.#segments) {
      if (segment.dropping) continue;
      const tooBig = retention.maxBytes !== undefined && total > retention.maxBytes;
      const tooOld = retention.maxAgeMs !== undefined && segment.lastTime !== undefined && segment.lastTime < now - retention.maxAgeMs;
      if (!tooBig && !tooOld) break;
      segment.dropping = true;
      total -= segment.bytes;
      const reason = tooBig ? 'ledger-max-bytes' : 'ledger-retention';
      const limit = tooBig ? (retention.maxBytes ?? 0) : (retention.maxAgeMs ?? 0);
      const input: SegmentDroppedEntryInput = {
        kind: 'segment-dropped',
        segment: segment.name,
        firstSeq: segment.firstSeq,
        lastSeq: segment.lastSeq,
        lastHash: segment.lastHash,
        lastTime: segment.lastTime === undefined ? null : new Date(segment.lastTime).toISOString(),
        bytes: segment.bytes,
        reason,
        limit,
        note:
          `entries ${segment.firstSeq}-${segment.lastSeq} were deleted by the ledger's retention (${reason === 'ledger-max-bytes' ? `--ledger-max-bytes ${limit}` : `--ledger-retention, older than ${Math.round(limit / 86_400_000)} days`}); ` +
          `the entry after seq ${segment.lastSeq} chains onto lastHash, so the ledger is checked from there on`,
      };
      this.#queue.push({
        input,
        time: new Date().toISOString(),
        internal: true,
        resolve: () => this.#removeSegment(segment),
        reject: () => {
          segment.dropping = false;
        },
      });
    }
  }

  #removeSegment(segment: RotatedSegment): void {
    try {
      unlinkSync(segment.path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
        // Noted as dropped but still there: verify still reads it; the next start drops it again.
        segment.dropping = false;
        return;
      }
    }
    this.#segments = this.#segments.filter((candidate) => candidate !== segment);
  }

  /**
   * Appends one entry and resolves when it is durably on disk. `input` is one of the kinds of
   * ledger-format.ts, typed by its `kind` (another literal kind is written as given).
   */
  append<K extends string>(input: { readonly kind: K } & EntryInput<K>): Promise<LedgerEntry> {
    if (this.#closed) {
      return Promise.reject(new StoreWriteError('Cannot write to the ledger: it is closed'));
    }
    return this.#enqueue(input);
  }

  #enqueue(input: AnyEntryInput): Promise<LedgerEntry> {
    const time = new Date().toISOString();
    return new Promise((resolve, reject) => {
      this.#queue.push({ input, time, resolve, reject });
      this.#flushing ??= this.#flush();
    });
  }

  async #flush(): Promise<void> {
    // Writes in a loop: entries queued during one write+sync go out together in the next.
    while (this.#queue.length > 0) {
      if (this.#retention !== undefined && this.#activeBytes >= this.#retention.segmentBytes && this.#pendingStart === undefined) {
        await this.#rotate();
      }
      const batch = this.#queue;
      this.#queue = [];
      const failure = this.#failure;
      const now = new Date().toISOString();
      const head: Pending[] = [];
      const startNote = this.#pendingStart;
      if (startNote !== undefined) head.push({ input: startNote, time: now, resolve: NOOP, reject: NOOP, internal: true });
      if (failure !== undefined) head.push({ input: describeFailure(failure), time: now, resolve: NOOP, reject: NOOP, internal: true });
      const items: Pending[] = head.length === 0 ? batch : [...head, ...batch];
      const start = { seq: this.#seq, prev: this.#prev };
      const built = this.#build(items);
      let text = '';
      try {
        text = built.lines.map((line) => line + '\n').join('');
        this.#write(text);
        await this.#requireHandle().datasync();
      } catch (error) {
        if (built.key !== undefined) forgetKey(built.key);
        const message = (error as Error).message;
        const rejection = new StoreWriteError(`Cannot write to the ledger ${this.path}: ${message}`, { cause: error });
        for (const p of batch) p.reject(rejection);
        this.#recoverFromFailure(start, items, { message });
        await this.#saveKeyState();
        continue;
      }
      this.#seq = built.seq;
      this.#prev = built.prev;
      this.#activeBytes += Buffer.byteLength(text);
      this.#activeFirstSeq ??= start.seq + 1;
      this.#lastTime = Date.parse(items.at(-1)?.time ?? now);
      if (startNote !== undefined) this.#pendingStart = undefined;
      if (failure !== undefined) this.#failure = undefined;
      this.#commitKey(built.key, built.seq, built.prev);
      items.forEach((p, index) => p.resolve(built.entries[index] as LedgerEntry));
      this.#notify(built.entries.map((entry, index) => ({ entry, line: built.lines[index] ?? '' })));
      this.#planDrops();
      // The replies need not wait for the key file: replacing it before the next batch is
      // written keeps the window in which an older key is on disk to one commit (writeKeyState).
      await this.#saveKeyState();
    }
    this.#flushing = undefined;
  }

  /** Numbers, chains and MACs a batch from the current state, without changing it. */
  #build(items: readonly Pending[]): { entries: LedgerEntry[]; lines: string[]; seq: number; prev: string; key: Buffer | undefined } {
    let seq = this.#seq;
    let prev = this.#prev;
    let key: Buffer | undefined = this.#key === undefined ? undefined : Buffer.from(this.#key.key);
    const entries: LedgerEntry[] = [];
    const lines: string[] = [];
    for (const item of items) {
      // The ledger's own members cannot be overridden by the caller's.
      // eslint-disable-next-line @typescript-eslint/no-unused-vars
      const { seq: _s, time: _t, prev: _p, mac: _m, ...rest } = item.input as AnyEntryInput & Partial<Record<'seq' | 'time' | 'prev' | 'mac', unknown>>;
      seq += 1;
      const entry = { seq, time: item.time, prev, ...rest } as LedgerEntry;
      const { line, mac } = formatLedgerLine(entry, key);
      if (key !== undefined && mac !== undefined) {
        entries.push({ ...entry, mac });
        // Forward security: the key of this entry is replaced by the next one at once.
        const next = evolveKey(key);
        forgetKey(key);
        key = next;
      } else {
        entries.push(entry);
      }
      lines.push(line);
      prev = hashLine(line);
    }
    return { entries, lines, seq, prev, key };
  }

  /**
   * Writes all of `text`: a short write (a nearly full disk) is continued, never ignored.
   * Synchronous: appending a few hundred bytes to the page cache takes microseconds, less than
   * a round trip through libuv's thread pool; only the flush to disk is waited for.
   */
  #write(text: string): void {
    writeAllSync(this.#requireHandle().fd, Buffer.from(text, 'utf8'));
  }

  #requireHandle(): FileHandle {
    if (this.#handle === undefined) throw new Error('ledger file is closed');
    return this.#handle;
  }

  /**
   * After the batch is on disk: the in-memory key becomes the next entry's, and the key state
   * file is marked for replacement, once for the whole batch. If it cannot be written (a full disk), the
   * entries stay acknowledged (they are on disk) and the write is retried with the next batch;
   * until then the file holds an older key, as after a crash (see writeKeyState).
   */
  #commitKey(next: Buffer | undefined, seq: number, head: string): void {
    if (this.#key === undefined || next === undefined) return;
    forgetKey(this.#key.key);
    this.#key = { ...this.#key, seq, head, key: next };
    this.#keyStateOnDisk = false;
  }

  /** Writes the key state if it is behind; a failure (a full disk) leaves it to the next commit. */
  async #saveKeyState(): Promise<void> {
    if (this.#key === undefined || this.#keyStatePath === undefined || this.#keyStateOnDisk) return;
    try {
      await saveKeyState(this.#keyStatePath, this.#key);
      this.#keyStateOnDisk = true;
    } catch {
      this.#keyStateOnDisk = false;
    }
  }

  /** Whether the key state file is as current as the ledger (false after a failed key write). */
  get keyStateCurrent(): boolean {
    return this.#key === undefined || this.#keyStateOnDisk;
  }

  /**
   * A failed write may still have put some of the batch's lines on disk, and a partial line.
   * Re-read the tail (cutting a partial line) so later entries chain onto what really is
   * there, advance the key past the lines that landed, and note what was lost for the next batch.
   */
  #recoverFromFailure(start: { seq: number; prev: string }, items: readonly Pending[], context: { message: string }): void {
    let landed = 0;
    try {
      const tail = recoverTail(this.path);
      landed = Math.min(Math.max(0, tail.seq - start.seq), items.length);
      this.#seq = start.seq + landed;
      this.#prev = landed > 0 ? tail.prev : start.prev;
      if (landed > 0) {
        this.#activeBytes = summarizeSegment(this.path).bytes;
        this.#activeFirstSeq ??= start.seq + 1;
        // The segment-start entry, when it came first, is on disk now.
        if (items[0]?.input.kind === 'segment-start') this.#pendingStart = undefined;
      }
    } catch {
      // Cannot read back: assume nothing landed; verify reports whatever did.
      this.#seq = start.seq;
      this.#prev = start.prev;
    }
    if (this.#key !== undefined && landed > 0) {
      const next = evolveKeyBy(this.#key.key, landed);
      this.#commitKey(next, this.#seq, this.#prev);
    }
    // The failure note of an earlier failure was among the first items: it landed or is still owed.
    const noteIndex = items.findIndex((item) => item.internal === true && item.input.kind === 'recovery');
    const noteLanded = noteIndex >= 0 && landed > noteIndex;
    const note: FailureNote =
      this.#failure === undefined || noteLanded
        ? { failures: 0, lastError: '', rejectedSeqs: [], lostEntries: 0, unrepliedRecords: [] }
        : this.#failure;
    note.failures += 1;
    note.lastError = context.message;
    items.forEach((item, index) => {
      if (item.internal === true) {
        // A segment-dropped note that did not land is planned again after the next commit.
        if (index >= landed) item.reject(new Error(context.message));
        else item.resolve({} as LedgerEntry);
        return;
      }
      if (index < landed) {
        if (note.rejectedSeqs.length < MAX_LISTED) note.rejectedSeqs.push(start.seq + index + 1);
        return;
      }
      note.lostEntries += 1;
      const record = 'record' in item.input ? item.input.record : undefined;
      if (typeof record === 'string' && note.unrepliedRecords.length < MAX_LISTED) note.unrepliedRecords.push(record);
    });
    this.#failure = note;
  }

  #notify(lines: readonly DurableLine[]): void {
    if (this.#onDurable === undefined) return;
    try {
      this.#onDurable(lines);
    } catch {
      // An observer (forwarding, quotas) must never break the ledger.
    }
  }

  /**
   * Waits for pending appends, writes what is owed about earlier failed writes (one attempt),
   * then closes the file. Idempotent.
   */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      if (this.#failure !== undefined && this.#handle !== undefined) {
        const failure = this.#failure;
        this.#failure = undefined;
        await this.#enqueue(describeFailure(failure)).catch(NOOP);
      }
    }
    while (this.#flushing !== undefined) await this.#flushing;
    await this.#saveKeyState();
    if (this.#key !== undefined) forgetKey(this.#key.key);
    const handle = this.#handle;
    this.#handle = undefined;
    await handle?.close();
  }
}

function describeFailure(note: FailureNote): RecoveryEntryInput {
  return {
    kind: 'recovery',
    note:
      'earlier ledger writes failed; their requests were answered with errors (a token is only sent once its entry is on disk). ' +
      'rejectedSeqs: entries that reached the file anyway; lostEntries: entries that did not; unrepliedRecords: SV records saved for requests whose token was never sent',
    failures: note.failures,
    error: note.lastError,
    rejectedSeqs: note.rejectedSeqs,
    lostEntries: note.lostEntries,
    unrepliedRecords: note.unrepliedRecords,
  };
}

/** The rotated segments of the ledger at `path`, with their last entry (segments without one are skipped). */
function readRotatedSegments(path: string): RotatedSegment[] {
  const segments: RotatedSegment[] = [];
  for (const segment of listLedgerSegments(path)) {
    if (segment.active || segment.firstSeq === undefined) continue;
    const summary = summarizeSegment(segment.path);
    if (summary.last === undefined) continue;
    const time = summary.last.time === undefined ? Number.NaN : Date.parse(summary.last.time);
    segments.push({
      path: segment.path,
      name: segment.name,
      firstSeq: segment.firstSeq,
      lastSeq: summary.last.seq,
      lastHash: summary.last.hash,
      lastTime: Number.isFinite(time) ? time : undefined,
      bytes: summary.bytes,
      dropping: false,
    });
  }
  return segments;
}

/** One line of the ledger as read back, with its position and whether it chains to the one before. */
export interface LedgerLine {
  /** 1-based position among all lines of the kept ledger (every segment, in order). */
  readonly lineNumber: number;
  /** The file it is in: `ledger` or `ledger-segments/<first seq>.ledger`. */
  readonly segment: string;
  readonly text: string;
  /** The parsed entry, or undefined when the line is not a JSON object. */
  readonly entry: LedgerEntry | undefined;
  /**
   * Whether the entry's `prev` is the hash of the line before it, across segments (or GENESIS
   * for the first). The first kept line after a dropped prefix is a `segment-start` entry whose
   * predecessor is gone: it counts as chained here; `stopctl verify` checks it against the
   * `segment-dropped` entry that recorded that predecessor's hash.
   */
  readonly chained: boolean;
}

/** Streams the ledger line by line across its segments, checking the hash chain as it goes. Missing ledger: no lines. */
export async function* readLedger(path: string): AsyncGenerator<LedgerLine> {
  let prev: string | undefined;
  let lineNumber = 0;
  for await (const line of readLedgerLines(path)) {
    lineNumber += 1;
    const text = line.bytes.toString('utf8');
    const entry = parseLedgerLine(text);
    const chained = prev === undefined ? entry?.prev === GENESIS_HASH || entry?.kind === 'segment-start' : entry?.prev === prev;
    yield { lineNumber, segment: line.segment.name, text, entry, chained };
    prev = hashLine(text);
  }
}
