import { statSync } from 'node:fs';
import { join } from 'node:path';
import { storePaths } from './store.js';
import { readLedger } from './ledger.js';
import type { LedgerEntry } from './ledger-format.js';
import { recordFileName } from './record-files.js';
import { readRecord, type StoredRecord } from './record-reader.js';
import { explainRecordNotKept } from './quota.js';

/** What a token stands for, as found in the ledger. */
export interface LedgerFinding {
  /** The entry that issued the token, if any. */
  readonly entry: LedgerEntry | undefined;
  readonly lineNumber: number | undefined;
  /** Upstream outcomes recorded for the token (kind `upstream`, `parentToken` = token), in ledger order. */
  readonly upstream: readonly LedgerEntry[];
  /** Number of lines in the ledger. */
  readonly lines: number;
  /** Line numbers whose hash link to the line before is broken (or that are not JSON). */
  readonly brokenLines: readonly number[];
  /** Entries dropped by the ledger's retention (the newest `segment-dropped` entry), if any. */
  readonly dropped?: { readonly throughSeq: number; readonly lastTime: string | undefined };
}

/**
 * Looks `token` up in the ledger of `storeDir`, checking the whole hash chain on the way: a
 * token is only "verified" when the ledger that explains it is intact.
 */
export async function findToken(storeDir: string, token: string): Promise<LedgerFinding> {
  let entry: LedgerEntry | undefined;
  let lineNumber: number | undefined;
  const upstream: LedgerEntry[] = [];
  let lines = 0;
  const brokenLines: number[] = [];
  let dropped: LedgerFinding['dropped'];
  let first: { seq: number; prev: string } | undefined;
  const dropHashes = new Map<number, unknown>();
  for await (const line of readLedger(storePaths(storeDir).ledger)) {
    lines = line.lineNumber;
    if (!line.chained) brokenLines.push(line.lineNumber);
    if (line.entry === undefined) continue;
    if (line.lineNumber === 1) first = { seq: line.entry.seq, prev: line.entry.prev };
    if (line.entry.kind === 'segment-dropped' && typeof line.entry.lastSeq === 'number') {
      dropHashes.set(line.entry.lastSeq, line.entry.lastHash);
      if (line.entry.lastSeq > (dropped?.throughSeq ?? 0)) {
        dropped = { throughSeq: line.entry.lastSeq, lastTime: typeof line.entry.lastTime === 'string' ? line.entry.lastTime : undefined };
      }
    }
    if (entry === undefined && line.entry.token === token && line.entry.kind === 'reply') {
      entry = line.entry;
      lineNumber = line.lineNumber;
    } else if (line.entry.kind === 'upstream' && line.entry.parentToken === token) {
      upstream.push(line.entry);
    }
  }
  // The kept ledger may start after a dropped prefix only where a segment-dropped entry says
  // it ends, with the hash the first kept entry chains onto; anything else is a deleted prefix.
  if (first !== undefined && first.seq > 1 && dropHashes.get(first.seq - 1) !== first.prev && brokenLines[0] !== 1) brokenLines.unshift(1);
  return { entry, lineNumber, upstream, lines, brokenLines, ...(dropped === undefined ? {} : { dropped }) };
}

/** A token redeemed: its ledger entry and, for SV tokens, its record. */
export interface Redemption {
  readonly finding: LedgerFinding;
  /** The record file, when one exists under the token's name. */
  readonly record: StoredRecord | undefined;
  /** 0 verified, 2 unknown token, 3 integrity failure (DESIGN's exit codes). */
  readonly status: 0 | 2 | 3;
  /** Why the status is not 0, in one sentence. */
  readonly problems: readonly string[];
  /** Why an SV token's record is absent without that being a failure: pruned, or not kept at the store quota. */
  readonly absence?: RecordAbsence;
  /** Set when the record is kept but the entry that issued it was dropped by the ledger's retention. */
  readonly issuedInDroppedLedger?: string;
}

/** A record the ledger accounts for although its file is gone (or was never written). */
export interface RecordAbsence {
  readonly reason: 'pruned' | 'not-kept';
  /** The `prune` or `record-not-kept` entry that says so. */
  readonly entry: LedgerEntry;
  /** One sentence for people, e.g. `record not kept: store quota (--max-records 3 reached)`. */
  readonly note: string;
}

