import { PeerProtocolError, PeerReplyTooLongError, PeerTimeoutError, PeerUnreachableError } from '../errors.js';
import type { UpstreamEntry, UpstreamEntryInput, UpstreamOutcome } from '../evidence/ledger-format.js';
import type { Ledger } from '../evidence/ledger.js';
import type { TrackedFlow } from '../host/conntrack.js';
import type { Endpoint } from '../host/types.js';
import { formatRequest, isPlainToken, isRecursiveType, parseIpAddress, type RecursiveRequestType, type Request, type RequestType } from '../protocol/index.js';
import type { UpstreamCandidate } from '../trace/index.js';
import { queryStop, type QueryOptions, type QueryResult } from './client.js';
import type { Logger } from './logger.js';
import type { LoopTable } from './loop-table.js';
import { Semaphore } from './semaphore.js';

export type { UpstreamOutcome } from '../evidence/ledger-format.js';

export interface UpstreamOptions {
  /** The STOP port of upstream hosts (`--upstream-port`, default 113). */
  readonly port: number;
  readonly connectTimeoutMs: number;
  /** Whole exchange deadline per upstream host. */
  readonly replyTimeoutMs: number;
  /** Upstream hosts asked per request at most; the rest are logged as skipped (the paper's avalanche, 4.1). */
  readonly maxFanOut: number;
  /** Upstream queries in flight at once, for the whole daemon. */
  readonly maxConcurrent: number;
  readonly ledger: Ledger;
  readonly loops: LoopTable;
  readonly log: Logger;
  /** Replaces the query client (tests). */
  readonly query?: (request: Request, options: QueryOptions) => Promise<QueryResult>;
}

/**
 * The upstream client of recursive requests (paper 3.1.3; DESIGN duty 6): after the local
 * reply, asks every upstream candidate the same type and SID from the local address of that
 * connection, and records every outcome in the ledger linked to the local token. Upstream
 * tokens never reach the requester: they are only in the ledger, for the local administrator.
 */
export class UpstreamDispatcher {
  #o: UpstreamOptions;
  readonly #slots: Semaphore;
  readonly #inFlight = new Set<Promise<void>>();

  constructor(options: UpstreamOptions) {
    this.#o = options;
    this.#slots = new Semaphore(options.maxConcurrent, { maxWaiting: Number.MAX_SAFE_INTEGER });
  }

  /** Changes port, timeouts and fan-out for requests dispatched from now on (SIGHUP reload). */
  configure(next: Pick<UpstreamOptions, 'port' | 'connectTimeoutMs' | 'replyTimeoutMs' | 'maxFanOut'>): void {
    this.#o = { ...this.#o, ...next };
  }

