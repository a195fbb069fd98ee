import { storePaths } from './store.js';
import { readLedger, type LedgerEntry } from './ledger.js';

/** What a token stands for, as found in the ledger. */
export interface LedgerFinding {
  /** The entry that issued the token, if any. */
  readonly entry: LedgerEntry | undefined;
  readonly lineNumber: number | undefined;
  /** Number of lines in the ledger. */
  readonly lines: number;
  /** Line numbers whose hash link to the line before is broken (or that are not JSON). */
  readonly brokenLines: readonly number[];
}

/**
 * Looks `token` up in the ledger of `storeDir`, checking the whole hash chain on the way: a
 * token is only "verified" when the ledger that explains it is intact.
 */
export async function findToken(storeDir: string, token: string): Promise<LedgerFinding> {
  let entry: LedgerEntry | undefined;
  let lineNumber: number | undefined;
  let lines = 0;
  const brokenLines: number[] = [];
  for await (const line of readLedger(storePaths(storeDir).ledger)) {
    lines = line.lineNumber;
    if (!line.chained) brokenLines.push(line.lineNumber);
    if (entry === undefined && line.entry?.token === token) {
      entry = line.entry;
      lineNumber = line.lineNumber;
    }
  }
  return { entry, lineNumber, lines, brokenLines };
}
