import type { Endpoint } from '../host/types.js';
import type { LedgerEntry } from './ledger.js';

/**
 * The ledger entry of one answered request (`kind: "reply"`): what `stopctl redeem` shows
 * for ID tokens. Fields are absent when they do not apply (an unparsable line has no type).
 */
export interface ReplyEntry extends LedgerEntry {
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
  readonly finding?: 'not-found' | 'not-established' | 'inbound' | 'outbound';
  readonly lookupError?: string;
  readonly connection?: { readonly local: Endpoint; readonly remote: Endpoint; readonly state: string; readonly inode: number };
  readonly uid?: number;
  readonly user?: string | null;
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
export interface UpstreamEntry extends LedgerEntry {
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

/** Narrows a ledger entry to an upstream entry. */
export function isUpstreamEntry(entry: LedgerEntry): entry is UpstreamEntry {
  return entry.kind === 'upstream';
}

/** Narrows a ledger entry to a reply entry. */
export function isReplyEntry(entry: LedgerEntry): entry is ReplyEntry {
  return entry.kind === 'reply';
}
