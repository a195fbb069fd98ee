/**
 * The one reader of append-only line files (the ledger and its segments, and any other
 * JSON-lines file such as a journal): forward from a byte offset, or backward from the end.
 * It knows nothing of what a line holds; callers parse (ledger-format.ts for the ledger).
 *
 * Both directions read in chunks, so a long file never sits in memory whole, and both report
 * each line's exact bytes (without its newline), its byte offsets and whether it ended in a
 * newline: the last line of a file being appended to, or cut by a crash, may not.
 * A file that does not exist has no lines (it may have been rotated or dropped meanwhile);
 * any other error is thrown.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { open } from 'node:fs/promises';

/** One line of a file. */
export interface FileLine {
  /** 1-based line number counted from where reading started (forward), or from the end (backward). */
  readonly lineNumber: number;
  /** The line's bytes, without its newline. */
  readonly bytes: Buffer;
  /** False for a last line without a newline (an interrupted write, or one in progress). */
  readonly complete: boolean;
  /** Byte offset of the line's first byte. */
  readonly offset: number;
  /**
   * Byte offset just after its newline. For an incomplete line, its own offset: the line is
   * not finished, so a reader resuming at `end` reads it again, whole.
   */
  readonly end: number;
}

/** Options of {@link readLinesForward}. */
export interface ForwardReadOptions {
  /** Where to start: the offset of a line's first byte (default 0). */
  readonly offset?: number;
  /** Bytes read per system call (default 1 MiB). */
  readonly chunkBytes?: number;
}

/** Lines of the file at `path` from `options.offset` to its end, in order. */
export async function* readLinesForward(path: string, options: ForwardReadOptions = {}): AsyncGenerator<FileLine> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (error) {
    if (isMissing(error)) return;
    throw error;
  }
  try {
    const chunk = Buffer.alloc(options.chunkBytes ?? 1024 * 1024);
    const splitter = new LineSplitter(options.offset ?? 0);
    let readAt = options.offset ?? 0;
    for (;;) {
      const { bytesRead } = await handle.read(chunk, 0, chunk.length, readAt);
      if (bytesRead === 0) break;
      readAt += bytesRead;
      yield* splitter.push(chunk.subarray(0, bytesRead));
    }
    const last = splitter.finish();
    if (last !== undefined) yield last;
  } finally {
    await handle.close();
  }
}

/** Options of {@link visitLinesForward} and {@link visitLinesBackward}. */
export interface VisitOptions {
  /**
   * Whether an incomplete last line (no newline) is visited: `skip` (default) for readers that
   * want only what was completely written (a line being appended is not an entry yet);
   * `include` for readers that must see every byte (crash recovery keeps a cut line's bytes).
   */
  readonly partialLast?: 'skip' | 'include';
  /** Bytes read per system call at first (default 64 KiB). */
  readonly chunkBytes?: number;
}

/**
 * Calls `visit` with each line from the file's start, until it returns false. Synchronous,
 * for the few reads at a ledger's open that must finish before anything is written.
 */
export function visitLinesForward(path: string, visit: (line: FileLine) => boolean, options: VisitOptions = {}): void {
  withFile(path, (fd, size) => {
    const chunk = Buffer.alloc(Math.min(options.chunkBytes ?? 64 * 1024, Math.max(size, 1)));
    const splitter = new LineSplitter(0);
    let readAt = 0;
    while (readAt < size) {
      const bytesRead = readSync(fd, chunk, 0, Math.min(chunk.length, size - readAt), readAt);
      if (bytesRead === 0) break;
      readAt += bytesRead;
      for (const line of splitter.push(chunk.subarray(0, bytesRead))) if (!visit(line)) return;
    }
    const last = splitter.finish();
    if (last !== undefined && options.partialLast === 'include') visit(last);
  });
}

/**
 * Calls `visit` with each line from the file's end to its start, until it returns false: the
 * cheap way to find the last entries of a long file. `lineNumber` counts from the end (1 is
 * the last line).
 */
export function visitLinesBackward(path: string, visit: (line: FileLine) => boolean, options: VisitOptions = {}): void {
  withFile(path, (fd, size) => {
    const chunkBytes = options.chunkBytes ?? 64 * 1024;
    // `carry` holds the bytes from `position` to the end of the line cut by the last chunk's start.
    let carry = Buffer.alloc(0);
    let position = size;
    let lineNumber = 0;
    while (position > 0) {
      const start = Math.max(0, position - chunkBytes);
      const buf = Buffer.alloc(position - start);
      readSync(fd, buf, 0, buf.length, start);
      let data = carry.length === 0 ? buf : Buffer.concat([buf, carry]);
      position = start;
      // The newline before the last line of `data` (its own final newline ends that line).
      let newline = lastLineBreak(data);
      while (newline >= 0) {
        lineNumber += 1;
        if (!emit(data.subarray(newline + 1), position + newline + 1)) return;
        data = data.subarray(0, newline + 1);
        newline = lastLineBreak(data);
      }
      carry = Buffer.from(data);
    }
    if (carry.length > 0) {
      lineNumber += 1;
      emit(carry, 0);
    }

    /** Visits the line of `bytes` (with its newline, when it has one) starting at `offset`. */
    function emit(bytes: Buffer, offset: number): boolean {
      const complete = bytes.at(-1) === 0x0a;
      if (!complete && options.partialLast !== 'include') return true;
      const text = complete ? bytes.subarray(0, -1) : bytes;
      return visit({ lineNumber, bytes: Buffer.from(text), complete, offset, end: complete ? offset + bytes.length : offset });
    }
  });
}

/** Cuts a stream of chunks into lines, tracking byte offsets. */
class LineSplitter {
  #carry = Buffer.alloc(0);
  #position: number;
  #lineNumber = 0;

  constructor(offset: number) {
    this.#position = offset;
  }

  /** The complete lines that `chunk` ends. */
  *push(chunk: Buffer): Generator<FileLine> {
    let data = this.#carry.length === 0 ? chunk : Buffer.concat([this.#carry, chunk]);
    let newline = data.indexOf(0x0a);
    while (newline >= 0) {
      this.#lineNumber += 1;
      const offset = this.#position;
      this.#position += newline + 1;
      yield { lineNumber: this.#lineNumber, bytes: Buffer.from(data.subarray(0, newline)), complete: true, offset, end: this.#position };
      data = data.subarray(newline + 1);
      newline = data.indexOf(0x0a);
    }
    this.#carry = Buffer.from(data);
  }

  /** The bytes after the last newline, as an incomplete line, if any. */
  finish(): FileLine | undefined {
    if (this.#carry.length === 0) return undefined;
    const offset = this.#position;
    return { lineNumber: this.#lineNumber + 1, bytes: this.#carry, complete: false, offset, end: offset };
  }
}

/** Index of the newline before the last line of `data`, or -1 (a final newline belongs to that line). */
function lastLineBreak(data: Buffer): number {
  const from = data.at(-1) === 0x0a ? data.length - 2 : data.length - 1;
  // Never a negative start: Buffer#lastIndexOf would count it from the end.
  return from < 0 ? -1 : data.lastIndexOf(0x0a, from);
}

function withFile(path: string, use: (fd: number, size: number) => void): void {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (error) {
    if (isMissing(error)) return;
    throw error;
  }
  try {
    use(fd, fstatSync(fd).size);
  } finally {
    closeSync(fd);
  }
}

function isMissing(error: unknown): boolean {
  return (error as NodeJS.ErrnoException).code === 'ENOENT';
}
