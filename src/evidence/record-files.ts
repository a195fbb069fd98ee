/**
 * The one module that knows how record files are named and how large they may be
 * (DESIGN "Evidence"): `records/<token>.json`, `records/<token>.json.gz` after
 * `stopctl prune --gzip`, and `.<token>.tmp-<random>` while one is being written. The writer
 * (record.ts), the quota (quota.ts), prune, the ledger's crash recovery and `stopctl verify`
 * all read names through it, so a new kind of record file is added here once.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { TOKEN_PATTERN } from './tokens.js';

/**
 * Default `BuildRecordInput.maxBytes` (record.ts): 2 MiB. An ordinary record is far smaller
 * (1 000 processes sharing a pipe take 1.2 MB); one the closure's own bounds still allow to
 * grow (1 000 processes with 4 KiB command lines: 4 MB) is cut here rather than fill the store.
 */
export const DEFAULT_MAX_RECORD_BYTES = 2 * 1024 * 1024;

/**
 * A decompressed record larger than this is not a record (a gzip bomb, or damage): reading a
 * `.json.gz` record stops there.
 */
export const MAX_RECORD_BYTES = 256 * 1024 * 1024;

/** A record file: `<token>.json`; group 1 is the token. */
export const RECORD_NAME = new RegExp(`^(${TOKEN_PATTERN})\\.json$`);
/** A record pruned with `stopctl prune --gzip`: `<token>.json.gz`; group 1 is the token. */
export const GZIPPED_RECORD_NAME = new RegExp(`^(${TOKEN_PATTERN})\\.json\\.gz$`);
/** A temporary file of an interrupted (or running) record write: `.<token>.tmp-<random>`. */
export const TEMPORARY_RECORD_NAME = new RegExp(`^\\.${TOKEN_PATTERN}\\.tmp-[0-9a-f]+$`);

/** What a name in `records/` is. */
export type RecordFileName =
  | { readonly kind: 'record'; readonly token: string; readonly compressed: boolean }
  | { readonly kind: 'temporary' }
  | { readonly kind: 'other' };

/** Sorts a name found in `records/`: a record (plain or gzipped), a temporary file, or anything else. */
export function parseRecordFileName(name: string): RecordFileName {
  const plain = RECORD_NAME.exec(name)?.[1];
  if (plain !== undefined) return { kind: 'record', token: plain, compressed: false };
  const packed = GZIPPED_RECORD_NAME.exec(name)?.[1];
  if (packed !== undefined) return { kind: 'record', token: packed, compressed: true };
  return TEMPORARY_RECORD_NAME.test(name) ? { kind: 'temporary' } : { kind: 'other' };
}

/** Whether `name` is a record file, plain or gzipped (what the quota counts and prune may prune). */
export function isRecordFileName(name: string): boolean {
  return parseRecordFileName(name).kind === 'record';
}

/** The file name of the record of `token`: `<token>.json`, or `<token>.json.gz` when compressed. */
export function recordFileName(token: string, options: { readonly compressed?: boolean } = {}): string {
  return options.compressed === true ? `${token}.json.gz` : `${token}.json`;
}

/**
 * A fresh temporary path for writing the record of `token` into `recordsDir`: hidden, and
 * named so that the ledger's recovery can remove it after a crash ({@link TEMPORARY_RECORD_NAME}).
 */
export function temporaryRecordPath(recordsDir: string, token: string): string {
  return join(recordsDir, `.${token}.tmp-${randomBytes(6).toString('hex')}`);
}
