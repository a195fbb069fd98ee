/**
 * Request lines: the RFC 1413 form `<port>,<port>` and the STOP form
 * `<cl_port>,<sv_port>:<TYPE>[:<sid>][:<ip>]` (paper 3.1.2, Fig. 4; DESIGN "Protocol
 * decisions"). The line reaches the parser without its CR LF (see LineSplitter).
 */
import { quoteForMessage, RequestSyntaxError, type PortPair } from './errors.js';
import { indexOfBlank, trimBlanks } from './trim-blanks.js';
import { parseIpAddress, parseIpv4Bytes, parseIpv6Groups, type IpAddress } from './ip-address.js';

/** The STOP request types (paper Table I). */
export type RequestType = 'ID' | 'ID_REC' | 'SV' | 'SV_REC';

/** The request types that are traced upstream and carry a session identifier (paper 3.1.3). */
export type RecursiveRequestType = 'ID_REC' | 'SV_REC';

/** Every request type, in the paper's order. */
export const REQUEST_TYPES: readonly RequestType[] = ['ID', 'ID_REC', 'SV', 'SV_REC'];

/** Largest session identifier: DESIGN accepts any unsigned 64-bit decimal. */
export const MAX_SID = 2n ** 64n - 1n;

/** A plain RFC 1413 query, `<port>,<port>`: answered as a STOP `ID` request. */
export interface Rfc1413Request {
  readonly type: 'ID';
  readonly rfc1413: true;
  readonly clientPort: number;
  readonly serverPort: number;
}

/** A STOP `ID` or `SV` request; no session identifier. */
export interface PlainStopRequest {
  readonly type: 'ID' | 'SV';
  readonly rfc1413: false;
  readonly clientPort: number;
  readonly serverPort: number;
  /** CL_IP: the remote address of the connection asked about, instead of the requester's (paper 3.1.2). */
  readonly clientIp?: IpAddress;
}

/** A STOP `ID_REC` or `SV_REC` request: traced upstream with the same session identifier. */
export interface RecursiveStopRequest {
  readonly type: RecursiveRequestType;
  readonly rfc1413: false;
  readonly clientPort: number;
  readonly serverPort: number;
  /** SID, 0 .. 2^64-1 (paper 3.1.4: the random identifier used for loop detection). */
  readonly sid: bigint;
  /** CL_IP: the remote address of the connection asked about, instead of the requester's (paper 3.1.2). */
  readonly clientIp?: IpAddress;
}

/** A parsed request line. */
export type Request = Rfc1413Request | PlainStopRequest | RecursiveStopRequest;

/** True for the request types that carry a SID and are traced upstream. */
export function isRecursiveType(type: RequestType): type is RecursiveRequestType {
  return type === 'ID_REC' || type === 'SV_REC';
}

/** 1 to 5 decimal digits (RFC 1413 `<integer> ::= 1*5<digit>`), leading zeros allowed. */
const PORT_DIGITS = /^[0-9]{1,5}$/;
/** 1 to 20 decimal digits: no sign, no hex, no exponent. 2^64-1 has 20 digits. */
const SID_DIGITS = /^[0-9]{1,20}$/;
const TYPE_NAMES: ReadonlySet<string> = new Set(REQUEST_TYPES);

function fail(message: string, errorToken: 'INVALID-PORT' | 'UNKNOWN-ERROR', ports?: PortPair): never {
  throw new RequestSyntaxError(`Cannot parse request: ${message}`, { errorToken, ports });
}

/** One port field split into its first token and whatever follows it. */
interface PortField {
  readonly token: string;
  readonly rest: string;
}

function splitPortField(field: string): PortField {
  const trimmed = trimBlanks(field);
  const blank = indexOfBlank(trimmed);
  if (blank < 0) return { token: trimmed, rest: '' };
  return { token: trimmed.slice(0, blank), rest: trimBlanks(trimmed.slice(blank)) };
}

/** The reason a port token is invalid, or undefined when it is a port 1..65535. */
function checkPort(token: string): string | undefined {
  if (token === '') return 'port is missing';
  if (!PORT_DIGITS.test(token)) return `port ${quoteForMessage(token)} is not 1 to 5 decimal digits`;
  const value = Number(token);
  // RFC 1413 section 6: ports are 1..65535; anything else is INVALID-PORT.
  if (value < 1 || value > 65535) return `port ${value} is out of range`;
  return undefined;
}

