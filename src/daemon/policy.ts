import type { ErrorToken } from '../protocol/index.js';

/** The operator's choices that shape replies (DESIGN "The daemon's duties" 3, 4, 8). */
export interface ReplyPolicy {
  /** `--random-errors`: a token instead of every error (paper 3.1.2, "should" property 1). */
  readonly randomErrors: boolean;
  /** `--unknown-error`: every error is sent as `UNKNOWN-ERROR` (paper 4). */
  readonly unknownError: boolean;
}

/** What the host said about the queried connection. */
export type ConnectionFinding =
  | { readonly kind: 'not-found' }
  /** Exists but is not established (TIME_WAIT, SYN_SENT, ...): nobody is behind it now. */
  | { readonly kind: 'not-established'; readonly state: string }
  /** This host accepted it: never answered (DESIGN duty 2, the "ident scan" leak). */
  | { readonly kind: 'inbound' }
  | { readonly kind: 'outbound' }
  /**
   * `--nat`: no local socket, but this gateway translated the connection (conntrack): the
   * gateway vouches with a token of its own and asks the host behind the translation.
   */
  | { readonly kind: 'translated' };

/** What to reply, and why (the reason goes to the ledger, never on the wire). */
export type Decision =
  | { readonly reply: 'token'; readonly reason: TokenReason; readonly replaces?: ErrorToken }
  | { readonly reply: 'user' }
  | { readonly reply: 'error'; readonly error: ErrorToken; readonly precise: ErrorToken };

/**
 * Why a token was sent: an outbound connection; a connection this gateway translated (`--nat`); CL_IP; `--random-errors`; or a recursive
 * request that was not processed (paper 3.1.4: a repeat within the loop window, the SID's
 * work budget used up, the loop table full).
 */
export type TokenReason = 'outbound' | 'nat' | 'cl-ip' | 'random-errors' | 'repeat' | 'sid-budget' | 'loop-table-full';

/**
 * Turns a wire error into the reply policy wants. With CL_IP every reply is a token (paper
 * 3.1.2, property 4: no error may tell an IDS-style requester anything); `--random-errors`
 * does the same for everyone; `--unknown-error` hides which error it was.
 */
export function decideError(error: ErrorToken, options: { policy: ReplyPolicy; clientIp: boolean }): Decision {
  if (options.clientIp) return { reply: 'token', reason: 'cl-ip', replaces: error };
  if (options.policy.randomErrors) return { reply: 'token', reason: 'random-errors', replaces: error };
  return { reply: 'error', error: options.policy.unknownError ? 'UNKNOWN-ERROR' : error, precise: error };
}

/**
 * The decision for an `ID`-style request once the connection has been looked up (paper 3.1.2
 * properties 1, 3, 4; "should" property 2 for opt-in).
 */
export function decideConnection(
  finding: ConnectionFinding,
  options: { policy: ReplyPolicy; clientIp: boolean; optedIn: boolean },
): Decision {
  // A translated connection has no local user: never a user name, always a token.
  if (finding.kind === 'translated') return { reply: 'token', reason: options.clientIp ? 'cl-ip' : 'nat' };
  if (finding.kind !== 'outbound') return decideError('NO-USER', options);
  if (options.optedIn && !options.clientIp) return { reply: 'user' };
  return { reply: 'token', reason: options.clientIp ? 'cl-ip' : 'outbound' };
}
