import { connect } from 'node:net';
import { PeerProtocolError, PeerReplyTooLongError, PeerTimeoutError, PeerUnreachableError } from '../errors.js';
import { formatRequest, LineSplitter, parseReply, ReplySyntaxError, type ReceivedReply, type Request } from '../protocol/index.js';

/** Where and how to ask. */
export interface QueryOptions {
  readonly host: string;
  /** The STOP/IDENT port of the peer (default 113). */
  readonly port?: number;
  /** Connect from this local address (the recursion asks from the connection's own address). */
  readonly localAddress?: string;
  /** Whole exchange deadline: connect, send, reply (default 10 000 ms). */
  readonly timeoutMs?: number;
  /** Deadline for the TCP connection alone (default: the whole deadline). */
  readonly connectTimeoutMs?: number;
}

/**
 * Longest reply line accepted: RFC 1413 allows 512 octets of user-id plus the rest, and lets a
 * client give up after 1000 characters without an end of line. At most this many bytes (plus
 * one) are ever buffered, whatever the peer sends.
 */
export const MAX_REPLY_LINE = 1024;

/** A reply as received: parsed, and the line exactly as it came. */
export interface QueryResult {
  readonly reply: ReceivedReply;
  readonly line: string;
}

/**
 * Sends one request to a STOP (or plain IDENT) daemon and resolves with its parsed reply.
 * Fails with `PeerUnreachableError` (refused, reset, closed without a reply), `PeerTimeoutError`
 * (also when a peer drips bytes: the deadline is for the whole exchange), `PeerReplyTooLongError`
 * (more than {@link MAX_REPLY_LINE} bytes without an end of line) or `PeerProtocolError` (a reply
 * that is not a reply line). The connection is closed as soon as the first line is read: a peer
 * that keeps it open after answering costs nothing more.
 */
export function queryStop(request: Request, options: QueryOptions): Promise<QueryResult> {
  const line = formatRequest(request);
  const timeoutMs = options.timeoutMs ?? 10_000;
  const where = `${options.host}:${options.port ?? 113}`;
  return new Promise<QueryResult>((resolve, reject) => {
    const socket = connect({
      host: options.host,
      port: options.port ?? 113,
      ...(options.localAddress === undefined ? {} : { localAddress: options.localAddress }),
    });
    const splitter = new LineSplitter({ maxLineLength: MAX_REPLY_LINE });
    let settled = false;
    let received = 0;
    const finish = (error: Error | undefined, reply?: QueryResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearTimeout(connectTimer);
      socket.destroy();
      if (error !== undefined) reject(error);
      else if (reply !== undefined) resolve(reply);
    };
    const timer = setTimeout(
      () =>
        finish(
          new PeerTimeoutError(
            received === 0
              ? `No reply from ${where} within ${timeoutMs} ms`
              : `No complete reply from ${where} within ${timeoutMs} ms: ${received} bytes without an end of line`,
          ),
        ),
      timeoutMs,
    );
    const connectTimeoutMs = options.connectTimeoutMs;
    const connectTimer =
      connectTimeoutMs === undefined
        ? undefined
        : setTimeout(() => finish(new PeerTimeoutError(`Cannot connect to ${where} within ${connectTimeoutMs} ms`)), connectTimeoutMs);
    socket.setNoDelay(true);
    socket.once('connect', () => {
      clearTimeout(connectTimer);
      socket.write(line + '\r\n');
    });
    socket.on('data', (chunk: Buffer) => {
      received += chunk.length;
      for (const event of splitter.push(chunk)) {
        if (event.kind !== 'line') {
          finish(new PeerReplyTooLongError(`Reply from ${where} is longer than ${MAX_REPLY_LINE} bytes`));
          return;
        }
        try {
          finish(undefined, { reply: parseReply(event.line), line: event.line });
        } catch (error) {
          if (!(error instanceof ReplySyntaxError)) throw error;
          finish(new PeerProtocolError(`Reply from ${where} is malformed: ${error.message}`));
        }
        return;
      }
    });
    socket.once('error', (error) =>
      finish(new PeerUnreachableError(`Cannot reach ${where}: ${error.message}`, { cause: error })),
    );
    // RFC 1413: closing without a reply means UNKNOWN-ERROR; we report it as a failure to answer.
    socket.once('close', () => finish(new PeerUnreachableError(`${where} closed the connection without a reply`)));
  });
}
