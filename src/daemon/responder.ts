import { StopdError } from '../errors.js';
import { listLocalAddresses } from '../host/addresses.js';
import type { ConntrackTable, TrackedFlow } from '../host/conntrack.js';
import type { Endpoint, SocketTable, TcpSocket } from '../host/types.js';
import { readOptInFile, type AccountDirectory } from '../host/users.js';
import type { Ledger } from '../evidence/ledger.js';
import type { ReplyEntryInput } from '../evidence/ledger-format.js';
import type { HistoryConnection, HistoryLookup } from '../evidence/history-entry.js';
import { toUpstreamCandidates } from '../evidence/history-record.js';
import type { NatJournal } from '../evidence/nat-journal.js';
import { generateToken, type TokenHash } from '../evidence/tokens.js';
import { addressFamily, formatReply, isRecursiveType, isValidUserId, mentionsClientIp, normaliseAddress, parseRequest, RequestSyntaxError, type IpAddress, type Reply, type Request } from '../protocol/index.js';
import { optInAdmits } from './opt-in.js';
import { decideConnection, decideError, type ConnectionFinding, type Decision, type ReplyPolicy } from './policy.js';
import type { Semaphore } from './semaphore.js';
import type { EvidenceCollector, EvidenceRequest } from './evidence-collector.js';
import type { Logger } from './logger.js';
import type { LoopTable } from './loop-table.js';
import type { RateClass, RateLimiter } from './rate-limiter.js';
import type { UpstreamDispatcher } from './upstream.js';
import type { UpstreamCandidate } from '../trace/index.js';

/** The two ends of the query connection itself (requester -> this daemon). */
export interface QueryOrigin {
  readonly requester: Endpoint;
  /**
   * The requester's group (`formatRequesterGroup`), worked out once per connection: every
   * per-requester limit (connection slots, rates, the store share) counts by it.
   */
  readonly requesterGroup: string;
  readonly local: Endpoint;
}

/** What a Responder needs from the layers below and from the operator. */
export interface ResponderOptions {
  readonly sockets: SocketTable;
  readonly ledger: Ledger;
  readonly accounts: AccountDirectory;
  readonly lookups: Semaphore;
  readonly policy: ReplyPolicy;
  /** `--opt-in`: honour users' `~/.ident` lists for `ID` requests. */
  readonly optIn: boolean;
  readonly tokenHash: TokenHash;
  /** Saves SV/SV_REC evidence and analyses ID_REC; without it those requests are answered as ID. */
  readonly evidence?: EvidenceCollector;
  /** Bounds the SV/SV_REC/ID_REC analyses waiting to run (overload: UNKNOWN-ERROR). */
  readonly analyses?: Semaphore;
  /** Loop and storm control of ID_REC/SV_REC (paper 3.1.4). */
  readonly loops?: LoopTable;
  /** Asks upstream hosts for ID_REC/SV_REC; without it nothing is sent upstream. */
  readonly upstream?: UpstreamDispatcher;
  /**
   * `--nat`: the gateway's conntrack table. A connection no local socket holds is looked up
   * there by its translated tuple; without it such requests get NO-USER as before.
   */
  readonly nat?: ConntrackTable;
  /** `--nat`: translations conntrack has forgotten (its events, kept by the daemon). */
  readonly natJournal?: NatJournal;
  /** Brings the journal up to date (reads the conntrack events waiting) before it is asked. */
  readonly natRefresh?: () => void;
  /** Per-requester rate limits; without it nothing is limited. */
  readonly rates?: RateLimiter;
  /**
   * The history journal (issue 14): a connection the socket table no longer holds (or holds
   * closing) is answered from its entry; without it such requests get NO-USER as before.
   */
  readonly history?: HistoryLookup;
  readonly log: Logger;
}

/**
 * Answers one request line: parse, look up, decide, record, reply (DESIGN "The daemon's
 * duties"). The ledger entry is durably written before the reply exists (duty 9).
 */
export class Responder {
  #o: ResponderOptions;

  constructor(options: ResponderOptions) {
    this.#o = options;
  }

  /** Answers closed connections from `history` from now on (the daemon starts it once it listens). */
  attachHistory(history: HistoryLookup): void {
    this.#o = { ...this.#o, history };
  }

