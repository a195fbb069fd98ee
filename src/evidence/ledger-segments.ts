/**
 * The ledger's files (issue 13): the one module that knows where the ledger's lines are, used
 * by the writer (ledger.ts), `stopctl verify` (verify.ts), `redeem`/`trace` (redeem.ts) and the
 * syslog forwarder (forwarder.ts).
 *
 * Layout. `<store>/ledger` is the active segment, the only file written. When it reaches the
 * segment size it is renamed to `<store>/ledger-segments/<first seq, 16 digits>.ledger` and a
 * new `ledger` is started; its first entry is a `segment-start` entry naming the segment before
 * it (first and last seq, the hash of its last line) and the ledger key's epoch. The hash chain
 * runs on across files: the first line of a segment has as `prev` the hash of the last line of
 * the segment before. Read in order (segments by first seq, then `ledger`), the files are
 * exactly the single ledger file of older stores, which is why such a store needs no
 * migration: its `ledger` is the active segment, and becomes the first rotated segment.
 *
 * Retention drops the oldest rotated segments (never the active one) after a
 * `segment-dropped` entry naming the segment, its last seq and the hash of its last line is
 * durable: the first kept line's `prev` must equal that hash, so `stopctl verify` checks the
 * kept suffix from its first seq on, and a prefix deleted without that note is still reported.
 */
