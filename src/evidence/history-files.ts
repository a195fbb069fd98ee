/**
 * The history journal's files and lines (issue 14): the one module that knows the on-disk
 * format of `<store>/history/`, used by the writer (history-journal.ts), `stopctl history`
 * (history-read.ts) and `stopctl verify` (history-verify.ts).
 *
 * Layout. `<store>/history/` (mode 0700) holds segment files `<first seq, 16 digits>.history`
 * (mode 0600); the newest is the one written. Each line is one JSON entry with `seq`, `time`
 * and `prev` (the SHA-256 of the line before, across files; 64 zeros before the first), the
 * same chain as the ledger's (ledger.ts), so a deleted, altered or reordered line is found by
 * the same checks. Entries:
 * - `open`: one recorded outbound connection, the fields of a HistoryConnection but `seq`
 *   (the entry's own seq is the connection's);
 * - `close`: `{open, closedAt, socket}`: the connection opened by entry `open` was closed;
 * - `stop`: the daemon closed the journal cleanly (the recorder is off from here on).
 *
 * Lines carry no MAC of their own: the journal is anchored in the ledger instead, whose
 * entries are MACed when a key is installed. Every sealed segment's last hash is written to
 * the ledger (`history-sealed`), so is the head at each clean stop (`history-checkpoint`) and
 * every segment dropped by retention (`history-dropped`).
 */
import { join } from 'node:path';
import { readdirSync } from 'node:fs';
import type { Endpoint } from '../host/types.js';
import type { HistoryConnection } from './history-entry.js';
import type { LedgerSegment } from './ledger-segments.js';

/** The journal's directory inside a store. */
export function historyDirOf(storeDir: string): string {
  return join(storeDir, 'history');
}

/** The file name of the segment whose first entry has `firstSeq`. */
export function formatHistorySegmentName(firstSeq: number): string {
  return `${String(firstSeq).padStart(16, '0')}.history`;
}

const SEGMENT_NAME = /^(\d{16})\.history$/;

/** One file of the journal: the shape of a ledger segment, so ledger-segments.ts reads it. */
export interface HistorySegment extends LedgerSegment {
  readonly firstSeq: number;
}

/** The journal's segments, oldest first; the last one is the active file. Missing directory: none. */
export function listHistorySegments(storeDir: string): HistorySegment[] {
  const dir = historyDirOf(storeDir);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  const segments: HistorySegment[] = [];
  for (const name of names) {
    const match = SEGMENT_NAME.exec(name);
    if (match === null) continue;
    segments.push({ path: join(dir, name), name: `history/${name}`, firstSeq: Number(match[1]), active: false });
  }
  segments.sort((a, b) => a.firstSeq - b.firstSeq);
  const last = segments.at(-1);
  if (last !== undefined) segments[segments.length - 1] = { ...last, active: true };
  return segments;
}

/** What the journal is given to write: a connection opened, or one closed. */
export type HistoryAppendItem =
  | { readonly kind: 'open'; readonly connection: Omit<HistoryConnection, 'seq'> }
  | {
      readonly kind: 'close';
      readonly socket: string;
      readonly local: Endpoint;
      readonly remote: Endpoint;
      /** Milliseconds since the epoch. */
      readonly closedAt: number;
    };

/** An entry as stored (one line). */
export type HistoryLineEntry =
  | ({ readonly seq: number; readonly time: string; readonly prev: string; readonly kind: 'open' } & Omit<HistoryConnection, 'seq'>)
  | { readonly seq: number; readonly time: string; readonly prev: string; readonly kind: 'close'; readonly open: number; readonly closedAt: string; readonly socket: string }
  | { readonly seq: number; readonly time: string; readonly prev: string; readonly kind: 'stop' };

/** The body of an entry before the journal numbers and chains it. */
export type HistoryEntryBody =
  | ({ readonly kind: 'open' } & Omit<HistoryConnection, 'seq'>)
  | { readonly kind: 'close'; readonly open: number; readonly closedAt: string; readonly socket: string }
  | { readonly kind: 'stop' };

/**
 * The line of an entry: seq, time and prev first (as the ledger's), then the body, its members
 * in a fixed order so that the start of a line holds what the index needs ({@link scanHistoryIndexFields}).
 */
export function formatHistoryLine(head: { seq: number; time: string; prev: string }, body: HistoryEntryBody): string {
  if (body.kind !== 'open') return JSON.stringify({ seq: head.seq, time: head.time, prev: head.prev, ...body });
  return JSON.stringify({
    seq: head.seq,
    time: head.time,
    prev: head.prev,
    kind: 'open',
    socket: body.socket,
    netns: body.netns,
    local: { address: body.local.address, port: body.local.port },
    remote: { address: body.remote.address, port: body.remote.port },
    connectedAt: body.connectedAt,
    establishedAt: body.establishedAt,
    closedAt: body.closedAt,
    tid: body.tid,
    pid: body.pid,
    uid: body.uid,
    gid: body.gid,
    loginuid: body.loginuid,
    sessionid: body.sessionid,
    comm: body.comm,
    capturedAt: body.capturedAt,
    ancestry: body.ancestry,
    upstream: body.upstream,
  });
}

