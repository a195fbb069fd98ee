/**
 * The ledger's line format (DESIGN "Evidence"), owned here and nowhere else: one JSON object
 * per line, `{"seq":N,"time":ISO,"prev":HASH,"kind":K,...,"mac":MAC}`.
 * - `seq` counts entries from 1; `time` is when the entry was queued;
 * - `prev` is the SHA-256 (hex) of the previous line's bytes without its newline
 *   ({@link hashLine}), {@link GENESIS_HASH} for the first: the hash chain;
 * - `mac`, once a key is installed, is the forward-secure HMAC of the line without it, always
 *   the last member (forward-mac.ts), so the MACed bytes can be recovered exactly;
 * - the rest is the entry's kind and its fields: one type per kind below, which the writers
 *   build ({@link LedgerEntryInput}) and the readers narrow to ({@link isReplyEntry}, ...).
 *
 * The ledger writer (ledger.ts) serialises with {@link formatLedgerLine}; every reader parses
 * with {@link parseLedgerLine} (any JSON object, as `readLedger` shows it) or
 * {@link parseLedgerEntry} (only lines with a valid seq and prev, as verify counts them).
 * Where the lines are (segments) is ledger-segments.ts's business, how they are read is
 * line-reader.ts's.
 */
import { createHash } from 'node:crypto';
import type { Endpoint } from '../host/types.js';
import { appendEntryMac, computeEntryMac } from './forward-mac.js';
import type { QuotaRefusal, QuotaUsage } from './quota.js';

/** The `prev` of the first entry: 64 zeros. */
export const GENESIS_HASH = '0'.repeat(64);

/** SHA-256 hex of one ledger line (without newline): the `prev` of the next entry. */
export function hashLine(line: string | Uint8Array): string {
  return createHash('sha256').update(line).digest('hex');
}

/** The members the ledger itself gives every entry (a caller's members of these names are dropped). */
export interface LedgerEntryFields {
  readonly seq: number;
  readonly time: string;
  /** SHA-256 hex of the previous line's bytes (without its newline). */
  readonly prev: string;
  /** Forward-secure HMAC of the line without this member (see forward-mac.ts); absent before a key is installed. */
  readonly mac?: string;
}

/**
 * An entry as read back: any JSON object line. Its members are whatever the file says (a
 * ledger can be altered): narrow with the `is...Entry` guards, and check what you rely on.
 */
export interface LedgerEntry extends LedgerEntryFields {
  readonly kind: string;
  readonly [field: string]: unknown;
}

/**
 * The ledger entry of one answered request (`kind: "reply"`): what `stopctl redeem` shows
 * for ID tokens. Fields are absent when they do not apply (an unparsable line has no type).
 */
export interface ReplyEntryInput {
  readonly kind: 'reply';
  /** The request line exactly as received (without its line end). */
  readonly request: string;
  readonly requester: Endpoint;
  readonly requestError?: string;
  readonly type?: string;
  /** How the request was handled, when that differs from its type. */
  readonly answeredAs?: string;
  readonly sid?: string;
  readonly clientIp?: string;
  /** `translated`: a `--nat` gateway translated the connection (issue 15; `translation` says how). */
  readonly finding?: 'not-found' | 'not-established' | 'inbound' | 'outbound' | 'translated';
  readonly lookupError?: string;
  readonly connection?: { readonly local: Endpoint; readonly remote: Endpoint; readonly state: string; readonly inode: number };
  readonly uid?: number;
  readonly user?: string | null;
  /**
   * Where the connection was found: `live` in the socket table, `history` in the history
   * journal (issue 14). Absent in entries made before history existed (live).
   */
  readonly source?: 'live' | 'history';
  /** `source: history`: the journal entry's seq, and what it says of the connecting process. */
  readonly history?: number;
  readonly pid?: number;
  readonly comm?: string;
  readonly loginuid?: number;
  readonly connectedAt?: string;
  readonly closedAt?: string | null;
  /** `finding: translated`: the conntrack flow (both tuples) and where it was found (`conntrack` or the NAT journal). */
  readonly translation?: Readonly<Record<string, unknown>>;
  readonly decision: 'token' | 'user' | 'error' | 'close';
  readonly reason?: string;
  readonly replaces?: string;
  readonly error?: string;
  readonly precise?: string;
  readonly token?: string;
  /** SV/SV_REC: the record's token (the same as `token`). */
  readonly record?: string;
  /** Processes in the analysed closure (SV, SV_REC, ID_REC). */
  readonly processes?: number;
  /** ID_REC/SV_REC: how many upstream hosts were found (each gets an `upstream` entry). */
  readonly upstream?: number;
  /** False for a recursive request that was not processed (a repeat, or over budget). */
  readonly processed?: boolean;
  readonly evidenceError?: string;
}

