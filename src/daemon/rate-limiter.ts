/**
 * Per-requester rate limits (DESIGN duty 10): one token bucket per requester group and class
 * of request, so that one requester cannot keep the analysis queue full or the ledger busy
 * while others wait. Pure bookkeeping with an injected clock; the daemon decides what to
 * reply and writes the window summaries to the ledger.
 */
import type { RateLimitedEntryInput } from '../evidence/ledger-format.js';

/**
 * Which bucket a request draws from: `analysis` for what costs a process analysis or upstream
 * work (SV, SV_REC, ID_REC), `id` for the rest (ID and lines that do not parse).
 */
export type RateClass = 'analysis' | 'id';

/** One bucket's shape: `perMinute` tokens come back per minute, up to `burst`. 0 per minute: no limit. */
export interface RateLimit {
  readonly perMinute: number;
  readonly burst: number;
}

/** The limits of both classes. */
export interface RateLimits {
  readonly analysis: RateLimit;
  readonly id: RateLimit;
}

export interface RateLimiterOptions extends RateLimits {
  /**
   * Requester groups remembered at most. Past it the least recently seen one is forgotten
   * (its refusals are reported first): memory stays bounded whatever the number of source
   * addresses, at the price of a fresh burst for a requester forgotten and seen again.
   */
  readonly maxRequesters?: number;
  /** Milliseconds since the epoch (tests inject their own). */
  readonly now?: () => number;
}

/** Requests refused to one requester over one window: what goes into a `rate-limited` ledger entry. */
export interface RateLimitReport {
  readonly requester: string;
  /** Start and end of the window, milliseconds since the epoch. */
  readonly windowStart: number;
  readonly windowEnd: number;
  readonly refused: { readonly analysis: number; readonly id: number };
}

/** The verdict on one request. `first`: the first refusal of this requester since its last report. */
export type RateVerdict = { readonly allowed: true } | { readonly allowed: false; readonly first: boolean };

interface Bucket {
  tokens: number;
  at: number;
}

interface Entry {
  readonly analysis: Bucket;
  readonly id: Bucket;
  refusedAnalysis: number;
  refusedId: number;
  /** Start of the window its refusals belong to. */
  since: number;
}

/** Default bound on remembered requester groups: about 200 bytes each, a few MB in all. */
export const DEFAULT_MAX_REQUESTERS = 16_384;

/** Reports of forgotten requesters kept until the next `takeReports`; the rest are summed up. */
const MAX_PENDING_REPORTS = 1024;

/** The requester name of a report that sums up forgotten requesters past MAX_PENDING_REPORTS. */
export const OTHER_REQUESTERS = '*';

/**
 * Token buckets per requester group (`formatRequesterGroup`), refilled continuously, plus the
 * count of refusals since the last report. Memory is bounded by `maxRequesters`; `takeReports`
 * also forgets the requesters whose buckets are full again, which are the same as new ones.
 */
export class RateLimiter {
  #limits: RateLimits;
  readonly #maxRequesters: number;
  readonly #now: () => number;
  /** Map order is recency order: a requester seen is moved to the end. */
  readonly #entries = new Map<string, Entry>();
  readonly #pending: RateLimitReport[] = [];
  #windowStart: number;

  constructor(options: RateLimiterOptions) {
    this.#limits = { analysis: options.analysis, id: options.id };
    this.#maxRequesters = Math.max(1, options.maxRequesters ?? DEFAULT_MAX_REQUESTERS);
    this.#now = options.now ?? Date.now;
    this.#windowStart = this.#now();
  }

  /** New rates and bursts (SIGHUP reload); tokens already held are cut to the new burst when next used. */
  configure(limits: RateLimits): void {
    this.#limits = { analysis: limits.analysis, id: limits.id };
  }

  /** Requester groups remembered now. */
  get size(): number {
    return this.#entries.size;
  }