/** What the index keeps of an entry. */
export type HistoryIndexFields =
  | { readonly seq: number; readonly time: string; readonly kind: 'open'; readonly local: Endpoint; readonly remote: Endpoint; readonly closedAt: string | null }
  | { readonly seq: number; readonly time: string; readonly kind: 'close'; readonly open: number; readonly closedAt: string }
  | { readonly seq: number; readonly time: string; readonly kind: 'stop' };

const OPEN_PREFIX =
  /^\{"seq":(\d+),"time":"([^"]+)","prev":"[0-9a-f]{64}","kind":"open","socket":"[^"]*","netns":\d+,"local":\{"address":"([^"]+)","port":(\d+)\},"remote":\{"address":"([^"]+)","port":(\d+)\},"connectedAt":"[^"]+","establishedAt":(?:null|"[^"]+"),"closedAt":(null|"[^"]+")/;
const CLOSE_PREFIX = /^\{"seq":(\d+),"time":"([^"]+)","prev":"[0-9a-f]{64}","kind":"close","open":(\d+),"closedAt":"([^"]+)"/;

/**
 * The index's fields of one line, read from its first bytes when it has the writer's member
 * order (a million lines are indexed at start without parsing their captures), else from the
 * whole line. Undefined when the line is not an entry.
 */
export function scanHistoryIndexFields(buffer: Buffer, start: number, end: number): HistoryIndexFields | undefined {
  const prefix = buffer.toString('utf8', start, Math.min(end, start + 768));
  const open = OPEN_PREFIX.exec(prefix);
  if (open !== null) {
    const closedAt = open[7] === 'null' || open[7] === undefined ? null : open[7].slice(1, -1);
    return { seq: Number(open[1]), time: open[2] ?? '', kind: 'open', local: { address: open[3] ?? '', port: Number(open[4]) }, remote: { address: open[5] ?? '', port: Number(open[6]) }, closedAt };
  }
  const close = CLOSE_PREFIX.exec(prefix);
  if (close !== null) return { seq: Number(close[1]), time: close[2] ?? '', kind: 'close', open: Number(close[3]), closedAt: close[4] ?? '' };
  const entry = parseHistoryLine(buffer.toString('utf8', start, end));
  if (entry === undefined) return undefined;
  if (entry.kind === 'open') return { seq: entry.seq, time: entry.time, kind: 'open', local: entry.local, remote: entry.remote, closedAt: entry.closedAt };
  if (entry.kind === 'close') return { seq: entry.seq, time: entry.time, kind: 'close', open: entry.open, closedAt: entry.closedAt };
  return { seq: entry.seq, time: entry.time, kind: 'stop' };
}

/** Parses one line; undefined when it is not a journal entry (verify reports such lines). */
export function parseHistoryLine(line: string): HistoryLineEntry | undefined {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  const entry = value as Record<string, unknown>;
  if (!Number.isSafeInteger(entry.seq) || typeof entry.time !== 'string' || typeof entry.prev !== 'string') return undefined;
  if (entry.kind === 'open') {
    if (!isEndpoint(entry.local) || !isEndpoint(entry.remote) || typeof entry.connectedAt !== 'string') return undefined;
    return value as HistoryLineEntry;
  }
  if (entry.kind === 'close') return Number.isSafeInteger(entry.open) && typeof entry.closedAt === 'string' ? (value as HistoryLineEntry) : undefined;
  if (entry.kind === 'stop') return value as HistoryLineEntry;
  return undefined;
}

function isEndpoint(value: unknown): value is Endpoint {
  if (typeof value !== 'object' || value === null) return false;
  const endpoint = value as Record<string, unknown>;
  return typeof endpoint.address === 'string' && Number.isInteger(endpoint.port);
}

/** The connection an `open` entry records, with the close time known so far. */
export function toHistoryConnection(entry: HistoryLineEntry & { kind: 'open' }, closedAt: string | null): HistoryConnection {
  // eslint-disable-next-line @typescript-eslint/no-unused-vars
  const { time: _time, prev: _prev, kind: _kind, ...connection } = entry;
  return { ...connection, closedAt: closedAt ?? connection.closedAt ?? null };
}

/**
 * The index key of a 4-tuple. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are the IPv4
 * address (DESIGN "Host view"), and IPv6 is compared in lower case.
 */
export function formatTupleKey(local: Endpoint, remote: Endpoint): string {
  return `${normalizeAddress(local.address)} ${local.port} ${normalizeAddress(remote.address)} ${remote.port}`;
}

function normalizeAddress(address: string): string {
  const lower = address.toLowerCase();
  return lower.startsWith('::ffff:') && lower.includes('.') ? lower.slice(7) : lower;
}
