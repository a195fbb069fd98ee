import { PeerProtocolError, PeerTimeoutError, PeerUnreachableError } from '../errors.js';
import type { Ledger } from '../evidence/ledger.js';
import type { Endpoint } from '../host/types.js';
import type { RecursiveRequestType, Request } from '../protocol/index.js';
import type { UpstreamCandidate } from '../trace/index.js';
import { queryStop, type QueryOptions, type QueryResult } from './client.js';
import type { Logger } from './logger.js';
import type { LoopTable } from './loop-table.js';
import { Semaphore } from './semaphore.js';

/** How one upstream question ended (the `outcome` of an `upstream` ledger entry). */
export type UpstreamOutcome = 'token' | 'user' | 'error' | 'refused' | 'timeout' | 'unreachable' | 'protocol' | 'skipped';

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
    const release = await this.#slots.acquire();
    let result: Partial<UpstreamEntryFields>;
    try {
      const { reply, line } = await (this.#o.query ?? queryStop)(upstreamRequest, {
        host: candidate.remote.address,
        port: this.#o.port,
        localAddress: candidate.local.address,
        connectTimeoutMs: this.#o.connectTimeoutMs,
        timeoutMs: this.#o.replyTimeoutMs,
      });
      if (reply.kind === 'token') result = { outcome: 'token', token: reply.token, reply: line };
      else if (reply.kind === 'user') result = { outcome: 'user', user: reply.user, reply: line };
      else result = { outcome: 'error', error: reply.error, reply: line };
    } catch (error) {
      result = { outcome: classify(error), message: error instanceof Error ? error.message : String(error) };
    } finally {
      release();
    }
    await this.#record(parentToken, request, candidate, result);
  }

  async #record(
    parentToken: string,
    request: { type: RecursiveRequestType; sid: bigint },
    candidate: UpstreamCandidate,
    result: Partial<UpstreamEntryFields>,
  ): Promise<void> {
    const peer: Endpoint = { address: candidate.remote.address, port: this.#o.port };
    const entry = {
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

interface UpstreamEntryFields {
  readonly outcome: UpstreamOutcome;
  readonly token: string;
  readonly user: string;
  readonly error: string;
  readonly reply: string;
  readonly message: string;
}

function classify(error: unknown): UpstreamOutcome {
  if (error instanceof PeerTimeoutError) return 'timeout';
  if (error instanceof PeerProtocolError) return 'protocol';
  if (error instanceof PeerUnreachableError) {
    const cause = error.cause as NodeJS.ErrnoException | undefined;
    return cause?.code === 'ECONNREFUSED' ? 'refused' : 'unreachable';
  }
  return 'unreachable';
}
