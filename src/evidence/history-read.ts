/**
 * Reading the history journal without the daemon (`stopctl history`): the files are
 * append-only, so they can be read while the daemon writes them (a last line being written is
 * skipped); and the filter the daemon's `HistoryJournal.list` applies too.
 */
import { summarizeSegment, readSegmentLines } from './ledger-segments.js';
import type { HistoryConnection } from './history-entry.js';
import { listHistorySegments, parseHistoryLine, toHistoryConnection } from './history-files.js';

/** Which recorded connections to list; every field given must match. */
export interface HistoryFilter {
  /** Connected at or after (ms since the epoch). */
  readonly since?: number;
  /** Connected at or before (ms since the epoch). */
  readonly until?: number;
  readonly uid?: number;
  /** Either end's address (IPv4-mapped IPv6 matches the IPv4 address). */
  readonly address?: string;
  /** Either end's port. */
  readonly port?: number;
  /** At most this many, the oldest first (default: all). */
  readonly limit?: number;
}

/** Whether a recorded connection passes the filter. */
export function matchesHistoryFilter(connection: HistoryConnection, filter: HistoryFilter): boolean {
  const connectedAt = Date.parse(connection.connectedAt);
  if (filter.since !== undefined && !(connectedAt >= filter.since)) return false;
  if (filter.until !== undefined && !(connectedAt <= filter.until)) return false;
  if (filter.uid !== undefined && connection.uid !== filter.uid) return false;
  if (filter.port !== undefined && connection.local.port !== filter.port && connection.remote.port !== filter.port) return false;
  if (filter.address !== undefined) {
    const wanted = normalize(filter.address);
    if (normalize(connection.local.address) !== wanted && normalize(connection.remote.address) !== wanted) return false;
  }
  return true;
}

function normalize(address: string): string {
  const lower = address.toLowerCase();
  return lower.startsWith('::ffff:') && lower.includes('.') ? lower.slice(7) : lower;
}

/**
 * The recorded connections of the journal in `storeDir` that pass `filter`, oldest first, with
 * their close times. Segments whose last entry was written before `since` are skipped unread.
 * No journal: an empty list.
 */
export async function readHistory(storeDir: string, filter: HistoryFilter = {}): Promise<HistoryConnection[]> {
  const found = new Map<number, HistoryConnection>();
  const limit = filter.limit ?? Number.POSITIVE_INFINITY;
  for (const segment of listHistorySegments(storeDir)) {
    if (filter.since !== undefined && !segment.active) {
      const last = summarizeSegment(segment.path).last;
      if (last?.time !== undefined && Date.parse(last.time) < filter.since) continue;
    }
    for await (const line of readSegmentLines(segment)) {
      if (!line.complete) break; // being written
      const entry = parseHistoryLine(line.bytes.toString('utf8'));
      if (entry === undefined) continue; // damage is for `stopctl verify` to report
      if (entry.kind === 'close') {
        const open = found.get(entry.open);
        if (open !== undefined) found.set(entry.open, { ...open, closedAt: entry.closedAt });
        continue;
      }
      if (entry.kind !== 'open' || found.size >= limit) continue;
      const connection = toHistoryConnection(entry, null);
      if (matchesHistoryFilter(connection, filter)) found.set(connection.seq, connection);
    }
  }
  return [...found.values()];
}
