import { readHostFacts } from '../host/host-facts.js';
import { readPidNamespaceView, type PidNamespaceView } from '../host/pid-namespace.js';
import { readEphemeralPorts, type LinuxHostView } from '../host/linux-host.js';
import { recent } from '../host/recent.js';
import type { Endpoint, TcpSocket } from '../host/types.js';
import type { AccountDirectory } from '../host/users.js';
import { readUtmp } from '../host/utmp.js';
import { buildRecord, formatRecordBytes, writeRecord, type SaveCategory } from '../evidence/record.js';
import type { HistoryConnection } from '../evidence/history-entry.js';
import { buildHistoryRecord } from '../evidence/history-record.js';
import type { Ledger } from '../evidence/ledger.js';
import { describeRecordNotKept, type StoreQuota } from '../evidence/quota.js';
import { hashToken, type TokenHash } from '../evidence/tokens.js';
import type { Logger } from './logger.js';
import {
  captureConnection,
  checkHolderVisibility,
  resolveClosure,
  type AnalysisProblem,
  type CapturedConnection,
  type CaptureOptions,
  type Closure,
  type UpstreamCandidate,
} from '../trace/index.js';

/** The facts of an SV/SV_REC request that go into its record. */
export interface EvidenceRequest {
  readonly line: string;
  readonly requester: Endpoint;
  readonly clientIp?: string;
  readonly type: 'SV' | 'SV_REC';
  readonly sid?: string;
}

/** The closure of an ID_REC request: who is upstream, without a record. */
export interface ClosureSummary {
  readonly processCount: number;
  readonly upstream: readonly UpstreamCandidate[];
}

/** An SV analysis done, before anything is written: the record's bytes and their token. */
export interface PreparedEvidence extends ClosureSummary {
  readonly bytes: Uint8Array;
  /** The hash of `bytes` under the daemon's token hash. */
  readonly token: string;
}

/**
 * What an analysis reads besides the socket: everything CPU-bound of an SV request (the host
 * view refresh, the closure, the record, its canonical JSON and hash) happens in
 * {@link prepareEvidence} and {@link summariseClosure}, on whichever thread owns this context.
 */
export interface AnalysisContext {
  /**
   * A fresh host view for each request: its process table indexes `/proc` once (a full scan,
   * or a refresh of the persistent descriptor index), so every question within one analysis
   * sees one snapshot. Analyses run one at a time (the daemon's analysis semaphore).
   */
  readonly hostView: (save: readonly SaveCategory[]) => LinuxHostView;
  readonly accounts: AccountDirectory;
  readonly tokenHash: TokenHash;
  /** Where utmp is read from (default `/var/run/utmp`; a missing file is no error). */
  readonly utmpPath?: string;
  /** Which processes `/proc` shows (default: read once from `/proc`); tells why a socket may have no visible holder. */
  readonly pidNamespace?: PidNamespaceView;
}

/** Log lines about requesters over their share, at most (one each). */
const MAX_SHARE_WARNINGS = 100;

/** Read at the first analysis of a thread: the PID namespace of `/proc` does not change. */
let pidNamespaceOfProc: PidNamespaceView | undefined;

/** The `no-visible-holder` problem when no process the closure read holds the queried socket (issue 13). */
function checkHolders(
  context: AnalysisContext,
  view: LinuxHostView,
  facts: { socket: TcpSocket; closure: Closure; denied: readonly number[] },
): AnalysisProblem | undefined {
  const { socket, closure } = facts;
  // The view indexed every descriptor once for the closure: asking again costs a lookup.
  const holders = socket.inode > 0 ? view.findHolders(socket.inode, socket.uid) : [];
  const read = new Set(closure.processes.map((process) => process.pid));
  return checkHolderVisibility({
    socket,
    holders,
    readHolders: holders.filter((pid) => read.has(pid)),
    denied: facts.denied,
    pidNamespace: context.pidNamespace ?? (pidNamespaceOfProc ??= readPidNamespaceView()),
  });
}

/** Resolves the process/IPC closure of `socket` in `view`. */
function resolveIn(view: LinuxHostView, socket: TcpSocket): Closure {
  const ephemeralPorts = readEphemeralPorts();
  return resolveClosure(view, { socket, ...(ephemeralPorts === undefined ? {} : { ephemeralPorts }) });
}

/** The closure alone, for ID_REC: who is upstream, without building a record. */
export function summariseClosure(context: AnalysisContext, socket: TcpSocket, save: readonly SaveCategory[]): ClosureSummary {
  const closure = resolveIn(context.hostView(save), socket);
  return { processCount: closure.processes.length, upstream: closure.upstream };
}

/**
 * The evidence of an SV or SV_REC request (paper 3.3, Table II): the process/IPC closure of the
 * queried socket, per-request host facts and utmp entries, as a record's canonical bytes and
 * their token. Writes nothing.
 */