  /** Starts asking upstream in the background; `close()` waits for it. */
  dispatch(parentToken: string, request: { type: RecursiveRequestType; sid: bigint }, candidates: readonly UpstreamCandidate[]): void {
    const job = this.#run(parentToken, request, candidates).catch((error: unknown) => {
      this.#o.log.error(`Upstream requests for ${parentToken} failed: ${String(error)}`);
    });
    this.#inFlight.add(job);
    void job.finally(() => this.#inFlight.delete(job));
  }

  /**
   * `--nat`: asks the host on the other side of a translation about the flow's original port
   * pair, the same type (and SID), with CL_IP set to the original destination: the inside
   * host's connection runs to that address, not to this gateway, so a question bound to the
   * asker's address would be refused (paper 3.1.2, CL_IP). `ID` goes too, so that a plain
   * RFC 1413 client's token at the gateway leads to the inside host's. The source address is
   * the one the route to the inside host gives (the gateway's inside address). The outcome goes
   * to the ledger linked to `parentToken`, like every upstream answer.
   */
  dispatchTranslated(parentToken: string, request: { type: RequestType; sid?: bigint }, flow: TrackedFlow): void {
    const job = this.#askTranslated(parentToken, request, flow).catch((error: unknown) => {
      this.#o.log.error(`The NAT question for ${parentToken} failed: ${String(error)}`);
    });
    this.#inFlight.add(job);
    void job.finally(() => this.#inFlight.delete(job));
  }

  async #askTranslated(parentToken: string, request: { type: RequestType; sid?: bigint }, flow: TrackedFlow): Promise<void> {
    const inside = flow.original.source;
    const outside = flow.original.destination;
    const clientIp = parseIpAddress(outside.address);
    if (clientIp === undefined) throw new Error(`The original destination ${outside.address} is not an address`);
    const ports = { rfc1413: false, clientPort: inside.port, serverPort: outside.port, clientIp } as const;
    const upstreamRequest: Request =
      isRecursiveType(request.type) && request.sid !== undefined
        ? { ...ports, type: request.type, sid: request.sid }
        : { ...ports, type: request.type === 'SV' || request.type === 'SV_REC' ? 'SV' : 'ID' };
    const candidate: UpstreamCandidate = { local: outside, remote: inside, inode: 0, state: 'ESTABLISHED', direction: 'inbound', pids: [] };
    const line = formatRequest(upstreamRequest);
    const base = { parentToken, type: upstreamRequest.type, ...('sid' in upstreamRequest ? { sid: upstreamRequest.sid.toString() } : {}), line };
    // Recursive types share the SID's work budget with recursion (paper 3.1.4).
    if ('sid' in upstreamRequest && this.#o.loops.take(upstreamRequest.sid.toString(), 1) < 1) {
      await this.#append(candidate, base, { outcome: 'skipped', message: 'work budget of this SID used up' });
      return;
    }
    const result = await this.#query(upstreamRequest, { host: inside.address });
    await this.#append(candidate, base, result);
  }

  async #append(
    candidate: UpstreamCandidate,
    base: { parentToken: string; type: string; sid?: string; line: string },
    result: UpstreamEntryFields,
  ): Promise<void> {
    const entry: UpstreamEntryInput = {
      kind: 'upstream',
      parentToken: base.parentToken,
      type: base.type,
      ...(base.sid === undefined ? {} : { sid: base.sid }),
      peer: { address: candidate.remote.address, port: this.#o.port },
      connection: { local: candidate.local, remote: candidate.remote },
      direction: 'translated',
      pids: [],
      request: base.line,
      ...result,
    };
    try {
      await this.#o.ledger.append(entry);
    } catch (error) {
      this.#o.log.error(`Cannot record the upstream outcome for ${base.parentToken}: ${String(error)}`);
    }
  }

  /** Asks one upstream host (holding a slot while asking) and describes how it ended, with the time it took. */
  async #query(upstreamRequest: Request, target: { readonly host: string; readonly localAddress?: string }): Promise<UpstreamEntryFields> {
    const release = await this.#slots.acquire();
    const started = Date.now();
    let result: UpstreamEntryFields;
    try {
      const received = await (this.#o.query ?? queryStop)(upstreamRequest, {
        ...target,
        port: this.#o.port,
        connectTimeoutMs: this.#o.connectTimeoutMs,
        timeoutMs: this.#o.replyTimeoutMs,
      });
      result = describeUpstreamReply(upstreamRequest, received);
    } catch (error) {
      result = describeUpstreamFailure(error);
    } finally {
      release();
    }
    return { ...result, elapsedMs: Date.now() - started };
  }

  async #run(parentToken: string, request: { type: RecursiveRequestType; sid: bigint }, candidates: readonly UpstreamCandidate[]): Promise<void> {
    const sid = request.sid.toString();
    const allowed = Math.min(candidates.length, this.#o.maxFanOut);
    const granted = this.#o.loops.take(sid, allowed);
    const asked = candidates.slice(0, granted);
    for (const candidate of candidates.slice(granted)) {
      const reason = asked.length < allowed ? 'work budget of this SID used up' : `more than ${this.#o.maxFanOut} upstream hosts`;
      await this.#record(parentToken, request, candidate, { outcome: 'skipped', message: reason });
    }
    await Promise.all(asked.map((candidate) => this.#ask(parentToken, request, candidate)));
  }

  async #ask(parentToken: string, request: { type: RecursiveRequestType; sid: bigint }, candidate: UpstreamCandidate): Promise<void> {
    // Upstream, the connection runs from its port (its <cl_port>) to ours (its <sv_port>).
    const upstreamRequest: Request = {
      type: request.type,
      rfc1413: false,
      clientPort: candidate.remote.port,
      serverPort: candidate.local.port,
      sid: request.sid,
    };
    const result = await this.#query(upstreamRequest, { host: candidate.remote.address, localAddress: candidate.local.address });
    await this.#record(parentToken, request, candidate, result);
  }

  async #record(
    parentToken: string,
    request: { type: RecursiveRequestType; sid: bigint },
    candidate: UpstreamCandidate,
    result: UpstreamEntryFields,
  ): Promise<void> {
    const peer: Endpoint = { address: candidate.remote.address, port: this.#o.port };
    const entry: UpstreamEntryInput = {
      kind: 'upstream',
      parentToken,
      type: request.type,
      sid: request.sid.toString(),
      peer,
      connection: { local: candidate.local, remote: candidate.remote },
      direction: candidate.direction,
      pids: candidate.pids,
      request: `${candidate.remote.port},${candidate.local.port}:${request.type}:${request.sid}`,
      ...result,
    };
    try {
      await this.#o.ledger.append(entry);
    } catch (error) {
      this.#o.log.error(`Cannot record the upstream outcome for ${parentToken}: ${String(error)}`);
    }
  }

  /** Waits for every upstream exchange in flight (each is bounded by its timeouts). */
  async close(): Promise<void> {
    while (this.#inFlight.size > 0) await Promise.all([...this.#inFlight]);
  }
}

/** The outcome fields of an `upstream` ledger entry, as evidence/ledger-format.ts types them. */
export type UpstreamEntryFields = Pick<UpstreamEntry, 'outcome' | 'token' | 'user' | 'error' | 'reply' | 'replyLength' | 'message' | 'elapsedMs'>;

/** Longest upstream reply kept in a ledger entry, escaped: a 512-character token reply fits. */
const MAX_STORED_REPLY = 600;
/** Longest failure message kept in a ledger entry, escaped. */
const MAX_STORED_MESSAGE = 300;

/**
 * What an upstream reply means (paper 3.1.3), judged as coming from a host the attacker may
 * control: a token is kept only when it is a plain token and the reply is for the port pair
 * asked (RFC 1413 section 6: a reply repeats the query's pair); an `OTHER` id that is not a
 * plain token is `bad-token`. Upstream text is stored escaped and bounded
 * ({@link escapeUpstreamText}), so a ledger entry stays small and holds no control characters.
 */
export function describeUpstreamReply(asked: Pick<Request, 'clientPort' | 'serverPort'>, received: QueryResult): UpstreamEntryFields {
  const { reply, line } = received;
  const stored = {
    reply: escapeUpstreamText(line, MAX_STORED_REPLY),
    ...(line.length > MAX_STORED_REPLY ? { replyLength: line.length } : {}),
  };
  if (reply.clientPort !== asked.clientPort || reply.serverPort !== asked.serverPort) {
    return {
      outcome: 'wrong-ports',
      ...stored,
      message: `The reply is for port pair ${reply.clientPort},${reply.serverPort}, not ${asked.clientPort},${asked.serverPort} as asked`,
    };
  }
  switch (reply.kind) {
    case 'token':
      if (isPlainToken(reply.token)) return { outcome: 'token', token: reply.token, ...stored };
      return { outcome: 'bad-token', ...stored, message: 'The token holds characters other than letters, digits and -._~+/=' };
    case 'user':
      if (reply.opsys.toUpperCase() === 'OTHER') {
        return { outcome: 'bad-token', ...stored, message: `An OTHER id of ${reply.user.length} characters that is not a token (printable ASCII, no space or colon, at most 512)` };
      }
      return { outcome: 'user', user: escapeUpstreamText(reply.user, MAX_STORED_REPLY), ...stored };
    case 'error':
      return { outcome: 'error', error: escapeUpstreamText(reply.error, MAX_STORED_MESSAGE), ...stored };
  }
}

/** The outcome of an upstream question that got no reply line. */
export function describeUpstreamFailure(error: unknown): UpstreamEntryFields {
  const message = escapeUpstreamText(error instanceof Error ? error.message : String(error), MAX_STORED_MESSAGE);
  return { outcome: classify(error), message };
}

/**
 * Upstream text made safe to store and print, reversibly: printable ASCII stays, a backslash
 * becomes `\\`, every other character `\xNN` (lines are read as latin1, one character per
 * byte) or `\u{NNNN}`; text that would escape to more than `max` characters is cut there and
 * `...` appended.
 */
export function escapeUpstreamText(text: string, max: number): string {
  let out = '';
  for (const char of text) {
    const code = char.codePointAt(0) ?? 0;
    let piece: string;
    if (char === '\\') piece = '\\\\';
    else if (code >= 0x20 && code < 0x7f) piece = char;
    else piece = code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u{${code.toString(16)}}`;
    if (out.length + piece.length > max) return `${out}...`;
    out += piece;
  }
  return out;
}

function classify(error: unknown): UpstreamOutcome {
  if (error instanceof PeerTimeoutError) return 'timeout';
  if (error instanceof PeerReplyTooLongError) return 'line-too-long';
  if (error instanceof PeerProtocolError) return 'protocol';
  if (error instanceof PeerUnreachableError) {
    const cause = error.cause as NodeJS.ErrnoException | undefined;
    return cause?.code === 'ECONNREFUSED' ? 'refused' : 'unreachable';
  }
  return 'unreachable';
}