/**
 * Looks for the ledger entry that explains why the record of `token` is absent: a
 * `record-not-kept` entry (store quota, quota.ts) or a `prune` entry with action `removed`
 * (prune.ts). Undefined when none does: the record is then missing for no stated reason.
 */
export async function findRecordAbsence(storeDir: string, token: string): Promise<RecordAbsence | undefined> {
  for await (const { entry } of readLedger(storePaths(storeDir).ledger)) {
    if (entry === undefined || entry.record !== token) continue;
    if (entry.kind === 'record-not-kept') return { reason: 'not-kept', entry, note: explainRecordNotKept(entry) };
    if (entry.kind === 'prune' && entry.action === 'removed') {
      const days = typeof entry.olderThanDays === 'number' ? ` (older than ${entry.olderThanDays} days)` : '';
      const altered = entry.verified === false ? '; it no longer matched its token then' : '';
      return { reason: 'pruned', entry, note: `record pruned: removed by stopctl prune at ${entry.time}${days}${altered}` };
    }
  }
  return undefined;
}

/**
 * Redeems a token: the ledger entry that issued it, and the record of an SV token, each
 * checked (the chain of the whole ledger; the record against its token). A record the ledger
 * names but that is missing, and a record the ledger does not know, are integrity failures,
 * unless the ledger says the record was pruned or not kept (then `absence` says which).
 */
export async function redeemToken(storeDir: string, token: string): Promise<Redemption> {
  const finding = await findToken(storeDir, token);
  const record = await readRecord(storePaths(storeDir).records, token);
  const problems: string[] = [];
  if (finding.brokenLines.length > 0) {
    const shown = finding.brokenLines.slice(0, 10).join(', ') + (finding.brokenLines.length > 10 ? ', ...' : '');
    problems.push(`the ledger's hash chain is broken at line(s) ${shown}`);
  }
  if (record !== undefined && !record.verified) problems.push(`the record's bytes hash to ${record.actualHash}, not to the token`);
  if (record !== undefined && record.record === undefined) problems.push('the record file is not a readable record');
  // A record pruned or not kept at the quota is accounted for by the ledger: not a failure.
  const absence = finding.entry?.record !== undefined && record === undefined ? await findRecordAbsence(storeDir, token) : undefined;
  if (finding.entry?.record !== undefined && record === undefined && absence === undefined) {
    problems.push('the ledger names a record for this token, but the record file is missing');
  }
  const droppedEntry = finding.entry === undefined && record !== undefined && issuedBeforeKeptLedger(storeDir, token, finding.dropped);
  if (finding.entry === undefined && record !== undefined && !droppedEntry) {
    problems.push('a record exists for this token, but the ledger has no entry that issued it');
  }
  const known = finding.entry !== undefined || record !== undefined;
  const status = problems.length > 0 ? 3 : known ? 0 : 2;
  const dropped = finding.dropped;
  const unknown =
    dropped === undefined
      ? `the token is not in the ledger of ${storeDir}`
      : `the token is not in the kept ledger of ${storeDir}: entries 1..${dropped.throughSeq} (up to ${dropped.lastTime ?? 'an unknown time'}) were dropped by the ledger's retention, so a token issued before then can no longer be redeemed here (a syslog copy of the ledger may still hold it)`;
  return {
    finding,
    record,
    status,
    problems: known || problems.length > 0 ? problems : [unknown],
    ...(absence === undefined ? {} : { absence }),
    ...(droppedEntry && dropped !== undefined
      ? { issuedInDroppedLedger: `its ledger entry was among entries 1..${dropped.throughSeq}, dropped by the ledger's retention; the record still matches its token` }
      : {}),
  };
}

/** A record older than the last entry dropped by retention: its reply entry was dropped (verify.ts applies the same rule). */
function issuedBeforeKeptLedger(storeDir: string, token: string, dropped: LedgerFinding['dropped']): boolean {
  if (dropped === undefined) return false;
  const until = dropped.lastTime === undefined ? Infinity : Date.parse(dropped.lastTime) + 60_000;
  const records = storePaths(storeDir).records;
  for (const name of [recordFileName(token), recordFileName(token, { compressed: true })]) {
    try {
      return statSync(join(records, name)).mtimeMs <= until;
    } catch {
      // Try the other name.
    }
  }
  return false;
}
