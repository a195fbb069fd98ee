import { readHostFacts } from '../host/host-facts.js';
import { readPidNamespaceView, type PidNamespaceView } from '../host/pid-namespace.js';
import { readEphemeralPorts, type LinuxHostView } from '../host/linux-host.js';
import { recent } from '../host/recent.js';
import type { Endpoint, TcpSocket } from '../host/types.js';
import type { AccountDirectory } from '../host/users.js';
import { readUtmp } from '../host/utmp.js';
import { buildRecord, formatRecordBytes, writeRecord, type SaveCategory } from '../evidence/record.js';
import type { Ledger } from '../evidence/ledger.js';
import { describeRecordNotKept, type StoreQuota } from '../evidence/quota.js';
import { hashToken, type TokenHash } from '../evidence/tokens.js';
import type { Logger } from './logger.js';
import { checkHolderVisibility, resolveClosure, type AnalysisProblem, type Closure, type UpstreamCandidate } from '../trace/index.js';

/** What the collector needs. */
export interface EvidenceCollectorOptions {
  /**
   * A fresh host view for each request: its process table indexes `/proc` once (a full scan,
   * or a refresh of the daemon's persistent descriptor index), so every question within one
   * analysis sees one snapshot. Analyses run one at a time (the daemon's analysis semaphore).
   */
  readonly hostView: () => LinuxHostView;
  readonly accounts: AccountDirectory;
  readonly recordsDir: string;
  readonly save: readonly SaveCategory[];
  readonly tokenHash: TokenHash;
  /** Where utmp is read from (default `/var/run/utmp`; a missing file is no error). */
  readonly utmpPath?: string;
  /**
   * Store limits (`--max-records`, `--max-store-bytes`): at the limit the record is not
   * written, a `record-not-kept` entry goes to `ledger` first, and the token is still the
   * hash of the record's bytes (the reply looks like any other).
   */
  readonly quota?: { readonly limits: StoreQuota; readonly ledger: Ledger; readonly log?: Logger };
  /** Which processes `/proc` shows (default: read once from `/proc`); tells why a socket may have no visible holder. */
  readonly pidNamespace?: PidNamespaceView;
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
 * process/IPC closure of the queried socket, per-request host facts and utmp entries, as a
 * content-hashed record written crash-safely. Resolves once the record is durably on disk.
 */
export class EvidenceCollector {
  #o: EvidenceCollectorOptions;
  #quotaReached = false;
  #pidNamespace: PidNamespaceView | undefined;

  constructor(options: EvidenceCollectorOptions) {
    this.#o = options;
  }

  /** Changes what records keep, from the next request on (SIGHUP reload). */
  configure(next: Pick<EvidenceCollectorOptions, 'save'>): void {
    this.#o = { ...this.#o, save: next.save };
  }

  /** The closure alone, for ID_REC: who is upstream, without saving a record. */
  analyse(socket: TcpSocket): { processCount: number; upstream: readonly UpstreamCandidate[] } {
    const closure = this.#resolve(this.#o.hostView(), socket);
    return { processCount: closure.processes.length, upstream: closure.upstream };
  }

  #resolve(view: LinuxHostView, socket: TcpSocket): Closure {
    const ephemeralPorts = readEphemeralPorts();
    return resolveClosure(view, { socket, ...(ephemeralPorts === undefined ? {} : { ephemeralPorts }) });
  }

  /** The `no-visible-holder` problem when no process the closure read holds the queried socket (issue 13). */
  #checkHolders(
    view: LinuxHostView,
    facts: { socket: TcpSocket; closure: Closure; denied: readonly number[] },
  ): AnalysisProblem | undefined {
    const { socket, closure } = facts;
    // The view indexed every descriptor once for the closure: asking again costs a lookup.
    const holders = socket.inode > 0 ? view.findHolders(socket.inode, socket.uid) : [];
    const read = new Set(closure.processes.map((process) => process.pid));
    this.#pidNamespace ??= this.#o.pidNamespace ?? readPidNamespaceView();
    return checkHolderVisibility({
      socket,
      holders,
      readHolders: holders.filter((pid) => read.has(pid)),
      denied: facts.denied,
      pidNamespace: this.#pidNamespace,
    });
  }

  async collect(
    socket: TcpSocket,
    request: { line: string; requester: Endpoint; clientIp?: string; type: 'SV' | 'SV_REC'; sid?: string },
  ): Promise<CollectedEvidence> {
    const view = this.#o.hostView();
    const closure = this.#resolve(view, socket);
    const denied = view.deniedPids();
    const problems: AnalysisProblem[] = [];
    const unseen = this.#checkHolders(view, { socket, closure, denied });
    if (unseen !== undefined) problems.push(unseen);
    const record = buildRecord({
      closure,
      request: {
        line: request.line,
        requester: request.requester,
        ...(request.clientIp === undefined ? {} : { clientIp: request.clientIp }),
      },
      userName: (uid) => this.#o.accounts.lookup(uid)?.name ?? null,
      // At most once a second (host/recent.ts): /proc/stat alone costs ~80 us to read.
      host: recent('host facts', readHostFacts),
      utmp: this.#o.save.includes('utmp') ? readUtmp(this.#o.utmpPath) : [],
      denied,
      problems,
      save: this.#o.save,
      type: request.type,
      ...(request.sid === undefined ? {} : { sid: request.sid }),
    });
    const bytes = formatRecordBytes(record);
    const quota = this.#o.quota;
    const refusal = quota?.limits.admit(bytes.length);
    if (quota !== undefined && refusal !== undefined) {
      const token = hashToken(bytes, this.#o.tokenHash);
      // Duty 9: what the token stands for (nothing kept, and why) is durable before the reply.
      await quota.ledger.append(describeRecordNotKept(token, refusal, bytes.length));
      if (!this.#quotaReached) quota.log?.warn(`Store quota reached (${refusal.reason} ${refusal.limit}): SV records are no longer kept`);
      this.#quotaReached = true;
      return { token, processCount: closure.processes.length, upstream: closure.upstream, kept: false };
    }
    this.#quotaReached = false;
    let token: string;
    try {
      token = await writeRecord(this.#o.recordsDir, bytes, { hash: this.#o.tokenHash });
    } catch (error) {
      quota?.limits.release(bytes.length);
      throw error;
    }
    return { token, processCount: closure.processes.length, upstream: closure.upstream, kept: true };
  }
}
