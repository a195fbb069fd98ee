/**
 * Store quotas (issue 5, part 4; issue 13; DESIGN duty 10): limits on the SV records kept in
 * `records/`, by count and by total size (1 GiB by default), and a share of those limits per
 * requester group (`formatRequesterGroup`: an IPv4 address, an IPv6 /64), so that one
 * requester asking SV again and again fills its share, not the store. At a limit the daemon
 * still replies as usual (paper 3.3: the per-request data "may not be saved" when space is an
 * issue); the ledger then says that the record was not kept, and why, in a
 * {@link RecordNotKeptEntryInput} written before the reply.
 *
 * Refuse, never evict: a record already kept is evidence somebody may come back for, and
 * deleting it to make room would let whoever sends the most requests choose which evidence
 * disappears. The requester over its share is the one whose new records are not kept; the
 * others keep their room. Only records are limited here; the ledger has its own retention
 * (ledger.ts, `--ledger-max-bytes`).
 *
 * Usage is counted once when the store opens (one scan of `records/`) and then kept up to
 * date by the daemon itself, never by rescanning per request. Only the daemon writes records
 * while it runs, and `stopctl prune` runs only while the daemon is stopped (it takes the
 * store lock), so the count stays right. The ledger is not counted: it is never given up.
 */
import { open, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { UsageError } from '../errors.js';
import { formatRequesterGroup } from '../protocol/index.js';
import type { RecordNotKeptEntryInput } from './ledger-format.js';
import { isRecordFileName } from './record-files.js';

/** The limits; an absent one is no limit. */
export interface QuotaLimits {
  readonly maxRecords?: number;
  readonly maxBytes?: number;
  /**
   * The part of each limit one requester group may use (0 < share <= 1; `--max-requester-share`
   * as a fraction). Absent or 1: no share.
   */
  readonly requesterShare?: number;
}

/** Records in the store: how many, and their bytes on disk. */
export interface QuotaUsage {
  readonly records: number;
  readonly bytes: number;
}

/** Why a record is not kept. */
export interface QuotaRefusal {
  readonly reason: 'max-records' | 'max-store-bytes' | 'requester-share';
  /** The limit reached: records or bytes (for `requester-share`, the group's share of `of`). */
  readonly limit: number;
  /** The usage counted against it: the store's, or the group's for `requester-share`. */
  readonly usage: QuotaUsage;
  /** `requester-share`: the group, which limit its share is of, and the share in percent. */
  readonly group?: string;
  readonly of?: 'max-records' | 'max-store-bytes';
  readonly sharePercent?: number;
}

/** Usage per requester group (records whose requester cannot be read count for the store only). */
export type GroupUsage = Map<string, { records: number; bytes: number }>;

/**
 * Counts the record files of `recordsDir` and their sizes (temporary files are not records);
 * with `groups`, also per requester group, read from each record's end (canonical JSON sorts
 * `request` after the long `processes`; gzipped records count for the store only).
 */
export async function measureRecords(recordsDir: string, options: { groups?: GroupUsage } = {}): Promise<QuotaUsage> {
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
    if (!isRecordFileName(name)) continue;
    try {
      const path = join(recordsDir, name);
      const info = await stat(path);
      if (!info.isFile()) continue;
      records += 1;
      bytes += info.size;
      const group = options.groups === undefined || name.endsWith('.gz') ? undefined : await readRecordGroup(path, info.size);
      if (group !== undefined) addTo(options.groups, group, 1, info.size);
    } catch {
      // Removed while we looked: not there.
    }
  }
  return { records, bytes };
}

/** Bytes read from a record's end to find its requester: `request`, `salt`, `sid`, `time`, `type`, `utmp`, ... */
const GROUP_TAIL_BYTES = 64 * 1024;
// In canonical JSON a quote inside a string is escaped, so a command line cannot forge this.
const REQUESTER_ADDRESS = /"requester":\{"address":"([^"\\]{1,64})"/g;

async function readRecordGroup(path: string, size: number): Promise<string | undefined> {
  const handle = await open(path, 'r');
  try {
    const length = Math.min(size, GROUP_TAIL_BYTES);
    const buf = Buffer.alloc(length);
    await handle.read(buf, 0, length, size - length);
    let address: string | undefined;
    for (const match of buf.toString('utf8').matchAll(REQUESTER_ADDRESS)) address = match[1];
    return address === undefined ? undefined : formatRequesterGroup(address);
  } finally {
    await handle.close();
  }
}

