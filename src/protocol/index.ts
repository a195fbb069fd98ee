/**
 * The STOP / IDENT codec: request and reply grammar (paper Fig. 4, RFC 1413 section 6),
 * line framing with a hard cap, and IP addresses (`ip-address.ts`, the one owner of address
 * text and bytes). Pure: no I/O and nothing from `node:` (checked by
 * `src/protocol/tsconfig.json`, which has no ambient types).
 */
export {
  isErrorToken,
  ReplySyntaxError,
  RequestSyntaxError,
  type ErrorToken,
  type PortPair,
  type ReceivedErrorToken,
  type RequestSyntaxErrorOptions,
} from './errors.js';
export {
  addressFamily,
  canonicalizeIpv6,
  formatIpBytes,
  formatRequesterGroup,
  isSameIpAddress,
  normaliseAddress,
  parseIpAddress,
  parseIpBytes,
  REQUESTER_IPV6_PREFIX,
  type IpAddress,
  type IpBytes,
} from './ip-address.js';
export { LineSplitter, type LineEvent, type LineSplitterOptions } from './line-splitter.js';
export {
  formatReply,
  isPlainToken,
  isValidToken,
  isValidUserId,
  MAX_USER_ID_LENGTH,
  parseReply,
  type ErrorReply,
  type ReceivedErrorReply,
  type ReceivedReply,
  type ReceivedUserReply,
  type Reply,
  type TokenReply,
  type UserReply,
} from './reply.js';
export {
  formatRequest,
  isRecursiveType,
  MAX_SID,
  mentionsClientIp,
  parseRequest,
  REQUEST_TYPES,
  type PlainStopRequest,
  type RecursiveRequestType,
  type RecursiveStopRequest,
  type Request,
  type RequestType,
  type Rfc1413Request,
} from './request.js';