  /** Changes the reply policy and opt-in (SIGHUP reload); requests in flight keep the old ones. */
  configure(next: Pick<ResponderOptions, 'policy' | 'optIn'>): void {
    this.#o = { ...this.#o, policy: next.policy, optIn: next.optIn };
  }

  /**
   * The reply line (without end of line) for `line` received from `origin`, or undefined when
   * the line has no port pair to echo: RFC 1413 then lets the server close without a reply.
   */
  async answer(line: string, origin: QueryOrigin): Promise<string | undefined> {
    let request: Request;
    try {
      request = parseRequest(line);
    } catch (error) {
      if (!(error instanceof RequestSyntaxError)) throw error;
      const ports = error.ports;
      // Malformed lines cost a ledger entry each: they draw from the ID bucket.
      if (!this.#admitRate(origin, 'id')) {
        return ports === undefined ? undefined : this.#refuseRate(ports, mentionsClientIp(line));
      }
      if (ports === undefined) {
        await this.#record({ kind: 'reply', request: line, requestError: error.message, requester: origin.requester, decision: 'close' });
        return undefined;
      }
      const decision = decideError(error.errorToken, { policy: this.#o.policy, clientIp: mentionsClientIp(line) });
      const reply = await this.#reply(decision, {
        ports,
        origin,
        record: { kind: 'reply', request: line, requestError: error.message },
      });
      return reply.line;
    }
    const ports = { client: request.clientPort, server: request.serverPort };
    const clientIp = clientIpOf(request) !== undefined;
    // CL_IP requests count against the requester that sent them, never the CL_IP: naming
    // someone else's address must not spend (or escape) anyone else's allowance.
    if (!this.#admitRate(origin, request.type === 'ID' ? 'id' : 'analysis')) return this.#refuseRate(ports, clientIp);
    let finding: ConnectionFinding;
    let socket: TcpSocket | undefined;
    let history: HistoryConnection | undefined;
    let translation: Translation | undefined;
    try {
      ({ finding, socket, history, translation } = await this.#findConnection(request, origin));
    } catch (error) {
      this.#o.log.warn(`Cannot look up ${ports.client},${ports.server} for ${origin.requester.address}: ${String(error)}`);
      const decision = decideError('UNKNOWN-ERROR', { policy: this.#o.policy, clientIp });
      const reply = await this.#reply(decision, {
        ports,
        origin,
        record: { ...describeRequest(line, request), lookupError: errorCode(error) },
      });
      return reply.line;
    }
    // Loop control comes after the lookup so that a repeat about a connection this host would
    // not vouch for (inbound, unknown) still gets the same error: only what would have been
    // processed — a token, evidence, recursion — is refused to a repeat (paper 3.1.4).
    if (decideConnection(finding, { policy: this.#o.policy, clientIp, optedIn: false }).reply === 'token') {
      const refused = await this.#refuseRepeat(request, origin, line);
      if (refused !== undefined) return refused;
    }
    const ownerUid = history?.uid ?? socket?.uid;
    const account = ownerUid === undefined ? undefined : this.#o.accounts.lookup(ownerUid);
    const optedIn =
      this.#o.optIn && request.type === 'ID' && !clientIp && finding.kind === 'outbound' && account !== undefined
        ? await this.#admits(account, origin.requester.address)
        : false;
    let decision = decideConnection(finding, { policy: this.#o.policy, clientIp, optedIn });
    const record: ReplyDraft = {
      ...describeRequest(line, request),
      finding: finding.kind,
      ...(socket === undefined
        ? {}
        : {
            source: 'live',
            connection: { local: socket.local, remote: socket.remote, state: socket.state, inode: socket.inode },
            uid: socket.uid,
            user: account?.name ?? null,
          }),
      // An ID token of a closed connection points to its journal entry (issue 14).
      ...(history === undefined
        ? {}
        : {
            source: 'history',
            history: history.seq,
            connection: { local: history.local, remote: history.remote, state: history.closedAt === null ? 'ESTABLISHED' : 'CLOSE', inode: 0 },
            uid: history.uid,
            user: account?.name ?? null,
            pid: history.pid,
            comm: history.comm,
            loginuid: history.loginuid,
            connectedAt: history.connectedAt,
            closedAt: history.closedAt,
          }),
      ...(translation === undefined ? {} : { translation: describeFlow(translation), upstream: 1 }),
    };
    let token: string | undefined;
    let upstream: readonly UpstreamCandidate[] = [];
    // SV/SV_REC save evidence, ID_REC analyses (to find upstream hosts), for connections this
    // host made; with CL_IP (a gateway or an IDS asking, paper 3.1.2) also for ones it
    // accepted, since the reply is a token anyway.
    const analysed = request.type !== 'ID' && (finding.kind === 'outbound' || (clientIp && finding.kind === 'inbound'));
    if (analysed && history !== undefined && decision.reply === 'token') {
      try {
        const result = await this.#answerFromHistory(history, request, { line, origin });
        token = result.token;
        upstream = result.upstream;
        if (result.token !== undefined) record.record = result.token;
        if (isRecursiveType(request.type)) record.upstream = upstream.length;
      } catch (error) {
        this.#o.log.error(`Cannot answer ${JSON.stringify(line)} from history: ${String(error)}`);
        record.evidenceError = errorCode(error);
        decision = decideError('UNKNOWN-ERROR', { policy: this.#o.policy, clientIp });
      }
    } else if (analysed && socket !== undefined && decision.reply === 'token') {
      let release: (() => void) | undefined;
      try {
        // Analyses run one at a time (they scan /proc synchronously); a bounded queue waits,
        // and beyond it SV is refused at once instead of queuing for ever (duty 10).
        release = await this.#o.analyses?.acquire();
        const result = await this.#analyse(socket, request, { line, origin });
        token = result.token;
        upstream = result.upstream;
        if (result.record && result.token !== undefined) record.record = result.token;
        record.processes = result.processCount;
        if (isRecursiveType(request.type)) record.upstream = upstream.length;
      } catch (error) {
        this.#o.log.error(`Cannot analyse ${JSON.stringify(line)}: ${String(error)}`);
        record.evidenceError = errorCode(error);
        decision = decideError('UNKNOWN-ERROR', { policy: this.#o.policy, clientIp });
      } finally {
        release?.();
      }
    }
    const reply = await this.#reply(decision, { ports, origin, user: account?.name, token, record });
    // Paper 3.1.3: reply first, then ask upstream; their tokens go to the ledger only.
    if ('sid' in request && reply.token !== undefined && upstream.length > 0) {
      this.#o.upstream?.dispatch(reply.token, { type: request.type, sid: request.sid }, upstream);
    }
    // --nat: the same order, our own token first; the inside host's answer goes to the ledger.
    if (translation !== undefined && reply.token !== undefined) {
      this.#o.upstream?.dispatchTranslated(reply.token, { type: request.type, ...('sid' in request ? { sid: request.sid } : {}) }, translation.flow);
    }
    return reply.line;
  }

  /**
   * Takes a token from the requester's bucket. A refusal is counted by the limiter (its
   * window's `rate-limited` ledger entry) and logged once per requester and window.
   */
  #admitRate(origin: QueryOrigin, rateClass: RateClass): boolean {
    const rates = this.#o.rates;
    if (rates === undefined) return true;
    const group = origin.requesterGroup;
    const verdict = rates.admit(group, rateClass);
    if (verdict.allowed) return true;
    if (verdict.first) {
      this.#o.log.warn(
        `Rate limit: refusing ${rateClass === 'id' ? 'ID' : 'SV, SV_REC and ID_REC'} requests from ${group} beyond its allowance; ` +
          'the count goes to the ledger (rate-limited) once a minute',
      );
    }
    return false;
  }

  /**
   * The reply to a rate-limited request: UNKNOWN-ERROR shaped by the reply policy like any
   * other error (a token with CL_IP or --random-errors). It is not written to the ledger one
   * by one, or the limiter would let a flood fill the ledger it protects: the window's
   * `rate-limited` entry counts it, and such a token redeems to nothing.
   */
  #refuseRate(ports: { client: number; server: number }, clientIp: boolean): string {
    const decision = decideError('UNKNOWN-ERROR', { policy: this.#o.policy, clientIp });
    const { client: clientPort, server: serverPort } = ports;
    return formatReply(
      decision.reply === 'error'
        ? { kind: 'error', clientPort, serverPort, error: decision.error }
        : { kind: 'token', clientPort, serverPort, token: generateToken(this.#o.tokenHash) },
    );
  }

  /**
   * Recursive requests seen before are not processed (paper 3.1.4); the answer is a token
   * either way, so a requester cannot tell. Undefined when the request is to be processed.
   */
  async #refuseRepeat(request: Request, origin: QueryOrigin, line: string): Promise<string | undefined> {
    if (!('sid' in request) || this.#o.loops === undefined) return undefined;
    const remote = normaliseAddress(clientIpOf(request)?.address ?? origin.requester.address);
    const verdict = this.#o.loops.admit({
      sid: request.sid.toString(),
      requester: origin.requester.address,
      connection: `${origin.local.address}:${request.clientPort}>${remote}:${request.serverPort}`,
    });
    if (verdict === 'new') return undefined;
    const reply = await this.#reply(
      { reply: 'token', reason: verdict === 'repeat' ? 'repeat' : verdict === 'budget' ? 'sid-budget' : 'loop-table-full' },
      { ports: { client: request.clientPort, server: request.serverPort }, origin, record: { ...describeRequest(line, request), processed: false } },
    );
    return reply.line;
  }

  /**
   * SV/SV_REC record, or the upstream candidates alone (ID_REC), of a connection the history
   * holds. No /proc scan: everything was captured when the connection opened.
   */
  async #answerFromHistory(
    connection: HistoryConnection,
    request: Request,
    context: { line: string; origin: QueryOrigin },
  ): Promise<{ token: string | undefined; upstream: readonly UpstreamCandidate[] }> {
    const evidence = this.#o.evidence;
    if (evidence === undefined) return { token: undefined, upstream: [] };
    if (request.type === 'SV' || request.type === 'SV_REC') {
      const saved = await evidence.collectHistory(
        connection,
        describeRecordRequest(request.type, request, context),
        { requesterGroup: context.origin.requesterGroup },
      );
      return { token: saved.token, upstream: saved.upstream };
    }
    return { token: undefined, upstream: toUpstreamCandidates(connection.upstream) };
  }

  /** Evidence (SV, SV_REC) or analysis alone (ID_REC) of an established connection. */
  async #analyse(
    socket: TcpSocket,
    request: Request,
    context: { line: string; origin: QueryOrigin },
  ): Promise<{ token: string | undefined; record: boolean; processCount: number; upstream: readonly UpstreamCandidate[] }> {
    const evidence = this.#o.evidence;
    if (evidence === undefined) return { token: undefined, record: false, processCount: 0, upstream: [] };
    if (request.type === 'SV' || request.type === 'SV_REC') {
      const saved = await evidence.collect(
        socket,
        describeRecordRequest(request.type, request, context),
        { requesterGroup: context.origin.requesterGroup },
      );
      return { token: saved.token, record: true, processCount: saved.processCount, upstream: saved.upstream };
    }
    const analysis = await evidence.analyse(socket);
    return { token: undefined, record: false, processCount: analysis.processCount, upstream: analysis.upstream };
  }

  async #findConnection(request: Request, origin: QueryOrigin): Promise<FoundConnection> {
    // RFC 1413: the queried connection joins our <cl_port> and the requester's <sv_port>;
    // STOP's CL_IP names another remote address (paper 3.1.2), for gateways and IDS hosts.
    const remote: Endpoint = {
      address: normaliseAddress(clientIpOf(request)?.address ?? origin.requester.address),
      port: request.serverPort,
    };
    const release = await this.#o.lookups.acquire();
    try {
      const locals = [origin.local.address];
      if (clientIpOf(request) !== undefined) {
        // The IDS reached us on some address; the queried connection may use any of ours.
        const family = addressFamily(remote.address);
        for (const address of listLocalAddresses()) {
          if (addressFamily(address) === family && !locals.includes(address)) locals.push(address);
        }
      }
      let socket: TcpSocket | undefined;
      for (const address of locals) {
        socket = this.#o.sockets.findTcp({ address, port: request.clientPort }, remote);
        if (socket !== undefined) break;
      }
      if (socket !== undefined && socket.state === 'ESTABLISHED') {
        // Issue 14, "direction becomes a fact": the recorder saw this host connect, so the
        // connection is outbound whatever listener shares its local port.
        if (this.#recordedOpen(socket)) return { finding: { kind: 'outbound' }, socket };
        if (this.#o.sockets.hasListener(socket.local)) return { finding: { kind: 'inbound' }, socket };
        return { finding: { kind: 'outbound' }, socket };
      }
      // Gone, or closing (TIME_WAIT, FIN_WAIT2, ...): nobody holds it now, but the history may
      // say who did. The newest entry of the tuple wins (the journal's rule for reused tuples).
      const history = this.#findHistory(locals, { port: request.clientPort }, remote);
      if (history !== undefined) return { finding: { kind: 'outbound' }, history };
      if (socket === undefined) {
        // `--nat`: a connection this gateway translated rather than holds.
        const translation = this.#findTranslated(locals, { port: request.clientPort }, remote);
        return translation === undefined ? { finding: { kind: 'not-found' } } : { finding: { kind: 'translated' }, translation };
      }
      return { finding: { kind: 'not-established', state: socket.state }, socket };
    } finally {
      release();
    }
  }

  /** Whether the history holds `socket` as an outbound connection still open. */
  #recordedOpen(socket: TcpSocket): boolean {
    const entry = this.#o.history?.findConnection(socket.local, socket.remote);
    return entry !== undefined && entry.closedAt === null && entry.establishedAt !== null;
  }

  /** The newest established connection recorded from one of `locals` at `port` to `remote`. */
  #findHistory(locals: readonly string[], local: { port: number }, remote: Endpoint): HistoryConnection | undefined {
    const history = this.#o.history;
    if (history === undefined) return undefined;
    let found: HistoryConnection | undefined;
    for (const address of locals) {
      const entry = history.findConnection({ address, port: local.port }, remote);
      // A connect that never got established never carried anything to the requester.
      if (entry === undefined || entry.establishedAt === null) continue;
      if (found === undefined || entry.seq > found.seq) found = entry;
    }
    return found;
  }

  /**
   * `--nat`: the flow this gateway translated whose reply direction runs from the requester's
   * end (`remote`) to one of our addresses at `<cl_port>`: what the requester sees of a
   * masqueraded connection, and what an inside host sees of one that came in through a port
   * forward with SNAT. Only established flows that were translated count: anything else is
   * not a connection this gateway stands behind.
   */
  #findTranslated(locals: readonly string[], local: { port: number }, remote: Endpoint): Translation | undefined {
    const nat = this.#o.nat;
    if (nat === undefined) return undefined;
    const candidates = locals.filter((address) => addressFamily(address) === addressFamily(remote.address));
    for (const address of candidates) {
      const flow = nat.findByReply(remote, { address, port: local.port });
      if (flow !== undefined && flow.state === 'ESTABLISHED' && (flow.sourceNat || flow.destinationNat)) return { flow, source: 'conntrack' };
    }
    // Conntrack forgot it (the connection closed): the journal of its events may remember,
    // once it has read what the kernel said since its last read.
    if (this.#o.natJournal !== undefined) this.#o.natRefresh?.();
    for (const address of candidates) {
      const known = this.#o.natJournal?.findByReply(remote, { address, port: local.port });
      if (known !== undefined) return { flow: known.flow, source: 'journal', ...(known.closed === undefined ? {} : { closed: known.closed }) };
    }
    return undefined;
  }

  async #admits(account: { uid: number; name: string; home: string }, requester: string): Promise<boolean> {
    const entries = readOptInFile(account);
    return entries !== undefined && (await optInAdmits(entries, requester));
  }

  async #reply(
    decision: Decision,
    options: {
      ports: { client: number; server: number };
      origin: QueryOrigin;
      user?: string | undefined;
      /** The token to send for a token decision: an SV record's hash; default a fresh random one. */
      token?: string | undefined;
      record: ReplyDraft;
    },
  ): Promise<{ line: string; token?: string }> {
    const { client: clientPort, server: serverPort } = options.ports;
    let reply: Reply;
    if (decision.reply === 'token') {
      reply = { kind: 'token', clientPort, serverPort, token: options.token ?? generateToken(this.#o.tokenHash) };
    } else if (decision.reply === 'user' && options.user !== undefined && isValidUserId(options.user)) {
      reply = { kind: 'user', clientPort, serverPort, user: options.user };
    } else if (decision.reply === 'error') {
      reply = { kind: 'error', clientPort, serverPort, error: decision.error };
    } else {
      reply = { kind: 'token', clientPort, serverPort, token: generateToken(this.#o.tokenHash) };
    }
    const entry: ReplyEntryInput = {
      ...options.record,
      requester: options.origin.requester,
      decision: decision.reply,
      ...(decision.reply === 'token' ? { reason: decision.reason } : {}),
      ...(decision.reply === 'token' && decision.replaces !== undefined ? { replaces: decision.replaces } : {}),
      ...(decision.reply === 'error' ? { error: decision.error, precise: decision.precise } : {}),
      ...(reply.kind === 'token' ? { token: reply.token } : {}),
    };
    if (!(await this.#record(entry))) {
      // Duty 9: a token whose meaning is not on disk must not be sent. CL_IP still gets a
      // token (property 4), which then simply redeems to nothing.
      const clientIp = decision.reply === 'token' && decision.reason === 'cl-ip';
      reply = clientIp
        ? { kind: 'token', clientPort, serverPort, token: generateToken(this.#o.tokenHash) }
        : { kind: 'error', clientPort, serverPort, error: 'UNKNOWN-ERROR' };
      return { line: formatReply(reply) };
    }
    return reply.kind === 'token' ? { line: formatReply(reply), token: reply.token } : { line: formatReply(reply) };
  }

  /** Appends to the ledger; false (and a log line) when the store cannot take it. */
  async #record(entry: ReplyEntryInput): Promise<boolean> {
    try {
      await this.#o.ledger.append(entry);
      return true;
    } catch (error) {
      this.#o.log.error(`Cannot record a request in the ledger: ${String(error)}`);
      return false;
    }
  }
}

/** What the socket table (or the history) says about the queried connection. */
interface FoundConnection {
  readonly finding: ConnectionFinding;
  readonly socket?: TcpSocket;
  /** Set when the answer comes from the history journal (issue 14). */
  readonly history?: HistoryConnection;
  /** Set when a `--nat` gateway translated the connection rather than holds it (issue 15). */
  readonly translation?: Translation;
}

/** A reply entry being built: the request's fields first, the decision's once it is made. */
type ReplyDraft = { -readonly [K in keyof Omit<ReplyEntryInput, 'requester' | 'decision'>]: ReplyEntryInput[K] };

function describeRequest(line: string, request: Request): ReplyDraft {
  return {
    kind: 'reply',
    request: line,
    type: request.type,
    ...('sid' in request ? { sid: request.sid.toString() } : {}),
    ...(clientIpOf(request) === undefined ? {} : { clientIp: normaliseAddress(clientIpOf(request)?.address ?? '') }),
  };
}

/** A translated flow and where it was found: live in conntrack, or in the journal after it closed. */
interface Translation {
  readonly flow: TrackedFlow;
  readonly source: 'conntrack' | 'journal';
  readonly closed?: string;
}

/** A translated flow as the ledger keeps it (the gateway's evidence: no process stands behind it here). */
function describeFlow(translation: Translation): Record<string, unknown> {
  const { flow } = translation;
  return {
    source: translation.source,
    ...(translation.closed === undefined ? {} : { closed: translation.closed }),
    original: flow.original,
    reply: flow.reply,
    sourceNat: flow.sourceNat,
    destinationNat: flow.destinationNat,
    state: flow.state,
    zone: flow.zone,
    conntrackId: flow.id,
  };
}

/** CL_IP of a request, when it has one (only STOP forms can). */
function clientIpOf(request: Request): IpAddress | undefined {
  return 'clientIp' in request ? request.clientIp : undefined;
}

function errorCode(error: unknown): string {
  return error instanceof StopdError ? error.code : 'ERR_UNEXPECTED';
}

/** The request part of an SV/SV_REC record: the line as received, who asked, the SID and CL_IP. */
function describeRecordRequest(type: 'SV' | 'SV_REC', request: Request, context: { line: string; origin: QueryOrigin }): EvidenceRequest {
  const clientIp = clientIpOf(request);
  return {
    line: context.line,
    requester: context.origin.requester,
    type,
    ...('sid' in request ? { sid: request.sid.toString() } : {}),
    ...(clientIp === undefined ? {} : { clientIp: normaliseAddress(clientIp.address) }),
  };
}