function addTo(groups: GroupUsage | undefined, group: string, records: number, bytes: number): void {
  if (groups === undefined) return;
  const usage = groups.get(group) ?? { records: 0, bytes: 0 };
  usage.records = Math.max(0, usage.records + records);
  usage.bytes = Math.max(0, usage.bytes + bytes);
  if (usage.records === 0) groups.delete(group);
  else groups.set(group, usage);
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
  readonly #groups: GroupUsage;

  constructor(limits: QuotaLimits, usage: QuotaUsage = { records: 0, bytes: 0 }, groups: GroupUsage = new Map()) {
    this.limits = limits;
    this.#records = usage.records;
    this.#bytes = usage.bytes;
    this.#groups = groups;
  }

  /** Scans `recordsDir` once for the starting usage (per requester group too, when there are shares). */
  static async open(recordsDir: string, limits: QuotaLimits): Promise<StoreQuota> {
    const groups: GroupUsage = new Map();
    const shared = limits.requesterShare !== undefined && limits.requesterShare < 1;
    const usage = await measureRecords(recordsDir, shared ? { groups } : {});
    return new StoreQuota(limits, usage, groups);
  }

  /** The usage of one requester group, reservations included. */
  groupUsage(group: string): QuotaUsage {
    const usage = this.#groups.get(group);
    return { records: usage?.records ?? 0, bytes: usage?.bytes ?? 0 };
  }

  /** Current usage, reservations included. */
  get usage(): QuotaUsage {
    return { records: this.#records, bytes: this.#bytes };
  }

  /**
   * Reserves room for a record of `size` bytes asked for by requester `group`; undefined when
   * admitted, else why not. The group's share is checked first: a flooding requester is told
   * "your share", and the store's own limit is only reached when many groups fill it together.
   */
  admit(size: number, group?: string): QuotaRefusal | undefined {
    const { maxRecords, maxBytes, requesterShare } = this.limits;
    if (group !== undefined && requesterShare !== undefined && requesterShare < 1) {
      const mine = this.groupUsage(group);
      const sharePercent = Math.round(requesterShare * 1000) / 10;
      if (maxRecords !== undefined && mine.records + 1 > shareOf(maxRecords, requesterShare)) {
        return { reason: 'requester-share', limit: shareOf(maxRecords, requesterShare), usage: mine, group, of: 'max-records', sharePercent };
      }
      if (maxBytes !== undefined && mine.bytes + size > shareOf(maxBytes, requesterShare)) {
        return { reason: 'requester-share', limit: shareOf(maxBytes, requesterShare), usage: mine, group, of: 'max-store-bytes', sharePercent };
      }
    }
    if (maxRecords !== undefined && this.#records + 1 > maxRecords) {
      return { reason: 'max-records', limit: maxRecords, usage: this.usage };
    }
    if (maxBytes !== undefined && this.#bytes + size > maxBytes) {
      return { reason: 'max-store-bytes', limit: maxBytes, usage: this.usage };
    }
    this.#records += 1;
    this.#bytes += size;
    if (group !== undefined) addTo(this.#groups, group, 1, size);
    return undefined;
  }

  /** Gives back a reservation whose record was not written after all. */
  release(size: number, group?: string): void {
    this.#records = Math.max(0, this.#records - 1);
    this.#bytes = Math.max(0, this.#bytes - size);
    if (group !== undefined) addTo(this.#groups, group, -1, -size);
  }
}

/** A group's part of a limit: at least one record's worth, so a tiny limit still admits someone. */
function shareOf(limit: number, share: number): number {
  return Math.max(1, Math.floor(limit * share));
}

/** The ledger entry saying that the record of `token` was not kept, and why. */
export function describeRecordNotKept(token: string, refusal: QuotaRefusal, bytes: number): RecordNotKeptEntryInput {
  return {
    kind: 'record-not-kept',
    record: token,
    reason: refusal.reason,
    limit: refusal.limit,
    usage: refusal.usage,
    ...(refusal.group === undefined ? {} : { group: refusal.group, of: refusal.of, sharePercent: refusal.sharePercent }),
    bytes,
  };
}

/** A sentence for `stopctl redeem`: why a record is missing. */
export function explainRecordNotKept(entry: { readonly [field: string]: unknown } | RecordNotKeptEntryInput): string {
  const limit = typeof entry.limit === 'number' ? entry.limit : undefined;
  if (entry.reason === 'max-records') return `record not kept: store quota (--max-records ${limit ?? '?'} reached)`;
  if (entry.reason === 'max-store-bytes') return `record not kept: store quota (--max-store-bytes ${limit ?? '?'} reached)`;
  if (entry.reason === 'requester-share') {
    const group = typeof entry.group === 'string' ? entry.group : '?';
    const share = typeof entry.sharePercent === 'number' ? `${entry.sharePercent}%` : '?';
    const of = entry.of === 'max-records' ? `${limit ?? '?'} records` : `${limit ?? '?'} bytes`;
    return `record not kept: requester ${group} reached its share of the store (--max-requester-share ${share}: ${of})`;
  }
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
