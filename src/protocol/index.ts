/**
 * The STOP / IDENT codec: request and reply grammar (paper Fig. 4, RFC 1413 section 6) and
 * line framing with a hard cap. Pure: no I/O and nothing from `node:` (checked by
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
export { canonicalizeIpv6, formatRequesterGroup, parseIpAddress, REQUESTER_IPV6_PREFIX, type IpAddress } from './ip-address.js';
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
