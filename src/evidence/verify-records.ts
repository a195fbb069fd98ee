/**
 * `stopctl verify`, the records half (verify.ts reads the ledger): every file in `records/`
 * against its token, and the records against the ledger's references.
 */
import { lstatSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { StoreOpenError } from '../errors.js';
import { MAX_RECORD_BYTES, parseRecordFileName } from './record-files.js';
import { parseRecord } from './record-reader.js';
import { hashToken, tokenHashOf } from './tokens.js';
import type { VerifyFinding, VerifyReport } from './verify.js';

/** A record is written just before its reply entry: this much later than the last dropped entry is still "before". */
const DROPPED_RECORD_MARGIN_MS = 60_000;

/** How long a temporary record file of a running daemon may be a write in progress. */
const IN_PROGRESS_MS = 60_000;

/** What the ledger says about records (verify.ts's scan). */
export interface LedgerReferences {
  /** Record tokens named by reply entries, with where. */
  readonly referenced: ReadonlyMap<string, string>;
  /** Record tokens named by recovery entries (saved, token never sent). */
  readonly unreplied: ReadonlySet<string>;
  /** Records the ledger says are absent on purpose: not kept at the store quota, or pruned. */
  readonly absent: ReadonlySet<string>;
  /** The last entry dropped by retention, when any was. */
  readonly dropped: { readonly lastSeq: number; readonly lastTime: number | undefined } | undefined;
}

/** The names in `records/`, listed before the ledger is read. */
export interface Listing {
  readonly names: string[];
}

/** The names in `records/`; undefined when there is no such directory. */
export function listRecords(dir: string): Listing | undefined {
  try {
    return { names: readdirSync(dir) };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new StoreOpenError(`Cannot list the records in ${dir}: ${(error as Error).message}`, { cause: error });
  }
}

/**
 * Checks every record file against its token and against what the ledger says (named,
 * unreplied, absent on purpose, or older than the kept ledger), adding findings.
 */
export function checkRecords(
  dir: string,
  listing: Listing | undefined,
  scan: LedgerReferences,
  context: { live: boolean },
  findings: VerifyFinding[],
): VerifyReport['records'] {
  const present = new Map<string, Buffer | undefined>();
  const modified = new Map<string, number>();
  const now = Date.now();
  for (const name of listing?.names ?? []) {
    const path = join(dir, name);
    const where = `records/${name}`;
    let stats;
    try {
      stats = lstatSync(path);
    } catch {
      continue; // removed since listing (a running daemon's temporary file)
    }
    const file = parseRecordFileName(name);
    if (file.kind === 'temporary') {
      if (context.live && now - stats.mtimeMs < IN_PROGRESS_MS) continue; // a write in progress
      findings.push({
        kind: 'temporary-file',
        where,
        detail: 'a temporary file of an interrupted record write (the daemon stopped mid-write; it removes these when it starts)',
      });
      continue;
    }
    const token = file.kind === 'record' ? file.token : undefined;
    const packed = file.kind === 'record' && file.compressed ? token : undefined;
    if (token === undefined || !stats.isFile()) {
      findings.push({
        kind: 'unexpected-file',
        where,
        detail: token === undefined ? 'not a record name (<token>.json or <token>.json.gz, 40 or 64 lowercase hex digits)' : 'not a regular file',
      });
      continue;
    }
    // `stopctl prune --gzip` writes <token>.json.gz, then removes <token>.json: after a crash in
    // between both exist, and both are checked.
    const key = packed === undefined ? token : `${token}.json.gz`;
    modified.set(key, stats.mtimeMs);
    try {
      const bytes = readFileSync(path);
      present.set(key, packed === undefined ? bytes : gunzipSync(bytes, { maxOutputLength: MAX_RECORD_BYTES }));
    } catch (error) {
      present.set(key, undefined);
      const what = packed === undefined ? 'cannot read it' : 'cannot read or decompress it';
      findings.push({ kind: 'record-unreadable', where, detail: `${what}: ${(error as Error).message}` });
    }
  }
  const tokenOf = (key: string): string => key.replace(/\.json\.gz$/, '');
  const fileOf = (key: string): string => (key.endsWith('.gz') ? `records/${key}` : `records/${key}.json`);
  const tokens = new Set([...present.keys()].map(tokenOf));
  // Hashes of every record's bytes, to recognise a record copied under another record's name.
  const ownerOfHash = new Map<string, string>();
  const actual = new Map<string, string>();
  for (const [key, bytes] of present) {
    if (bytes === undefined) continue;
    const token = tokenOf(key);
    const hash = hashToken(bytes, tokenHashOf(token) ?? 'sha256');
    actual.set(key, hash);
    if (hash === token) ownerOfHash.set(hash, token);
  }
  for (const [key, bytes] of present) {
    if (bytes === undefined) continue;
    const token = tokenOf(key);
    const where = fileOf(key);
    const hash = actual.get(key) ?? '';
    if (hash !== token) {
      const known = ownerOfHash.get(hash) ?? (scan.referenced.has(hash) || scan.unreplied.has(hash) ? hash : undefined);
      let wellFormed = true;
      try {
        parseRecord(bytes);
      } catch {
        wellFormed = false;
      }
      const what =
        known !== undefined
          ? `they are the bytes of record ${known}${ownerOfHash.has(hash) ? '' : ' (named by the ledger)'}: another valid record was put under this name`
          : wellFormed
            ? 'they form a well-formed record, but not the one saved under this token: the record was replaced or edited'
            : 'they are not a well-formed record: the file was changed';
      findings.push({ kind: 'record-altered', where, detail: `its bytes hash to ${hash}, not to its token; ${what}` });
      continue;
    }
    try {
      parseRecord(bytes);
    } catch (error) {
      findings.push({ kind: 'record-unreadable', where, detail: `its bytes match its token but are not a record: ${(error as Error).message}` });
    }
  }
  for (const [token, at] of scan.referenced) {
    if (tokens.has(token) || scan.absent.has(token)) continue;
    findings.push({
      kind: 'record-missing',
      where: `records/${token}.json`,
      detail: `the ledger names this record (${at}), but the file is missing, and no prune or record-not-kept entry explains it: it was deleted`,
    });
  }
  let beforeKeptLedger = 0;
  // Written before the last dropped entry (with a margin for the record-then-entry order): its
  // reply entry was in a dropped segment.
  const droppedUntil = scan.dropped === undefined ? undefined : (scan.dropped.lastTime ?? Infinity) + DROPPED_RECORD_MARGIN_MS;
  for (const key of present.keys()) {
    const token = tokenOf(key);
    if (scan.referenced.has(token) || scan.unreplied.has(token)) continue;
    if (droppedUntil !== undefined && (modified.get(key) ?? Infinity) <= droppedUntil) {
      beforeKeptLedger += 1;
      continue;
    }
    findings.push({
      kind: 'record-unreferenced',
      where: fileOf(key),
      detail:
        'no ledger entry names this record: it was planted, or its entry was removed, or the daemon stopped between saving it and writing its entry (starting the daemon accounts for such records in a recovery entry)',
    });
  }
  return { count: tokens.size, referenced: scan.referenced.size, unreplied: scan.unreplied.size, absent: scan.absent.size, beforeKeptLedger };
}