/**
 * How one upstream question ended (the `outcome` of an `upstream` entry). The upstream host may
 * be hostile (it is whoever the attacker connected from), so everything but `token` says why
 * nothing usable came back: `line-too-long` (more than 1024 bytes without an end of line),
 * `bad-token` (an `OTHER` id that is not a plain token: control characters, quotes, over 512
 * characters), `wrong-ports` (a well-formed reply for another port pair), `protocol` (any other
 * line that is not a reply), `timeout` (no complete line in time, dripping bytes included).
 */
export type UpstreamOutcome =
  | 'token'
  | 'user'
  | 'error'
  | 'refused'
  | 'timeout'
  | 'unreachable'
  | 'protocol'
  | 'line-too-long'
  | 'bad-token'
  | 'wrong-ports'
  | 'skipped';

/** The ledger entry of one upstream question of a recursive request (`kind: "upstream"`). */
export interface UpstreamEntryInput {
  readonly kind: 'upstream';
  /** The local token the question belongs to. */
  readonly parentToken: string;
  readonly type: string;
  /** Absent for an `ID` question through a NAT gateway (`--nat`), which has none. */
  readonly sid?: string;
  /** The upstream STOP daemon asked. */
  readonly peer: Endpoint;
  /** The connection asked about, as this host sees it. */
  readonly connection: { readonly local: Endpoint; readonly remote: Endpoint };
  /** `inbound`, `unknown` (recursion), or `translated` (`--nat`: the host behind the translation). */
  readonly direction: string;
  readonly pids: readonly number[];
  /** The request line sent. */
  readonly request: string;
  readonly outcome: UpstreamOutcome;
  /** A plain token (letters, digits, `-._~+/=`), only for `token`. */
  readonly token?: string;
  /** The rest are upstream text, stored escaped (printable ASCII, `\\` and `\xNN`) and bounded. */
  readonly user?: string;
  readonly error?: string;
  /** The reply line as received, escaped, at most 600 characters (then `replyLength` says how long it was). */
  readonly reply?: string;
  readonly replyLength?: number;
  readonly message?: string;
  /** Milliseconds from the first connection attempt to the outcome. */
  readonly elapsedMs?: number;
}

/**
 * What the ledger says about failures and crashes (`kind: "recovery"`): at open (a cut last
 * line, records whose reply never reached the ledger, a key state ahead of the ledger) and
 * after failed group commits. `note` says it in words; each other member is present when it applies.
 */
export interface RecoveryEntryInput {
  readonly kind: 'recovery';
  readonly note: string;
  /** The bytes of a partial last line, base64, cut off at open. */
  readonly discarded?: string;
  /** Seqs the key state had reached but the ledger does not hold. */
  readonly missingEntries?: { readonly from: number; readonly to: number };
  readonly removedTemporaryFiles?: readonly string[];
  /** SV records saved for requests whose token was never sent. */
  readonly unrepliedRecords?: readonly string[];
  /** Failed group commits since the last successful one, the last error, and what became of their entries. */
  readonly failures?: number;
  readonly error?: string;
  readonly rejectedSeqs?: readonly number[];
  readonly lostEntries?: number;
}

/** The first entry MACed with a new key (`kind: "key-installed"`). */
export interface KeyInstalledEntryInput {
  readonly kind: 'key-installed';
  readonly keyId: string;
  readonly note: string;
}

/** The entry that starts every rotated-to active file (`kind: "segment-start"`). */
export interface SegmentStartEntryInput {
  readonly kind: 'segment-start';
  /** The segment before this one: its file, first and last seq, and the hash of its last line (this entry's prev). */
  readonly previous: { readonly segment: string; readonly firstSeq: number; readonly lastSeq: number; readonly lastHash: string };
  /** The ledger key's epoch, so that MACs can be checked after the key-installed entry was dropped. */
  readonly keyId?: string;
  readonly installSeq?: number;
  readonly note: string;
}