  /** Takes one token of `rateClass` from `requester`'s bucket, or counts a refusal. */
  admit(requester: string, rateClass: RateClass): RateVerdict {
    const limit = this.#limits[rateClass];
    if (limit.perMinute <= 0) return { allowed: true };
    const now = this.#now();
    let entry = this.#entries.get(requester);
    if (entry === undefined) {
      if (this.#entries.size >= this.#maxRequesters) this.#forgetOldest(now);
      entry = {
        analysis: { tokens: this.#limits.analysis.burst, at: now },
        id: { tokens: this.#limits.id.burst, at: now },
        refusedAnalysis: 0,
        refusedId: 0,
        since: this.#windowStart,
      };
    } else {
      this.#entries.delete(requester);
    }
    this.#entries.set(requester, entry);
    const bucket = entry[rateClass];
    refill(bucket, limit, now);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return { allowed: true };
    }
    const first = entry.refusedAnalysis + entry.refusedId === 0;
    if (rateClass === 'analysis') entry.refusedAnalysis += 1;
    else entry.refusedId += 1;
    return { allowed: false, first };
  }

  /**
   * Ends the current window: one report per requester refused anything in it (and for those
   * forgotten meanwhile), refusal counts back to zero, and requesters whose buckets are full
   * again forgotten.
   */
  takeReports(): RateLimitReport[] {
    const now = this.#now();
    const reports = this.#pending.splice(0);
    for (const [requester, entry] of this.#entries) {
      if (entry.refusedAnalysis + entry.refusedId > 0) {
        reports.push(reportOf(requester, entry, now));
        entry.refusedAnalysis = 0;
        entry.refusedId = 0;
      }
      entry.since = now;
      refill(entry.analysis, this.#limits.analysis, now);
      refill(entry.id, this.#limits.id, now);
      if (isFull(entry.analysis, this.#limits.analysis) && isFull(entry.id, this.#limits.id)) this.#entries.delete(requester);
    }
    this.#windowStart = now;
    return reports;
  }

  #forgetOldest(now: number): void {
    const oldest = this.#entries.keys().next();
    if (oldest.done === true) return;
    const entry = this.#entries.get(oldest.value);
    this.#entries.delete(oldest.value);
    if (entry === undefined || entry.refusedAnalysis + entry.refusedId === 0) return;
    const report = reportOf(oldest.value, entry, now);
    if (this.#pending.length < MAX_PENDING_REPORTS - 1) {
      this.#pending.push(report);
      return;
    }
    // Past the bound, forgotten requesters are summed up in one report rather than dropped.
    const last = this.#pending.at(-1);
    if (last?.requester === OTHER_REQUESTERS) {
      this.#pending[this.#pending.length - 1] = {
        ...last,
        windowEnd: now,
        refused: { analysis: last.refused.analysis + report.refused.analysis, id: last.refused.id + report.refused.id },
      };
    } else {
      this.#pending.push({ ...report, requester: OTHER_REQUESTERS });
    }
  }
}

/** Adds the tokens earned since `bucket.at` (a clock stepping back earns nothing). */
export function refill(bucket: { tokens: number; at: number }, limit: RateLimit, now: number): void {
  const elapsed = Math.max(0, now - bucket.at);
  bucket.tokens = Math.min(limit.burst, bucket.tokens + (elapsed * limit.perMinute) / 60_000);
  bucket.at = Math.max(bucket.at, now);
}

function isFull(bucket: Bucket, limit: RateLimit): boolean {
  return limit.perMinute <= 0 || bucket.tokens >= limit.burst;
}

function reportOf(requester: string, entry: Entry, now: number): RateLimitReport {
  return { requester, windowStart: entry.since, windowEnd: now, refused: { analysis: entry.refusedAnalysis, id: entry.refusedId } };
}

/**
 * The ledger entry of one report (kind `rate-limited`, README "Store layout"): at most one per
 * requester and window, so that the limiter cannot flood the ledger it protects.
 */
export function describeRateLimitReport(report: RateLimitReport, limits: RateLimits): RateLimitedEntryInput {
  return {
    kind: 'rate-limited',
    requester: report.requester,
    window: { start: new Date(report.windowStart).toISOString(), end: new Date(report.windowEnd).toISOString() },
    refused: { analysis: report.refused.analysis, id: report.refused.id },
    limits: {
      analysis: { perMinute: limits.analysis.perMinute, burst: limits.analysis.burst },
      id: { perMinute: limits.id.perMinute, burst: limits.id.burst },
    },
  };
}
