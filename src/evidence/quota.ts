/**
 * Store quotas (issue 5, part 4; DESIGN duty 10): limits on the SV records kept in
 * `records/`, by count and by total size. At the limit the daemon still replies as usual
 * (paper 3.3: the per-request data "may not be saved" when space is an issue); the ledger then
 * says that the record was not kept, in a {@link RecordNotKeptEntry} written before the reply.
 *
 * Usage is counted once when the store opens (one scan of `records/`) and then kept up to
 * date by the daemon itself, never by rescanning per request. Only the daemon writes records
 * while it runs, and `stopctl prune` runs only while the daemon is stopped (it takes the
 * store lock), so the count stays right. The ledger is not counted: it is never given up.
 */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { UsageError } from '../errors.js';

/** The limits; an absent one is no limit. */
export interface QuotaLimits {
  readonly maxRecords?: number;
  readonly maxBytes?: number;
}

/** Records in the store: how many, and their bytes on disk. */
export interface QuotaUsage {
  readonly records: number;
  readonly bytes: number;
}

/** Why a record is not kept. */
export interface QuotaRefusal {
  readonly reason: 'max-records' | 'max-store-bytes';
  readonly limit: number;
  readonly usage: QuotaUsage;
}

/**
 * The ledger entry written instead of a record at the limit (`kind: "record-not-kept"`).
 * `record` is the token replied: the hash of the bytes that would have been saved, so the
 * reply has the same form as every other.
 */
export interface RecordNotKeptEntryInput {
  readonly kind: 'record-not-kept';
  readonly record: string;
  readonly reason: QuotaRefusal['reason'];
  readonly limit: number;
  readonly usage: QuotaUsage;
  /** Size of the record that was not saved. */
  readonly bytes: number;
  readonly [field: string]: unknown;
}

/** Names of record files: `<token>.json`, or `<token>.json.gz` after `stopctl prune --gzip`. */
export const RECORD_FILE = /^(?:[0-9a-f]{40}|[0-9a-f]{64})\.json(?:\.gz)?$/;

/** Counts the record files of `recordsDir` and their sizes (temporary files are not records). */
export async function measureRecords(recordsDir: string): Promise<QuotaUsage> {
  let names: string[];
  try {
    names = await readdir(recordsDir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { records: 0, bytes: 0 };
    throw error;
  }
  let records = 0;
  let bytes = 0;
  for (const name of names) {
    if (!RECORD_FILE.test(name)) continue;
    try {
      const info = await stat(join(recordsDir, name));
      if (!info.isFile()) continue;
      records += 1;
      bytes += info.size;
    } catch {
      // Removed while we looked: not there.
    }
  }
  return { records, bytes };
}

/**
 * The record quota of one store. `admit` reserves room for a record before it is written
 * (so that concurrent requests cannot all pass the last free slot); `release` gives the room
 * back when the write failed.
 */
export class StoreQuota {
  readonly limits: QuotaLimits;
  #records: number;
  #bytes: number;

  constructor(limits: QuotaLimits, usage: QuotaUsage = { records: 0, bytes: 0 }) {
    this.limits = limits;
    this.#records = usage.records;
    this.#bytes = usage.bytes;
  }

  /** Scans `recordsDir` once for the starting usage. */
  static async open(recordsDir: string, limits: QuotaLimits): Promise<StoreQuota> {
    return new StoreQuota(limits, await measureRecords(recordsDir));
  }

  /** Current usage, reservations included. */
  get usage(): QuotaUsage {
    return { records: this.#records, bytes: this.#bytes };
  }

  /** Reserves room for a record of `size` bytes; undefined when admitted, else why not. */
  admit(size: number): QuotaRefusal | undefined {
    const { maxRecords, maxBytes } = this.limits;
    if (maxRecords !== undefined && this.#records + 1 > maxRecords) {
      return { reason: 'max-records', limit: maxRecords, usage: this.usage };
    }
    if (maxBytes !== undefined && this.#bytes + size > maxBytes) {
      return { reason: 'max-store-bytes', limit: maxBytes, usage: this.usage };
    }
    this.#records += 1;
    this.#bytes += size;
    return undefined;
  }

  /** Gives back a reservation whose record was not written after all. */
  release(size: number): void {
    this.#records = Math.max(0, this.#records - 1);
    this.#bytes = Math.max(0, this.#bytes - size);
  }
}

/** The ledger entry saying that the record of `token` was not kept, and why. */
export function describeRecordNotKept(token: string, refusal: QuotaRefusal, bytes: number): RecordNotKeptEntryInput {
  return { kind: 'record-not-kept', record: token, reason: refusal.reason, limit: refusal.limit, usage: refusal.usage, bytes };
}

/** A sentence for `stopctl redeem`: why a record is missing. */
export function explainRecordNotKept(entry: { readonly [field: string]: unknown }): string {
  const limit = typeof entry.limit === 'number' ? entry.limit : undefined;
  if (entry.reason === 'max-records') return `record not kept: store quota (--max-records ${limit ?? '?'} reached)`;
  if (entry.reason === 'max-store-bytes') return `record not kept: store quota (--max-store-bytes ${limit ?? '?'} reached)`;
  return 'record not kept: store quota';
}

const SIZE_UNITS: Readonly<Record<string, number>> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/**
 * Parses a byte count for `--max-store-bytes`: a whole number with an optional binary unit
 * (`K`, `M`, `G`, `T`, optionally followed by `iB` or `B`; case-insensitive), e.g. `500M`.
 */
export function parseByteSize(text: string, name = '--max-store-bytes'): number {
  const match = /^(\d+)\s*([kmgt]?)(?:i?b)?$/i.exec(text.trim());
  const unit = SIZE_UNITS[(match?.[2] ?? '').toLowerCase()];
  const value = match === null || unit === undefined ? NaN : Number(match[1]) * unit;
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new UsageError(`${name} must be a size in bytes such as 1048576, 500M or 2G, not ${JSON.stringify(text)}`);
  }
  return value;
}