/** The entry written before a segment is deleted by retention (`kind: "segment-dropped"`). */
export interface SegmentDroppedEntryInput {
  readonly kind: 'segment-dropped';
  readonly segment: string;
  readonly firstSeq: number;
  readonly lastSeq: number;
  /** SHA-256 of the segment's last line: the prev of the first kept entry (seq lastSeq + 1). */
  readonly lastHash: string;
  readonly lastTime: string | null;
  readonly bytes: number;
  readonly reason: 'ledger-max-bytes' | 'ledger-retention';
  readonly limit: number;
  readonly note: string;
}

/** The ledger entry of one pruned record (`kind: "prune"`, `stopctl prune`). */
export interface PruneEntryInput {
  readonly kind: 'prune';
  /** The record's token. */
  readonly record: string;
  readonly action: 'removed' | 'gzipped';
  /** Whether the bytes still matched the token when they were pruned. */
  readonly verified: boolean;
  /** Size of the record (uncompressed). */
  readonly bytes: number;
  /** When the record file was last modified. */
  readonly modified: string;
  readonly olderThanDays: number;
}

/** The summary of one `stopctl prune` run (`kind: "prune-run"`). */
export interface PruneRunEntryInput {
  readonly kind: 'prune-run';
  readonly olderThanDays: number;
  readonly cutoff: string;
  readonly action: 'gzip' | 'remove';
  readonly removed: number;
  readonly gzipped: number;
  readonly failed: number;
}

/**
 * The ledger entry written instead of a record at the limit (`kind: "record-not-kept"`,
 * quota.ts). `record` is the token replied: the hash of the bytes that would have been
 * saved, so the reply has the same form as every other.
 */
export interface RecordNotKeptEntryInput {
  readonly kind: 'record-not-kept';
  readonly record: string;
  readonly reason: QuotaRefusal['reason'];
  readonly limit: number;
  readonly usage: QuotaUsage;
  /** `requester-share`: the group, which limit its share is of, and the share in percent. */
  readonly group?: string;
  readonly of?: QuotaRefusal['of'];
  readonly sharePercent?: number | undefined;
  /** Size of the record that was not saved. */
  readonly bytes: number;
}

/** One requester's refusals by the rate limiter in one window (`kind: "rate-limited"`, at most one per requester and window). */
export interface RateLimitedEntryInput {
  readonly kind: 'rate-limited';
  readonly requester: string;
  readonly window: { readonly start: string; readonly end: string };
  readonly refused: { readonly analysis: number; readonly id: number };
  readonly limits: {
    readonly analysis: { readonly perMinute: number; readonly burst: number };
    readonly id: { readonly perMinute: number; readonly burst: number };
  };
}

/** A history journal segment is complete (`kind: "history-sealed"`, history-journal.ts): the hash of its last line anchors it here. */
export interface HistorySealedEntryInput {
  readonly kind: 'history-sealed';
  /** `history/<first seq>.history`. */
  readonly segment: string;
  readonly firstSeq: number;
  readonly lastSeq: number;
  /** SHA-256 of the segment's last line. */
  readonly lastHash: string;
  readonly lastTime: string | null;
  readonly bytes: number;
  readonly note: string;
}

/** The history journal's head at a clean stop (`kind: "history-checkpoint"`). */
export interface HistoryCheckpointEntryInput {
  readonly kind: 'history-checkpoint';
  readonly segment: string;
  readonly lastSeq: number;
  readonly lastHash: string;
  readonly note: string;
}

/** Written before a history journal segment is deleted by retention (`kind: "history-dropped"`). */
export interface HistoryDroppedEntryInput {
  readonly kind: 'history-dropped';
  readonly segment: string;
  readonly firstSeq: number;
  readonly lastSeq: number;
  readonly firstTime: string | null;
  readonly lastTime: string | null;
  /** SHA-256 of the segment's last line: the prev of the first kept journal entry. */
  readonly lastHash: string;
  readonly bytes: number;
  readonly reason: 'history-max-bytes' | 'history-max-entries' | 'history-retention';
  /** Bytes, entries, or milliseconds of retention. */
  readonly limit: number;
  readonly note: string;
}