/** Reads `<port> , <port>` (the part of the line before the first colon). */
function parsePortPair(section: string): PortPair {
  const comma = section.indexOf(',');
  if (comma < 0) {
    fail(trimBlanks(section) === '' ? 'request is empty' : 'no port pair', 'UNKNOWN-ERROR');
  }
  const client = splitPortField(section.slice(0, comma));
  const server = splitPortField(section.slice(comma + 1));
  // Echo the pair whenever both tokens are numbers, even out of range (RFC 1413 replies
  // repeat the query's port pair, also for INVALID-PORT).
  const echo =
    PORT_DIGITS.test(client.token) && PORT_DIGITS.test(server.token)
      ? { client: Number(client.token), server: Number(server.token) }
      : undefined;
  const problem = checkPort(client.token) ?? checkPort(server.token);
  if (problem !== undefined) fail(problem, 'INVALID-PORT', echo);
  const ports = { client: Number(client.token), server: Number(server.token) };
  const garbage = client.rest !== '' ? client.rest : server.rest;
  if (garbage !== '') fail(`unexpected text ${quoteForMessage(garbage)} after a port`, 'UNKNOWN-ERROR', ports);
  return ports;
}

/**
 * Finds a character that may not appear in a request line: controls other than tab
 * (CR and LF are removed by framing, so one here is smuggled), DEL, and anything beyond
 * US-ASCII (RFC 1413 section 6, note 4: every field but the user id is US-ASCII).
 */
function findForbiddenChar(line: string): number {
  for (let i = 0; i < line.length; i++) {
    const code = line.charCodeAt(i);
    if ((code < 0x20 && code !== 0x09) || code >= 0x7f) return i;
  }
  return -1;
}

/** The port pair of `line` if it can be read at all, for echoing in an error reply. */
function tryPortPair(section: string): PortPair | undefined {
  try {
    return parsePortPair(section);
  } catch (error: unknown) {
    if (error instanceof RequestSyntaxError) return error.ports;
    throw error;
  }
}

/** Reads a SID: decimal 0 .. 2^64-1, no sign, no leading `+`, no hex (DESIGN). */
function parseSid(text: string, type: RequestType, ports: PortPair): bigint {
  if (text === '') fail(`${type} needs a session identifier`, 'UNKNOWN-ERROR', ports);
  if (!SID_DIGITS.test(text)) {
    fail(`session identifier ${quoteForMessage(text)} is not a decimal number`, 'UNKNOWN-ERROR', ports);
  }
  const sid = BigInt(text);
  if (sid > MAX_SID) fail(`session identifier ${text} is out of range`, 'UNKNOWN-ERROR', ports);
  return sid;
}

/** Reads CL_IP: dotted IPv4 as in the paper, or IPv6 in brackets (DESIGN extension). */
function parseClientIp(text: string, ports: PortPair): IpAddress {
  if (text === '') fail('client address is missing', 'UNKNOWN-ERROR', ports);
  if (text.startsWith('[') && text.endsWith(']')) {
    const inner = text.slice(1, -1);
    // parseIpv6Groups rejects text without a colon, so `[1.2.3.4]` is refused here.
    if (inner.includes(':') && parseIpv6Groups(inner) !== undefined) {
      const ip = parseIpAddress(inner);
      if (ip !== undefined) return ip;
    }
  } else if (parseIpv4Bytes(text) !== undefined) {
    return { family: 4, address: text };
  }
  fail(
    `client address ${quoteForMessage(text, 48)} is not dotted IPv4 or bracketed IPv6`,
    'UNKNOWN-ERROR',
    ports,
  );
}

/**
 * Parses one request line (without its CR LF).
 *
 * Accepts the RFC 1413 form `<port> , <port>` (as an `ID` request with `rfc1413: true`)
 * and the STOP form `<cl>,<sv>:<TYPE>[:<sid>][:<ip>]` (paper Fig. 4). Spaces and tabs are
 * allowed around every token (RFC 1413 section 6, note 1); the type names are upper case as
 * in the paper's grammar.
 *
 * @throws RequestSyntaxError for anything else, carrying the error to send (`INVALID-PORT`
 *   for a bad port, `UNKNOWN-ERROR` otherwise) and the port pair to echo when it was read.
 *   It never throws anything else, whatever the input.
 */
