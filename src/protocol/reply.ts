/**
 * Reply lines (paper Fig. 4, RFC 1413 section 6):
 * `<cl>,<sv>:USERID:OTHER:<token>`, `<cl>,<sv>:USERID:UNIX:<user>`, `<cl>,<sv>:ERROR:<error>`.
 */
import {
  isErrorToken,
  isTokenText,
  quoteForMessage,
  ReplySyntaxError,
  type ErrorToken,
  type ReceivedErrorToken,
} from './errors.js';
import { trimBlanks } from './trim-blanks.js';

/** A token reply: the opaque session token (paper 3.1.2), sent with opsys `OTHER`. */
export interface TokenReply {
  readonly kind: 'token';
  readonly clientPort: number;
  readonly serverPort: number;
  /** 1 to 512 printable ASCII characters, no space and no colon. */
  readonly token: string;
}

/**
 * A user-name reply, only for users who opted in (paper 3.1.2, DESIGN duty 8). Sent with
 * opsys `UNIX`: RFC 1413 reserves `OTHER` for identifiers that are not the system's user
 * names (a STOP token is such an identifier), while an opted-in name is a real Unix user
 * name, which is exactly what `UNIX` announces.
 */
export interface UserReply {
  readonly kind: 'user';
  readonly clientPort: number;
  readonly serverPort: number;
  /** The user id: 1 to 512 characters (RFC 1413 section 6, note 3). */
  readonly user: string;
}

/** An error reply as this daemon sends it. */
export interface ErrorReply {
  readonly kind: 'error';
  readonly clientPort: number;
  readonly serverPort: number;
  readonly error: ErrorToken;
}

/** A reply this daemon sends. */
export type Reply = TokenReply | UserReply | ErrorReply;

/** An error reply as a client may receive it: also RFC 1413's `HIDDEN-USER`. */
export interface ReceivedErrorReply {
  readonly kind: 'error';
  readonly clientPort: number;
  readonly serverPort: number;
  readonly error: ReceivedErrorToken;
}

/**
 * A user-id reply as a client may receive it, with the opsys it came with: `OTHER` announces
 * an identifier that is not a user name (RFC 1413 section 6), so an `OTHER` id that is not a
 * token is a broken token rather than a name.
 */
export interface ReceivedUserReply extends UserReply {
  /** The opsys field as received, without white space (`UNIX`, `OTHER`, ...). */
  readonly opsys: string;
}

/** A reply as {@link parseReply} reads it. */
export type ReceivedReply = TokenReply | ReceivedUserReply | ReceivedErrorReply;

/** Longest token or user id (paper Fig. 4 `1*512<token-characters>`; RFC 1413 section 6, note 3). */
export const MAX_USER_ID_LENGTH = 512;

/** Longest opsys or charset token (RFC 1413 section 6: tokens are 1 to 64 characters). */
const MAX_TOKEN_LENGTH = 64;

/**
 * True when `text` may be sent as a STOP token: 1 to 512 printable ASCII characters, no
 * space, no colon (paper 3.1.2: tokens are printable ASCII; DESIGN: no space or colon).
 */
export function isValidToken(text: string): boolean {
  return isTokenText(text, MAX_USER_ID_LENGTH);
}

/**
 * True when `text` is a plain token: 1 to 512 letters, digits and `-._~+/=` (hexadecimal,
 * base64 and base64url all are). Every token this daemon makes is one. The protocol allows
 * any printable ASCII but space and colon ({@link isValidToken}); a recursive request keeps
 * only plain tokens from upstream hosts, which may be hostile: quotes, `$`, `;`, backticks or
 * backslashes in a token that an investigator copies into a shell or a report are an attack.
 */
export function isPlainToken(text: string): boolean {
  return text.length > 0 && text.length <= MAX_USER_ID_LENGTH && /^[A-Za-z0-9._~+/=-]+$/.test(text);
}