export function prepareEvidence(
  context: AnalysisContext,
  socket: TcpSocket,
  options: { request: EvidenceRequest; save: readonly SaveCategory[] },
): PreparedEvidence {
  const { request, save } = options;
  const view = context.hostView(save);
  const closure = resolveIn(view, socket);
  const denied = view.deniedPids();
  const unseen = checkHolders(context, view, { socket, closure, denied });
  const record = buildRecord({
    closure,
    request: {
      line: request.line,
      requester: request.requester,
      ...(request.clientIp === undefined ? {} : { clientIp: request.clientIp }),
    },
    userName: (uid) => context.accounts.lookup(uid)?.name ?? null,
    // At most once a second (host/recent.ts): /proc/stat alone costs ~80 us to read.
    host: recent('host facts', readHostFacts),
    utmp: save.includes('utmp') ? readUtmp(context.utmpPath) : [],
    denied,
    problems: unseen === undefined ? [] : [unseen],
    save,
    type: request.type,
    ...(request.sid === undefined ? {} : { sid: request.sid }),
  });
  const bytes = formatRecordBytes(record);
  return { bytes, token: hashToken(bytes, context.tokenHash), processCount: closure.processes.length, upstream: closure.upstream };
}

/**
 * The history captures of a batch of new outbound connections (issue 14), in one host view:
 * one descriptor index refresh serves the whole batch. A capture that fails (a process that
 * vanished mid-read) is an empty one, never the batch's failure.
 */
export function captureConnections(context: AnalysisContext, requests: readonly CaptureOptions[], save: readonly SaveCategory[]): CapturedConnection[] {
  if (requests.length === 0) return [];
  const view = context.hostView(save);
  const ephemeralPorts = readEphemeralPorts();
  // A connect-heavy client opens many connections in one batch: its ancestry and the inbound
  // connections behind it are the same for each, so one capture per process serves them all.
  const byPid = new Map<number, CapturedConnection>();
  return requests.map((request) => {
    const visible = request.pidVisible ?? true;
    const known = visible ? byPid.get(request.pid) : undefined;
    if (known !== undefined) return known;
    let captured: CapturedConnection;
    try {
      captured = captureConnection(view, { ...request, ...(ephemeralPorts === undefined ? {} : { ephemeralPorts }) });
    } catch {
      captured = { ancestry: [], upstream: [] };
    }
    if (visible && captured.ancestry[0]?.pid === request.pid) byPid.set(request.pid, captured);
    return captured;
  });
}

/**
 * Where analyses run: {@link createInlineAnalyses} on the calling thread, or the analysis
 * worker thread (analysis-worker.ts), which keeps them off the event loop that accepts
 * connections and answers ID requests.
 */
export interface AnalysisRunner {
  prepare(socket: TcpSocket, options: { request: EvidenceRequest; save: readonly SaveCategory[] }): Promise<PreparedEvidence>;
  summarise(socket: TcpSocket, save: readonly SaveCategory[]): Promise<ClosureSummary>;
  /** History captures of new outbound connections ({@link captureConnections}). */
  capture(requests: readonly CaptureOptions[], save: readonly SaveCategory[]): Promise<CapturedConnection[]>;
  /** Ends the runner (and releases what it holds: the worker, the descriptor index). Idempotent. */
  close(): Promise<void>;
}

/**
 * Analyses on the calling thread (`--inline-analyses`, and inetd mode, which serves one
 * connection and so has no other request to delay). `close` runs `onClose` once.
 */
export function createInlineAnalyses(context: AnalysisContext, onClose?: () => void): AnalysisRunner {
  let closed = false;
  return {
    prepare: (socket, options) => Promise.resolve().then(() => prepareEvidence(context, socket, options)),
    summarise: (socket, save) => Promise.resolve().then(() => summariseClosure(context, socket, save)),
    capture: (requests, save) => Promise.resolve().then(() => captureConnections(context, requests, save)),
    close() {
      if (!closed) {
        closed = true;
        onClose?.();
      }
      return Promise.resolve();
    },
  };
}

/** What the collector needs. */
export interface EvidenceCollectorOptions {
  /** Where the closure, the record and its hash are computed. */
  readonly analyses: AnalysisRunner;
  readonly recordsDir: string;
  readonly save: readonly SaveCategory[];
  readonly tokenHash: TokenHash;
  /** Names uids in records built from history (live records are named by the analysis thread's own directory). */
  readonly accounts?: AccountDirectory;
  /** Where utmp is read for records built from history (default `/var/run/utmp`). */
  readonly utmpPath?: string;
  /**
   * Store limits (`--max-records`, `--max-store-bytes`): at the limit the record is not
   * written, a `record-not-kept` entry goes to `ledger` first, and the token is still the
   * hash of the record's bytes (the reply looks like any other).
   */
  readonly quota?: { readonly limits: StoreQuota; readonly ledger: Ledger; readonly log?: Logger };
}

