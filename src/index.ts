/**
 * stopd as a library: the codec and the query client, for programs that ask STOP daemons.
 */
export * from './protocol/index.js';
export { queryStop, type QueryOptions, type QueryResult } from './daemon/client.js';
export { StopdError, PeerTimeoutError, PeerUnreachableError, PeerProtocolError, PeerReplyTooLongError } from './errors.js';