/**
 * True when `text` may be sent as a user name in a `USERID:UNIX:` reply: 1 to 512
 * characters, none a control character (so no NUL, CR or LF, RFC 1413 `<octet-characters>`),
 * no colon, nothing beyond one octet, and no white space at either end (a reader strips it).
 */
export function isValidUserId(text: string): boolean {
  if (text.length === 0 || text.length > MAX_USER_ID_LENGTH) return false;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x20 || code === 0x7f || code > 0xff || code === 0x3a) return false;
  }
  return text.charCodeAt(0) !== 0x20 && text.charCodeAt(text.length - 1) !== 0x20;
}

/**
 * Ports a reply may carry: any 1 to 5 digit number. A reply echoes the query's port pair
 * (RFC 1413 section 6), and a query's pair may be out of range: `0,23` is answered
 * `0,23:ERROR:INVALID-PORT`, or with a token under `--random-errors` (DESIGN duty 4).
 */
function isReplyPort(port: number): boolean {
  return Number.isInteger(port) && port >= 0 && port <= 99999;
}

/**
 * Formats a reply as a line without EOL and without white space, as current daemons send
 * it: `80,1234:USERID:OTHER:<token>`, `80,1234:USERID:UNIX:<user>`, `80,1234:ERROR:NO-USER`.
 *
 * Ports may be 0 or above 65535 (up to 99999): the reply repeats the query's port pair
 * (RFC 1413 section 6), also when that pair is what was wrong; see RequestSyntaxError#ports.
 *
 * @throws RangeError when a field cannot be sent (a caller's bug: check user names with
 *   {@link isValidUserId} first, and fall back to a token).
 */
export function formatReply(reply: Reply): string {
  if (!isReplyPort(reply.clientPort) || !isReplyPort(reply.serverPort)) {
    throw new RangeError(`Cannot format reply: port pair ${reply.clientPort},${reply.serverPort} is out of range`);
  }
  const pair = `${reply.clientPort},${reply.serverPort}`;
  switch (reply.kind) {
    case 'token':
      if (!isValidToken(reply.token)) {
        throw new RangeError(`Cannot format reply: token ${quoteForMessage(reply.token)} is not 1 to 512 token characters`);
      }
      return `${pair}:USERID:OTHER:${reply.token}`;
    case 'user':
      if (!isValidUserId(reply.user)) {
        throw new RangeError(`Cannot format reply: user id ${quoteForMessage(reply.user)} cannot be sent`);
      }
      return `${pair}:USERID:UNIX:${reply.user}`;
    case 'error':
      if (!isErrorToken(reply.error)) {
        throw new RangeError(`Cannot format reply: ${quoteForMessage(String(reply.error))} is not an error token`);
      }
      return `${pair}:ERROR:${reply.error}`;
    default:
      throw new RangeError(`Cannot format reply: unknown kind ${quoteForMessage(String((reply as { kind: unknown }).kind))}`);
  }
}

const PORT_DIGITS = /^[0-9]{1,5}$/;

function fail(message: string): never {
  throw new ReplySyntaxError(`Cannot parse reply: ${message}`);
}

function parseReplyPort(text: string): number {
  const token = trimBlanks(text);
  if (!PORT_DIGITS.test(token)) fail(`port ${quoteForMessage(token)} is not 1 to 5 decimal digits`);
  return Number(token);
}

/** True when `text` holds no control character (tab aside) and only US-ASCII (RFC 1413 section 6, note 4). */
function isAsciiField(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if ((code < 0x20 && code !== 0x09) || code >= 0x7f) return false;
  }
  return true;
}

/** RFC 1413 error names, matched case-insensitively (be liberal in what you accept). */
const STANDARD_ERRORS: ReadonlyMap<string, ReceivedErrorToken> = new Map([
  ['INVALID-PORT', 'INVALID-PORT'],
  ['NO-USER', 'NO-USER'],
  ['UNKNOWN-ERROR', 'UNKNOWN-ERROR'],
  ['HIDDEN-USER', 'HIDDEN-USER'],
]);

