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
}

/** Narrows a ledger entry to a reply entry. */
export function isReplyEntry(entry: LedgerEntry): entry is ReplyEntry {
  return entry.kind === 'reply';
}