export function parseRequest(line: string): Request {
  const firstColon = line.indexOf(':');
  const portSection = firstColon < 0 ? line : line.slice(0, firstColon);
  const forbidden = findForbiddenChar(line);
  if (forbidden >= 0) {
    const code = line.charCodeAt(forbidden).toString(16).padStart(2, '0');
    fail(`character 0x${code} at offset ${forbidden} is not allowed`, 'UNKNOWN-ERROR', tryPortPair(portSection));
  }
  const ports = parsePortPair(portSection);
  if (firstColon < 0) {
    return { type: 'ID', rfc1413: true, clientPort: ports.client, serverPort: ports.server };
  }

  // STOP form. Fields after the type are split at colons one by one, and CL_IP takes the
  // whole remainder, since a bracketed IPv6 address holds colons itself.
  let rest = line.slice(firstColon + 1);
  const typeEnd = rest.indexOf(':');
  const typeText = trimBlanks(typeEnd < 0 ? rest : rest.slice(0, typeEnd));
  rest = typeEnd < 0 ? '' : rest.slice(typeEnd + 1);
  const hasMore = typeEnd >= 0;
  if (typeText === '') fail('request type is missing', 'UNKNOWN-ERROR', ports);
  if (!TYPE_NAMES.has(typeText)) {
    fail(`unknown request type ${quoteForMessage(typeText)}`, 'UNKNOWN-ERROR', ports);
  }
  const type = typeText as RequestType;
  const base = { rfc1413: false as const, clientPort: ports.client, serverPort: ports.server };

  if (isRecursiveType(type)) {
    // Paper Fig. 4: `"ID_REC" ":" <sid>` and `"SV_REC" ":" <sid>`.
    if (!hasMore) fail(`${type} needs a session identifier`, 'UNKNOWN-ERROR', ports);
    const sidEnd = rest.indexOf(':');
    const sid = parseSid(trimBlanks(sidEnd < 0 ? rest : rest.slice(0, sidEnd)), type, ports);
    if (sidEnd < 0) return { ...base, type, sid };
    return { ...base, type, sid, clientIp: parseClientIp(trimBlanks(rest.slice(sidEnd + 1)), ports) };
  }

  if (!hasMore) return { ...base, type };
  const field = trimBlanks(rest);
  if (SID_DIGITS.test(trimBlanks(rest.split(':', 1)[0] ?? ''))) {
    // A bare number here is a SID on a type that takes none (paper Fig. 4).
    fail(`${type} takes no session identifier`, 'UNKNOWN-ERROR', ports);
  }
  return { ...base, type, clientIp: parseClientIp(field, ports) };
}

function checkFormatPort(port: number): void {
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new RangeError(`Cannot format request: port ${port} is out of range`);
  }
}

/** Formats CL_IP: IPv4 as is, IPv6 in brackets (DESIGN); canonical text either way. */
function formatClientIp(ip: IpAddress): string {
  const parsed = parseIpAddress(ip.address);
  if (parsed === undefined || (ip.family === 4 && parsed.family !== 4)) {
    throw new RangeError(`Cannot format request: ${quoteForMessage(ip.address, 48)} is not an IPv${ip.family} address`);
  }
  return parsed.family === 6 ? `[${parsed.address}]` : parsed.address;
}

/**
 * Formats a request as a line without EOL, with no white space (RFC 1413 section 6,
 * note 2: send no unnecessary white space): `80,1234`, `80,1234:SV_REC:42:[2001:db8::1]`.
 *
 * @throws RangeError when a port, the SID or the address is invalid (a caller's bug).
 */
export function formatRequest(request: Request): string {
  checkFormatPort(request.clientPort);
  checkFormatPort(request.serverPort);
  const pair = `${request.clientPort},${request.serverPort}`;
  if (request.rfc1413) return pair;
  if (!TYPE_NAMES.has(request.type)) {
    throw new RangeError(`Cannot format request: unknown request type ${quoteForMessage(String(request.type))}`);
  }
  let line = `${pair}:${request.type}`;
  if (request.type === 'ID_REC' || request.type === 'SV_REC') {
    if (typeof request.sid !== 'bigint' || request.sid < 0n || request.sid > MAX_SID) {
      throw new RangeError(`Cannot format request: session identifier ${request.sid} is out of range`);
    }
    line += `:${request.sid}`;
  }
  if (request.clientIp !== undefined) line += `:${formatClientIp(request.clientIp)}`;
  return line;
}

/**
 * Whether a line that failed to parse still ends in a CL_IP field (a dotted IPv4 or a
 * bracketed IPv6 after at least two colons). Such a request must be answered with a token
 * whatever went wrong (paper 3.1.2, property 4): an error would tell an IDS-style requester
 * something, which CL_IP requests must never do.
 */
export function mentionsClientIp(line: string): boolean {
  const fields: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < line.length; i++) {
    const ch = line.charCodeAt(i);
    if (ch === 0x5b) depth++;
    else if (ch === 0x5d) depth = Math.max(0, depth - 1);
    else if (ch === 0x3a && depth === 0) {
      fields.push(line.slice(start, i));
      start = i + 1;
    }
  }
  fields.push(line.slice(start));
  if (fields.length < 3) return false;
  const last = trimBlanks(fields[fields.length - 1] ?? '');
  if (last.startsWith('[') && last.endsWith(']')) return parseIpv6Groups(last.slice(1, -1)) !== undefined;
  return parseIpv4Bytes(last) !== undefined;
}
