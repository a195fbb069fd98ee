/**
 * What `Ledger.open` (ledger.ts) does after a crash, before anything is written: find the
 * last entry and cut a partial last line, find the records whose reply entry never reached
 * the ledger, and say so in words for the `recovery` entry. Separate from the writer because
 * it runs once, reads what the writer left, and has no state of its own.
 */
import { readdirSync, statSync, truncateSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { readLedgerKeyFile } from './forward-mac.js';
import { GENESIS_HASH, hashLine, parseLedgerLine } from './ledger-format.js';
import { listLedgerSegments } from './ledger-segments.js';
import { visitLinesBackward, type FileLine } from './line-reader.js';
import { parseRecordFileName } from './record-files.js';

/** Caps on what a recovery entry lists, so a long outage cannot make one entry unbounded. */
export const MAX_LISTED = 10_000;

/**
 * A record written this long before the last ledger entry cannot be the orphan of a crash: its
 * entry would have been queued (and so written before) that last entry. The margin covers a
 * stalled event loop; a clock stepped back by more than this makes verify report such records
 * as unreferenced (never the reverse).
 */
const ORPHAN_WINDOW_MS = 10 * 60 * 1000;

/** Where the chain goes on after a file: its last entry's seq, line hash and time, and a cut-off partial line. */
export interface LedgerTail {
  readonly seq: number;
  readonly prev: string;
  readonly time?: number;
  readonly partial?: Buffer;
}

/**
 * Reads the last complete line of the ledger file (its seq, hash and time) and cuts off a
 * partial line after it, returning that line's bytes. A missing or empty file starts the chain.
 */
export function recoverTail(path: string): LedgerTail {
  let partial: FileLine | undefined;
  let last: FileLine | undefined;
  // Every byte, the unterminated last line included: its bytes are kept in the recovery entry.
  visitLinesBackward(
    path,
    (line) => {
      if (!line.complete) {
        partial = line;
        return true;
      }
      last = line;
      return false;
    },
    { partialLast: 'include' },
  );
  if (partial !== undefined) truncateSync(path, partial.offset);
  const cut = partial === undefined ? {} : { partial: partial.bytes };
  if (last === undefined) return { seq: 0, prev: GENESIS_HASH, ...cut };
  const text = last.bytes.toString('utf8');
  // An unparsable last line (altered by hand): chain onto it anyway; verify reports it.
  const entry = parseLedgerLine(text);
  const time = typeof entry?.time === 'string' ? Date.parse(entry.time) : Number.NaN;
  return {
    seq: typeof entry?.seq === 'number' ? entry.seq : 0,
    prev: hashLine(text),
    ...(Number.isFinite(time) ? { time } : {}),
    ...cut,
  };
}

/**
 * After a crash: removes temporary record files (the store is locked by us, so no write is in
 * progress), and finds record files that no ledger entry names. Only records written within
 * {@link ORPHAN_WINDOW_MS} of the last entry are candidates, and only that end of the ledger is
 * read, so a start costs little however long the ledger is.
 */
export function findOrphanRecords(
  recordsDir: string,
  ledgerPath: string,
  lastTime: number | undefined,
): { removedTemporaryFiles: string[]; unrepliedRecords: string[] } {
  let names: string[];
  try {
    names = readdirSync(recordsDir);
  } catch {
    return { removedTemporaryFiles: [], unrepliedRecords: [] };
  }
  const removedTemporaryFiles: string[] = [];
  const candidates = new Set<string>();
  const since = lastTime === undefined ? -Infinity : lastTime - ORPHAN_WINDOW_MS;
  for (const name of names) {
    const file = parseRecordFileName(name);
    if (file.kind === 'temporary') {
      try {
        unlinkSync(join(recordsDir, name));
        removedTemporaryFiles.push(name);
      } catch {
        // Verify will report it.
      }
      continue;
    }
    // Gzipped records were pruned: their entries are old by definition.
    if (file.kind !== 'record' || file.compressed) continue;
    try {
      if (statSync(join(recordsDir, name)).mtimeMs >= since) candidates.add(file.token);
    } catch {
      // Gone or unreadable: verify reports it.
    }
  }
  if (candidates.size > 0) dropReferenced(candidates, ledgerPath, lastTime === undefined ? -Infinity : lastTime - 2 * ORPHAN_WINDOW_MS);
  return { removedTemporaryFiles: removedTemporaryFiles.slice(0, MAX_LISTED), unrepliedRecords: [...candidates].slice(0, MAX_LISTED) };
}

/** Removes from `candidates` the tokens named in the ledger's lines written since `stopBefore`, reading from the end. */
function dropReferenced(candidates: Set<string>, ledgerPath: string, stopBefore: number): void {
  // Newest file first: the entries near the end of the ledger may lie in the last rotated segment.
  for (const segment of listLedgerSegments(ledgerPath).reverse()) {
    let more = true;
    try {
      // Every line, an unterminated one included: a reference in it is still a reference.
      visitLinesBackward(
        segment.path,
        (fileLine) => {
          const line = fileLine.bytes.toString('utf8');
          // Tokens are random 160- or 256-bit strings: any occurrence in a line is a reference to it.
          for (const token of candidates) if (line.includes(token)) candidates.delete(token);
          if (candidates.size === 0) return (more = false);
          const time = Date.parse(/"time":"([^"]+)"/.exec(line)?.[1] ?? '');
          more = !(Number.isFinite(time) && time < stopBefore);
          return more;
        },
        { partialLast: 'include' },
      );
    } catch {
      // An unreadable segment: what it names stays a candidate, and verify reports the rest.
    }
    if (!more) break;
  }
}

/** The `note` of the recovery entry written at open, from the members it will carry. */
export function describeOpenRecovery(notes: Record<string, unknown>): string {
  const parts: string[] = [];
  if (notes.discarded !== undefined) parts.push('a partial entry left by an interrupted write was removed from the end of the ledger');
  if (notes.missingEntries !== undefined) {
    parts.push('the key state had reached a later entry than the ledger holds: entries were removed from the end of the ledger');
  }
  if (notes.removedTemporaryFiles !== undefined) parts.push('temporary files of interrupted record writes were removed');
  if (notes.unrepliedRecords !== undefined) {
    parts.push('records were saved for requests whose reply entry never reached the ledger (the daemon stopped first): their tokens were never sent');
  }
  return parts.join('; ');
}

/** Reads the initial key to install; undefined when the file is gone but the store already has a key (moved before). */
export function readInstallKey(file: string, stateExists: boolean): Buffer | undefined {
  try {
    return readLedgerKeyFile(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      if (stateExists) return undefined;
      throw new Error(`cannot read the ledger key ${file}: no such file; make one with \`stopctl keygen --out ${file}\``);
    }
    throw error;
  }
}

/** Removes a file; one already gone is fine. */
export function unlinkIfPresent(path: string): void {
  try {
    unlinkSync(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
}