import { createHash } from 'node:crypto';
import { closeSync, fstatSync, openSync, readdirSync, readSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** Rotated segments live in this directory beside the active `ledger` file. */
export function segmentsDirOf(ledgerPath: string): string {
  return join(dirname(ledgerPath), `${basename(ledgerPath)}-segments`);
}

/** The file name of a rotated segment whose first entry has `firstSeq`. */
export function formatSegmentName(firstSeq: number): string {
  return `${String(firstSeq).padStart(16, '0')}.ledger`;
}

const SEGMENT_NAME = /^(\d{16})\.ledger$/;

/** One file of the ledger. */
export interface LedgerSegment {
  /** Absolute path. */
  readonly path: string;
  /** Path relative to the store, for messages and ledger entries: `ledger` or `ledger-segments/<n>.ledger`. */
  readonly name: string;
  /** The seq in its file name (rotated segments); undefined for the active file. */
  readonly firstSeq: number | undefined;
  readonly active: boolean;
}

/** The ledger's files in order: rotated segments by first seq, then the active file (when present). */
export function listLedgerSegments(ledgerPath: string): LedgerSegment[] {
  const dir = segmentsDirOf(ledgerPath);
  const store = dirname(ledgerPath);
  const segments: LedgerSegment[] = [];
  let names: string[] = [];
  try {
    names = readdirSync(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  for (const name of names) {
    const match = SEGMENT_NAME.exec(name);
    if (match === null) continue;
    const path = join(dir, name);
    segments.push({ path, name: relativeName(store, path), firstSeq: Number(match[1]), active: false });
  }
  segments.sort((a, b) => (a.firstSeq ?? 0) - (b.firstSeq ?? 0));
  if (fileExists(ledgerPath)) segments.push({ path: ledgerPath, name: basename(ledgerPath), firstSeq: undefined, active: true });
  return segments;
}

/** Whether the ledger has any file (the active one or a rotated segment). */
export function ledgerExists(ledgerPath: string): boolean {
  return listLedgerSegments(ledgerPath).length > 0;
}

function relativeName(store: string, path: string): string {
  return path.startsWith(`${store}/`) ? path.slice(store.length + 1) : path;
}

function fileExists(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** One line of one segment, as bytes. */
export interface SegmentLine {
  readonly segment: LedgerSegment;
  /** 1-based line number within the segment. */
  readonly lineNumber: number;
  readonly bytes: Buffer;
  /** False for a last line without a newline (an interrupted write). */
  readonly complete: boolean;
  /** Byte offset of the line in its segment, and just after its newline. */
  readonly offset: number;
  readonly end: number;
}

/** Lines of one file from `offset` (a line start), chunked so a long file never sits in memory whole. */
export async function* readSegmentLines(segment: LedgerSegment, offset = 0): AsyncGenerator<SegmentLine> {
  let handle;
  try {
    handle = await open(segment.path, 'r');
  } catch (error) {
    // Dropped by retention between listing and reading: nothing to read.
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw error;
  }
  try {
    const chunk = Buffer.alloc(1024 * 1024);
    let carry = Buffer.alloc(0);
    let lineNumber = 0;
    let position = offset;
    let readAt = offset;
    for (;;) {
      const { bytesRead } = await handle.read(chunk, 0, chunk.length, readAt);
      if (bytesRead === 0) break;
      readAt += bytesRead;
      let data = carry.length === 0 ? chunk.subarray(0, bytesRead) : Buffer.concat([carry, chunk.subarray(0, bytesRead)]);
      let newline = data.indexOf(0x0a);
      while (newline >= 0) {
        lineNumber += 1;
        const start = position;
        position += newline + 1;
        yield { segment, lineNumber, bytes: Buffer.from(data.subarray(0, newline)), complete: true, offset: start, end: position };
        data = data.subarray(newline + 1);
        newline = data.indexOf(0x0a);
      }
      carry = Buffer.from(data);
    }
    if (carry.length > 0) yield { segment, lineNumber: lineNumber + 1, bytes: carry, complete: false, offset: position, end: position };
  } finally {
    await handle.close();
  }
}

/** Every line of the ledger, segment after segment, in order. */
export async function* readLedgerLines(ledgerPath: string): AsyncGenerator<SegmentLine> {
  for (const segment of listLedgerSegments(ledgerPath)) yield* readSegmentLines(segment);
}

/** The last complete line of a file that parses as an entry: its seq, time and line hash. */
export interface LineSummary {
  readonly seq: number;
  readonly time: string | undefined;
  readonly hash: string;
}

/** The first and the last entry of one file (undefined when it holds none), and its size. */
export function summarizeSegment(path: string): { first: LineSummary | undefined; last: LineSummary | undefined; bytes: number } {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { first: undefined, last: undefined, bytes: 0 };
    throw error;
  }
  try {
    const size = fstatSync(fd).size;
    return { first: scanForward(fd, size), last: scanBackward(fd, size), bytes: size };
  } finally {
    closeSync(fd);
  }
}

function summarize(line: string): LineSummary | undefined {
  try {
    const value = JSON.parse(line) as { seq?: unknown; time?: unknown } | null;
    if (typeof value !== 'object' || value === null || !Number.isSafeInteger(value.seq)) return undefined;
    return { seq: value.seq as number, time: typeof value.time === 'string' ? value.time : undefined, hash: createHash('sha256').update(line).digest('hex') };
  } catch {
    return undefined;
  }
}

function scanForward(fd: number, size: number): LineSummary | undefined {
  let chunk = 64 * 1024;
  for (;;) {
    const buf = Buffer.alloc(Math.min(chunk, size));
    readSync(fd, buf, 0, buf.length, 0);
    let start = 0;
    let newline = buf.indexOf(0x0a);
    while (newline >= 0) {
      const found = summarize(buf.toString('utf8', start, newline));
      if (found !== undefined) return found;
      start = newline + 1;
      newline = buf.indexOf(0x0a, start);
    }
    if (buf.length >= size) return undefined;
    chunk *= 4;
  }
}

function scanBackward(fd: number, size: number): LineSummary | undefined {
  let chunk = 64 * 1024;
  for (;;) {
    const start = Math.max(0, size - chunk);
    const buf = Buffer.alloc(size - start);
    readSync(fd, buf, 0, buf.length, start);
    let end = buf.lastIndexOf(0x0a);
    while (end >= 0) {
      const before = end === 0 ? -1 : buf.lastIndexOf(0x0a, end - 1);
      if (before < 0 && start > 0) break; // the line may begin before this chunk
      const found = summarize(buf.toString('utf8', before + 1, end));
      if (found !== undefined) return found;
      end = before;
    }
    if (start === 0) return undefined;
    chunk *= 4;
  }
}

/** The last entry of the whole ledger (the active file, else the newest segment that has one). */
export function readLastEntry(ledgerPath: string): LineSummary | undefined {
  const segments = listLedgerSegments(ledgerPath);
  for (let index = segments.length - 1; index >= 0; index -= 1) {
    const segment = segments[index];
    if (segment === undefined) continue;
    const last = summarizeSegment(segment.path).last;
    if (last !== undefined) return last;
  }
  return undefined;
}

/** A ledger line picked by seq, with where it lies in its segment. */
export interface SeqLine {
  readonly seq: number;
  readonly time: unknown;
  readonly line: string;
  readonly segment: LedgerSegment;
  readonly offset: number;
  readonly end: number;
}

/** The result of {@link readLedgerRange}. */
export interface LedgerRange {
  /** Lines with minSeq <= seq <= maxSeq, in order, up to about maxBytes of text. */
  readonly items: SeqLine[];
  /** Where reading stopped: the segment and the offset in it. */
  readonly end: { readonly segment: string | undefined; readonly offset: number };
}

/**
 * Complete lines with `minSeq <= seq <= maxSeq`, across segments, up to about `maxBytes` of
 * text (the forwarder's catch-up reads). Starts in the segment that holds `minSeq` (by the
 * first seq of each file), at `hint` when it points at a line start whose seq is not past
 * `minSeq`, else at the segment's start. A minSeq older than every segment (dropped) starts
 * at the first one.
 */
export async function readLedgerRange(
  ledgerPath: string,
  wanted: { readonly minSeq: number; readonly maxSeq: number; readonly maxBytes: number; readonly hint?: { readonly segment: string | undefined; readonly offset: number } },
): Promise<LedgerRange> {
  const segments = listLedgerSegments(ledgerPath);
  const firsts = segments.map((segment) => segment.firstSeq ?? summarizeSegment(segment.path).first?.seq);
  let startIndex = 0;
  firsts.forEach((first, index) => {
    if (first !== undefined && first <= wanted.minSeq) startIndex = index;
  });
  const items: SeqLine[] = [];
  let bytes = 0;
  let end: LedgerRange['end'] = { segment: undefined, offset: 0 };
  for (let index = startIndex; index < segments.length; index += 1) {
    const segment = segments[index];
    if (segment === undefined) continue;
    let offset = 0;
    const hint = wanted.hint;
    if (index === startIndex && hint !== undefined && hint.segment === segment.name && hint.offset > 0 && (await isLineStart(segment.path, hint.offset))) {
      offset = hint.offset;
    }
    let first = true;
    for await (const line of readSegmentLines(segment, offset)) {
      if (!line.complete) break; // being written, or cut: verify reports it
      const text = line.bytes.toString('utf8');
      const parsed = summarizeSeq(text);
      if (parsed === undefined) continue; // damage is for `stopctl verify` to report
      if (first && offset > 0 && parsed.seq > wanted.minSeq) {
        // The hint skipped the wanted line: read this segment from its start.
        return readLedgerRange(ledgerPath, { minSeq: wanted.minSeq, maxSeq: wanted.maxSeq, maxBytes: wanted.maxBytes });
      }
      first = false;
      if (parsed.seq > wanted.maxSeq) return { items, end: { segment: segment.name, offset: line.offset } };
      end = { segment: segment.name, offset: line.end };
      if (parsed.seq < wanted.minSeq) continue;
      items.push({ seq: parsed.seq, time: parsed.time, line: text, segment, offset: line.offset, end: line.end });
      bytes += text.length;
      if (bytes >= wanted.maxBytes) return { items, end };
    }
  }
  return { items, end };
}

function summarizeSeq(line: string): { seq: number; time: unknown } | undefined {
  try {
    const value = JSON.parse(line) as { seq?: unknown; time?: unknown } | null;
    if (typeof value !== 'object' || value === null || !Number.isSafeInteger(value.seq)) return undefined;
    return { seq: value.seq as number, time: value.time };
  } catch {
    return undefined;
  }
}

async function isLineStart(path: string, offset: number): Promise<boolean> {
  const handle = await open(path, 'r').catch(() => undefined);
  if (handle === undefined) return false;
  try {
    const size = (await handle.stat()).size;
    if (offset >= size) return false;
    const before = Buffer.alloc(1);
    await handle.read(before, 0, 1, offset - 1);
    return before[0] === 0x0a;
  } finally {
    await handle.close();
  }
}