/** A time in which the history is incomplete, and why (`kind: "history-gap"`). */
export interface HistoryGapEntryInput {
  readonly kind: 'history-gap';
  readonly reason: 'ring-buffer-full' | 'unattributed' | 'recursion' | 'recorder-off' | 'overload' | 'write-failed';
  /** Events lost, when known. */
  readonly count?: number;
  readonly from: string;
  readonly to: string;
  readonly note: string;
}

/** What a writer appends: one of the kinds above; the ledger adds the {@link LedgerEntryFields}. */
export type LedgerEntryInput =
  | ReplyEntryInput
  | UpstreamEntryInput
  | RecoveryEntryInput
  | KeyInstalledEntryInput
  | SegmentStartEntryInput
  | SegmentDroppedEntryInput
  | PruneEntryInput
  | PruneRunEntryInput
  | RecordNotKeptEntryInput
  | RateLimitedEntryInput
  | HistorySealedEntryInput
  | HistoryCheckpointEntryInput
  | HistoryDroppedEntryInput
  | HistoryGapEntryInput
  | NatEventsLostEntryInput;

/** The kernel dropped conntrack events (`--nat`): the NAT journal has a gap at this time (`kind: "nat-events-lost"`). */
export interface NatEventsLostEntryInput {
  readonly kind: 'nat-events-lost';
  readonly message: string;
}

/** The kinds this version writes. */
export type LedgerEntryKind = LedgerEntryInput['kind'];

/**
 * An entry of a kind this version does not write: read from a newer version's ledger, or
 * written by a test. Its kind must be a literal, so a known kind cannot slip through as one.
 */
export interface ForeignEntryInput<K extends string = string> {
  readonly kind: K;
  readonly [field: string]: unknown;
}

/**
 * What `Ledger.append` takes for kind `K`: the typed input of a known kind, or a
 * {@link ForeignEntryInput} for any other literal kind (a kind typed only as `string` is refused).
 */
export type EntryInput<K extends string> = string extends K ? never : K extends LedgerEntryKind ? Extract<LedgerEntryInput, { readonly kind: K }> : ForeignEntryInput<K>;

/** A stored entry of one kind: its input and the ledger's members. */
export type StoredEntry<T extends { readonly kind: string }> = LedgerEntry & T;
export type ReplyEntry = StoredEntry<ReplyEntryInput>;
export type UpstreamEntry = StoredEntry<UpstreamEntryInput>;
export type SegmentStartEntry = StoredEntry<SegmentStartEntryInput>;
export type SegmentDroppedEntry = StoredEntry<SegmentDroppedEntryInput>;

/** Narrows a ledger entry to an upstream entry. */
export function isUpstreamEntry(entry: LedgerEntry): entry is UpstreamEntry {
  return entry.kind === 'upstream';
}

/** Narrows a ledger entry to a reply entry. */
export function isReplyEntry(entry: LedgerEntry): entry is ReplyEntry {
  return entry.kind === 'reply';
}

/**
 * The stored line of an entry: its JSON, with the MAC under `key` appended when keyed. (The
 * ledger writes entries with it; an attacker holding a key could too, which is why the key of
 * each position is gone once that position is written.)
 */
export function formatLedgerLine(entry: object, key: Uint8Array | undefined): { readonly line: string; readonly mac?: string } {
  const line = JSON.stringify(entry);
  if (key === undefined) return { line };
  const mac = computeEntryMac(key, line);
  return { line: appendEntryMac(line, mac), mac };
}

/** A line's JSON object, as `readLedger` shows it; undefined when the line is not a JSON object. */
export function parseLedgerLine(text: string): LedgerEntry | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as LedgerEntry) : undefined;
}

/** A line that is a ledger entry as verify counts them: a JSON object with a seq from 1 and a string prev. */
export function parseLedgerEntry(text: string): LedgerEntry | undefined {
  const entry = parseLedgerLine(text);
  if (entry === undefined || !Number.isSafeInteger(entry.seq) || entry.seq < 1 || typeof entry.prev !== 'string') return undefined;
  return entry;
}

/** The seq and time of a line, for positions and summaries; undefined when it has no integer seq. */
export function readLineSeq(text: string): { readonly seq: number; readonly time: unknown } | undefined {
  const entry = parseLedgerLine(text);
  if (entry === undefined || !Number.isSafeInteger(entry.seq)) return undefined;
  return { seq: entry.seq, time: entry.time };
}
