/**
 * Wire errors as values. What goes on the wire after `ERROR:` is an {@link ErrorToken}; a
 * request or reply line that cannot be parsed is a `SyntaxError` subclass that says which
 * token to answer with. Local failures (timeouts, store errors) are not here: they live in
 * `src/errors.ts` as `StopdError` subclasses.
 */

/**
 * An error token this daemon may send (RFC 1413 section 6, paper Fig. 4). `HIDDEN-USER` is
 * deliberately absent: STOP never sends it (paper 3.1.2), since it only ever returns tokens.
 * `X...` tokens are local extensions: `X` then 1 to 63 token characters.
 */
export type ErrorToken = 'INVALID-PORT' | 'NO-USER' | 'UNKNOWN-ERROR' | `X${string}`;

/**
 * An error token a client may receive: what a STOP daemon sends, plus RFC 1413's
 * `HIDDEN-USER` from plain IDENT daemons upstream.
 */
export type ReceivedErrorToken = ErrorToken | 'HIDDEN-USER';

/** The port pair of a request or reply, as numbers. */
export interface PortPair {
  readonly client: number;
  readonly server: number;
}

/** Largest length of an `X...` error token, `X` included (RFC 1413: tokens are 1 to 64 characters). */
const MAX_TOKEN_LENGTH = 64;

/**
 * True when `text` is one character of an RFC 1413 token: printable ASCII except `:`. Space
 * is excluded too: RFC 1413 tokens never hold white space (it separates tokens), and DESIGN
 * says no STOP token contains a space.
 */
export function isTokenCharCode(code: number): boolean {
  return code > 0x20 && code < 0x7f && code !== 0x3a;
}

/** True when every character of `text` is a token character and its length is in `1..max`. */
export function isTokenText(text: string, max: number): boolean {
  if (text.length === 0 || text.length > max) return false;
  for (let i = 0; i < text.length; i++) {
    if (!isTokenCharCode(text.charCodeAt(i))) return false;
  }
  return true;
}

/**
 * True when `text` is an error token this daemon may send: one of the three RFC 1413 names
 * STOP keeps (paper Fig. 4), or `X` followed by 1 to 63 token characters.
 */
export function isErrorToken(text: string): text is ErrorToken {
  if (text === 'INVALID-PORT' || text === 'NO-USER' || text === 'UNKNOWN-ERROR') return true;
  return text.length >= 2 && text.startsWith('X') && isTokenText(text, MAX_TOKEN_LENGTH);
}

/** Options of {@link RequestSyntaxError}. */
export interface RequestSyntaxErrorOptions {
  /** The error to answer with: `INVALID-PORT` for a bad port, `UNKNOWN-ERROR` otherwise. */
  readonly errorToken: 'INVALID-PORT' | 'UNKNOWN-ERROR';
  /** The port pair, when both fields were 1 to 5 digit numbers (possibly out of range). */
  readonly ports?: PortPair | undefined;
}

/**
 * A request line that does not follow the grammar (paper Fig. 4, RFC 1413 section 6).
 *
 * `errorToken` is what to send back. `ports` is set when the port pair could be read as two
 * 1 to 5 digit numbers, so the reply can echo it (RFC 1413: the reply repeats the port pair
 * of the query). It may then hold 0 or a number above 65535 for `INVALID-PORT` (e.g.
 * `0,23` is answered `0,23:ERROR:INVALID-PORT`). When `ports` is absent there is no port
 * pair to echo; RFC 1413 lets the server close the connection instead, which the client
 * reads as `UNKNOWN-ERROR`.
 */
export class RequestSyntaxError extends SyntaxError {
  readonly errorToken: 'INVALID-PORT' | 'UNKNOWN-ERROR';
  // `declare`: no class field is emitted, so the property is absent (not undefined) when no
  // pair was read, as exactOptionalPropertyTypes expects.
  declare readonly ports?: PortPair;

  constructor(message: string, options: RequestSyntaxErrorOptions) {
    super(message);
    this.name = new.target.name;
    this.errorToken = options.errorToken;
    if (options.ports !== undefined) this.ports = options.ports;
  }
}

/** A reply line (from an upstream daemon, or the daemon `stopctl query` asked) that does not follow the grammar. */
export class ReplySyntaxError extends SyntaxError {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/**
 * Quotes untrusted text for an error message: JSON-quoted (so control characters show as
 * escapes in logs) and cut to a short prefix, so a 512-byte line cannot flood a log entry.
 */
export function quoteForMessage(text: string, max = 24): string {
  return text.length > max ? `${JSON.stringify(text.slice(0, max))}...` : JSON.stringify(text);
}
