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
import { readdirSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { hashLine, readLineSeq } from './ledger-format.js';
import { readLinesForward, visitLinesBackward, visitLinesForward, type FileLine } from './line-reader.js';

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

/** One line of one segment, as bytes (line-reader.ts), with the segment it is in. */
export interface SegmentLine extends FileLine {
  readonly segment: LedgerSegment;
}

/** Lines of one file from `offset` (a line start), read by line-reader.ts; a segment dropped meanwhile has none. */
export async function* readSegmentLines(segment: LedgerSegment, offset = 0): AsyncGenerator<SegmentLine> {
  for await (const line of readLinesForward(segment.path, { offset })) yield { ...line, segment };
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
  let bytes: number;
  try {
    bytes = statSync(path).size;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { first: undefined, last: undefined, bytes: 0 };
    throw error;
  }
  // Complete lines only: a line being appended is not an entry yet.
  return { first: findSummary(path, visitLinesForward), last: findSummary(path, visitLinesBackward), bytes };
}

/** The first line met in the visiting order that is an entry with a seq. */
function findSummary(path: string, visitLines: typeof visitLinesForward): LineSummary | undefined {
  let found: LineSummary | undefined;
  visitLines(path, (line) => {
    const text = line.bytes.toString('utf8');
    const parsed = readLineSeq(text);
    if (parsed === undefined) return true;
    found = { seq: parsed.seq, time: typeof parsed.time === 'string' ? parsed.time : undefined, hash: hashLine(text) };
    return false;
  });
  return found;
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
      const parsed = readLineSeq(text);
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
