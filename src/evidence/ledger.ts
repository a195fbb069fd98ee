import { createHash } from 'node:crypto';
import { closeSync, createReadStream, fstatSync, ftruncateSync, openSync, readSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { StoreWriteError } from '../errors.js';

/** The `prev` of the first entry: 64 zeros. */
export const GENESIS_HASH = '0'.repeat(64);

/** What callers append; the ledger adds `seq`, `time` and `prev`. */
export interface LedgerEntryInput {
  readonly kind: string;
  readonly [field: string]: unknown;
}

/** An entry as stored: one JSON line. */
export interface LedgerEntry extends LedgerEntryInput {
  readonly seq: number;
  readonly time: string;
  /** SHA-256 hex of the previous line's bytes (without its newline). */
  readonly prev: string;
}

/** SHA-256 hex of one ledger line (without newline): the `prev` of the next entry. */
export function hashLine(line: string): string {
  return createHash('sha256').update(line).digest('hex');
}

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
}

interface Pending {
  readonly line: string;
  readonly entry: LedgerEntry;
  readonly resolve: (entry: LedgerEntry) => void;
  readonly reject: (error: unknown) => void;
}

/**
 * The append-only, hash-chained ledger (DESIGN "Evidence"). Every entry carries the hash of
 * the previous line, so a deleted, altered or reordered line breaks the chain.
 *
 * `append` resolves only once the entry is on disk (fdatasync): the daemon awaits it before
 * replying (DESIGN duty 9). Appends that arrive while a sync is in flight are written and
 * synced together (group commit), so concurrent requests share one fsync.
 */
export class Ledger {
  readonly path: string;
  #handle: FileHandle | undefined;
  #seq: number;
  #prev: string;
  #queue: Pending[] = [];
  #flushing: Promise<void> | undefined;
  #closed = false;

  readonly #onDurable: ((entries: readonly DurableLine[]) => void) | undefined;

  private constructor(path: string, handle: FileHandle, seq: number, prev: string, options: LedgerOptions) {
    this.#onDurable = options.onDurable;
    this.path = path;
    this.#handle = handle;
    this.#seq = seq;
    this.#prev = prev;
  }

  /**
   * Opens (creating if needed, mode 0600) the ledger at `path`. A partial last line, left by a
   * crash in the middle of a write, is cut off and recorded in a `recovery` entry with its bytes,
   * so nothing is lost and the chain stays verifiable. Its content was never acknowledged:
   * the reply that depended on it was not sent.
   */
  static async open(path: string, options: LedgerOptions = {}): Promise<Ledger> {
    const { seq, prev, partial } = recoverTail(path);
    const handle = await open(path, 'a', 0o600);
    const ledger = new Ledger(path, handle, seq, prev, options);
    if (partial !== undefined) {
      await ledger.append({
        kind: 'recovery',
        note: 'a partial entry left by an interrupted write was removed from the end of the ledger',
        discarded: partial.toString('base64'),
      });
    }
    return ledger;
  }