/**
 * Parses a reply line (without its CR LF), as `stopctl query` and the upstream client read
 * it. Liberal where RFC 1413 section 6 note 1 asks to be: white space around every token,
 * keywords and standard error names in any case, an optional `,<charset>` after the opsys.
 *
 * `USERID:OTHER:<id>` is a `token` reply when the id is a valid token; any other opsys, or
 * an id that is not a token (a plain IDENT daemon may send anything), gives a `user` reply.
 * The user id is everything after the opsys colon (RFC 1413 note 1), without the spaces and
 * tabs at its ends, which the RFC's own examples (`: UNIX : stjohns`) put there as padding.
 *
 * @throws ReplySyntaxError for anything else; never any other exception.
 */
export function parseReply(line: string): ReceivedReply {
  const firstColon = line.indexOf(':');
  if (firstColon < 0) fail('no colon after the port pair');
  const pairText = line.slice(0, firstColon);
  if (!isAsciiField(pairText)) fail('port pair holds a control or non-ASCII character');
  const comma = pairText.indexOf(',');
  if (comma < 0) fail('no port pair');
  const clientPort = parseReplyPort(pairText.slice(0, comma));
  const serverPort = parseReplyPort(pairText.slice(comma + 1));

  const rest = line.slice(firstColon + 1);
  const kindEnd = rest.indexOf(':');
  if (kindEnd < 0) fail(trimBlanks(rest) === '' ? 'reply type is missing' : 'no colon after the reply type');
  const kindText = rest.slice(0, kindEnd);
  if (!isAsciiField(kindText)) fail('reply type holds a control or non-ASCII character');
  const keyword = trimBlanks(kindText).toUpperCase();
  const value = rest.slice(kindEnd + 1);

  if (keyword === 'ERROR') {
    if (!isAsciiField(value)) fail('error type holds a control or non-ASCII character');
    const text = trimBlanks(value);
    const error = STANDARD_ERRORS.get(text.toUpperCase()) ?? (isErrorToken(text) ? text : undefined);
    if (error === undefined) fail(`unknown error type ${quoteForMessage(text)}`);
    return { kind: 'error', clientPort, serverPort, error };
  }
  if (keyword !== 'USERID') fail(`unknown reply type ${quoteForMessage(trimBlanks(kindText))}`);

  const osEnd = value.indexOf(':');
  if (osEnd < 0) fail('no colon after the opsys');
  const osField = value.slice(0, osEnd);
  if (!isAsciiField(osField)) fail('opsys holds a control or non-ASCII character');
  const osComma = osField.indexOf(',');
  const opsys = trimBlanks(osComma < 0 ? osField : osField.slice(0, osComma));
  if (!isTokenText(opsys, MAX_TOKEN_LENGTH)) fail(`opsys ${quoteForMessage(opsys)} is not a token`);
  if (osComma >= 0) {
    const charset = trimBlanks(osField.slice(osComma + 1));
    if (!isTokenText(charset, MAX_TOKEN_LENGTH)) fail(`charset ${quoteForMessage(charset)} is not a token`);
  }

  const id = trimBlanks(value.slice(osEnd + 1));
  if (id === '') fail('user id is empty');
  for (let i = 0; i < id.length; i++) {
    const code = id.charCodeAt(i);
    // RFC 1413 `<octet-characters>`: any octet except NUL, CR and LF.
    if (code === 0x00 || code === 0x0a || code === 0x0d || code > 0xff) {
      fail(`user id holds character 0x${code.toString(16)}`);
    }
  }
  if (opsys.toUpperCase() === 'OTHER' && isValidToken(id)) {
    return { kind: 'token', clientPort, serverPort, token: id };
  }
  return { kind: 'user', clientPort, serverPort, user: id, opsys };
}