/** The outcome of one SV/SV_REC analysis. */
export interface CollectedEvidence {
  /** The record's token: the hash of its bytes. */
  readonly token: string;
  readonly processCount: number;
  readonly upstream: readonly UpstreamCandidate[];
  /** False when the store quota kept the record from being saved. */
  readonly kept: boolean;
}

/**
 * Saves the evidence of an SV or SV_REC request (paper 3.3, Table II; DESIGN duty 5): the
 * analysis runs on its runner (the worker thread), the record is written crash-safely here.
 * Resolves once the record is durably on disk.
 */
export class EvidenceCollector {
  #o: EvidenceCollectorOptions;
  #quotaReached = false;
  /** Groups already warned about (bounded: the ledger has every refusal, the log only a hint). */
  readonly #sharesWarned = new Set<string>();

  constructor(options: EvidenceCollectorOptions) {
    this.#o = options;
  }

  /** Changes what records keep, from the next request on (SIGHUP reload). */
  configure(next: Pick<EvidenceCollectorOptions, 'save'>): void {
    this.#o = { ...this.#o, save: next.save };
  }

  /** The closure alone, for ID_REC: who is upstream, without saving a record. */
  analyse(socket: TcpSocket): Promise<ClosureSummary> {
    return this.#o.analyses.summarise(socket, this.#o.save);
  }

  /**
   * Analyses, then writes the record unless the store quota or the share of `requesterGroup`
   * (the sender's group, never a CL_IP's: `QueryOrigin.requesterGroup`) is used up.
   */
  async collect(socket: TcpSocket, request: EvidenceRequest, options: { readonly requesterGroup: string }): Promise<CollectedEvidence> {
    const prepared = await this.#o.analyses.prepare(socket, { request, save: this.#o.save });
    const bytes = Buffer.from(prepared.bytes.buffer, prepared.bytes.byteOffset, prepared.bytes.byteLength);
    const kept = await this.#keep(bytes, prepared.token, options.requesterGroup);
    return { token: prepared.token, processCount: prepared.processCount, upstream: prepared.upstream, kept };
  }

  /**
   * The record of a request answered from history (issue 14): built here from the journal
   * entry (no /proc scan, so no analysis thread), then kept under the same quota and shares.
   */
  async collectHistory(
    connection: HistoryConnection,
    request: EvidenceRequest,
    options: { readonly requesterGroup: string },
  ): Promise<CollectedEvidence> {
    const save = this.#o.save;
    const accounts = this.#o.accounts;
    const record = buildHistoryRecord({
      connection,
      request: {
        line: request.line,
        requester: request.requester,
        ...(request.clientIp === undefined ? {} : { clientIp: request.clientIp }),
      },
      userName: (uid) => accounts?.lookup(uid)?.name ?? null,
      host: recent('host facts', readHostFacts),
      utmp: save.includes('utmp') ? readUtmp(this.#o.utmpPath) : [],
      save,
      type: request.type,
      ...(request.sid === undefined ? {} : { sid: request.sid }),
    });
    const bytes = formatRecordBytes(record);
    const token = hashToken(bytes, this.#o.tokenHash);
    const kept = await this.#keep(bytes, token, options.requesterGroup);
    return { token, processCount: record.processes?.length ?? 0, upstream: record.upstream, kept };
  }

  /** Writes a record unless the store quota or the group's share is used up; false when not kept. */
  async #keep(bytes: Buffer, token: string, group: string): Promise<boolean> {
    const quota = this.#o.quota;
    const refusal = quota?.limits.admit(bytes.length, group);
    if (quota !== undefined && refusal !== undefined) {
      // Duty 9: what the token stands for (nothing kept, and why) is durable before the reply.
      await quota.ledger.append(describeRecordNotKept(token, refusal, bytes.length));
      if (refusal.reason === 'requester-share') {
        if (!this.#sharesWarned.has(group) && this.#sharesWarned.size < MAX_SHARE_WARNINGS) {
          this.#sharesWarned.add(group);
          quota.log?.warn(`Requester ${group} reached its share of the store (${refusal.limit} ${refusal.of === 'max-records' ? 'records' : 'bytes'}): its SV records are no longer kept`);
        }
      } else {
        if (!this.#quotaReached) quota.log?.warn(`Store quota reached (${refusal.reason} ${refusal.limit}): SV records are no longer kept`);
        this.#quotaReached = true;
      }
      return false;
    }
    this.#quotaReached = false;
    try {
      await writeRecord(this.#o.recordsDir, bytes, { hash: this.#o.tokenHash, token });
    } catch (error) {
      quota?.limits.release(bytes.length, group);
      throw error;
    }
    return true;
  }

  /** Ends the analysis runner. Idempotent. */
  close(): Promise<void> {
    return this.#o.analyses.close();
  }
}