  /** Appends one entry and resolves when it is durably on disk. */
  append(input: LedgerEntryInput): Promise<LedgerEntry> {
    if (this.#closed) {
      return Promise.reject(new StoreWriteError('Cannot write to the ledger: it is closed'));
    }
    const entry: LedgerEntry = { seq: this.#seq + 1, time: new Date().toISOString(), prev: this.#prev, ...input };
    const line = JSON.stringify(entry);
    this.#seq = entry.seq;
    this.#prev = hashLine(line);
    return new Promise((resolve, reject) => {
      this.#queue.push({ line, entry, resolve, reject });
      this.#flushing ??= this.#flush();
    });
  }

  async #flush(): Promise<void> {
    // Writes in a loop: entries queued during one write+sync go out together in the next.
    while (this.#queue.length > 0) {
      const batch = this.#queue;
      this.#queue = [];
      try {
        const handle = this.#handle;
        if (handle === undefined) throw new Error('ledger file is closed');
        await handle.write(batch.map((p) => p.line + '\n').join(''));
        await handle.datasync();
        for (const p of batch) p.resolve(p.entry);
        this.#notify(batch);
      } catch (error) {
        const failure = new StoreWriteError(`Cannot write to the ledger ${this.path}: ${(error as Error).message}`, {
          cause: error,
        });
        for (const p of batch) p.reject(failure);
        // The chain in memory now refers to lines that may not be on disk; re-read the tail so
        // later entries chain onto what really is there.
        try {
          const tail = recoverTail(this.path);
          this.#seq = Math.max(this.#seq, tail.seq);
          this.#prev = tail.prev;
          // A partial write is cut off; its entries were rejected, so nothing acknowledged is lost.
        } catch {
          // Keep the in-memory chain; verify will report the gap.
        }
        for (const p of this.#queue) p.reject(failure);
        this.#queue = [];
      }
    }
    this.#flushing = undefined;
  }

  #notify(batch: readonly Pending[]): void {
    if (this.#onDurable === undefined) return;
    try {
      this.#onDurable(batch.map((p) => ({ entry: p.entry, line: p.line })));
    } catch {
      // An observer (forwarding, quotas) must never break the ledger.
    }
  }

  /** Waits for pending appends, then closes the file. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    while (this.#flushing !== undefined) await this.#flushing;
    const handle = this.#handle;
    this.#handle = undefined;
    await handle?.close();
  }
}

/** Reads the last complete line of the ledger (its seq and hash); cuts off a partial tail. */
function recoverTail(path: string): { seq: number; prev: string; partial?: Buffer } {
  let fd: number;
  try {
    fd = openSync(path, 'r+');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { seq: 0, prev: GENESIS_HASH };
    throw error;
  }
  try {
    const size = fstatSync(fd).size;
    if (size === 0) return { seq: 0, prev: GENESIS_HASH };
    // Read backwards in chunks until we hold the last complete line.
    let chunk = 64 * 1024;
    for (;;) {
      const start = Math.max(0, size - chunk);
      const buf = Buffer.alloc(size - start);
      readSync(fd, buf, 0, buf.length, start);
      const lastNewline = buf.lastIndexOf(0x0a);
      let partial: Buffer | undefined;
      let end = buf.length;
      if (lastNewline !== buf.length - 1) {
        if (lastNewline < 0 && start > 0) {
          chunk *= 4;
          continue;
        }
        partial = Buffer.from(buf.subarray(lastNewline + 1));
        end = lastNewline + 1;
        ftruncateSync(fd, start + end);
      }
      if (end === 0) return partial === undefined ? { seq: 0, prev: GENESIS_HASH } : { seq: 0, prev: GENESIS_HASH, partial };
      const before = buf.lastIndexOf(0x0a, end - 2);
      if (before < 0 && start > 0) {
        chunk *= 4;
        continue;
      }
      const line = buf.subarray(before + 1, end - 1).toString('utf8');
      const seq = (JSON.parse(line) as { seq?: unknown }).seq;
      const result = { seq: typeof seq === 'number' ? seq : 0, prev: hashLine(line) };
      return partial === undefined ? result : { ...result, partial };
    }
  } finally {
    closeSync(fd);
  }
}

/** One line of the ledger as read back, with its position and whether it chains to the one before. */
export interface LedgerLine {
  readonly lineNumber: number;
  readonly text: string;
  /** The parsed entry, or undefined when the line is not a JSON object. */
  readonly entry: LedgerEntry | undefined;
  /** Whether the entry's `prev` is the hash of the line before it (or GENESIS for the first). */
  readonly chained: boolean;
}

/** Streams the ledger line by line, checking the hash chain as it goes. Missing file: no lines. */
export async function* readLedger(path: string): AsyncGenerator<LedgerLine> {
  const stream = createReadStream(path, { encoding: 'utf8' });
  const lines = createInterface({ input: stream, crlfDelay: Infinity });
  let prev = GENESIS_HASH;
  let lineNumber = 0;
  try {
    for await (const text of lines) {
      lineNumber += 1;
      let entry: LedgerEntry | undefined;
      try {
        const parsed: unknown = JSON.parse(text);
        if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)) entry = parsed as LedgerEntry;
      } catch {
        entry = undefined;
      }
      yield { lineNumber, text, entry, chained: entry?.prev === prev };
      prev = hashLine(text);
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  } finally {
    lines.close();
    stream.destroy();
  }
}
