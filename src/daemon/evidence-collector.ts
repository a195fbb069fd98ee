import { readHostFacts } from '../host/host-facts.js';
import { readEphemeralPorts, type LinuxHostView } from '../host/linux-host.js';
import { recent } from '../host/recent.js';
import type { Endpoint, TcpSocket } from '../host/types.js';
import type { AccountDirectory } from '../host/users.js';
import { readUtmp } from '../host/utmp.js';
import { buildRecord, formatRecordBytes, writeRecord, type SaveCategory } from '../evidence/record.js';
import type { Ledger } from '../evidence/ledger.js';
import { describeRecordNotKept, type StoreQuota } from '../evidence/quota.js';
import { hashToken, type TokenHash } from '../evidence/tokens.js';
import { formatRequesterGroup } from '../protocol/index.js';
import type { Logger } from './logger.js';
import { resolveClosure, type Closure, type UpstreamCandidate } from '../trace/index.js';

/** Log lines about requesters over their share, at most (one each). */
const MAX_SHARE_WARNINGS = 100;

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
   * Store limits (`--max-records`, `--max-store-bytes`, and each requester group's share of
   * them, `--max-requester-share`): at a limit the record is not
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
 * process/IPC closure of the queried socket, per-request host facts and utmp entries, as a
 * content-hashed record written crash-safely. Resolves once the record is durably on disk.
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
  analyse(socket: TcpSocket): { processCount: number; upstream: readonly UpstreamCandidate[] } {
    const closure = this.#resolve(this.#o.hostView(), socket);
    return { processCount: closure.processes.length, upstream: closure.upstream };
  }

  #resolve(view: LinuxHostView, socket: TcpSocket): Closure {
    const ephemeralPorts = readEphemeralPorts();
    return resolveClosure(view, { socket, ...(ephemeralPorts === undefined ? {} : { ephemeralPorts }) });
  }

  async collect(
    socket: TcpSocket,
    request: { line: string; requester: Endpoint; clientIp?: string; type: 'SV' | 'SV_REC'; sid?: string },
  ): Promise<CollectedEvidence> {
    const view = this.#o.hostView();
    const closure = this.#resolve(view, socket);
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
      denied: view.deniedPids(),
      save: this.#o.save,
      type: request.type,
      ...(request.sid === undefined ? {} : { sid: request.sid }),
    });
    const bytes = formatRecordBytes(record);
    const quota = this.#o.quota;
    // The requester, not a CL_IP, is who spends the store (issue 13: one unit for every per-requester limit).
    const group = formatRequesterGroup(request.requester.address);
    const refusal = quota?.limits.admit(bytes.length, group);
    if (quota !== undefined && refusal !== undefined) {
      const token = hashToken(bytes, this.#o.tokenHash);
      // Duty 9: what the token stands for (nothing kept, and why) is durable before the reply.
      await quota.ledger.append(describeRecordNotKept(token, refusal, bytes.length));
      if (refusal.reason === 'requester-share') {
        if (group !== undefined && !this.#sharesWarned.has(group) && this.#sharesWarned.size < MAX_SHARE_WARNINGS) {
          this.#sharesWarned.add(group);
          quota.log?.warn(`Requester ${group} reached its share of the store (${refusal.limit} ${refusal.of === 'max-records' ? 'records' : 'bytes'}): its SV records are no longer kept`);
        }
      } else {
        if (!this.#quotaReached) quota.log?.warn(`Store quota reached (${refusal.reason} ${refusal.limit}): SV records are no longer kept`);
        this.#quotaReached = true;
      }
      return { token, processCount: closure.processes.length, upstream: closure.upstream, kept: false };
    }
    this.#quotaReached = false;
    let token: string;
    try {
      token = await writeRecord(this.#o.recordsDir, bytes, { hash: this.#o.tokenHash });
    } catch (error) {
      quota?.limits.release(bytes.length, group);
      throw error;
    }
    return { token, processCount: closure.processes.length, upstream: closure.upstream, kept: true };
  }
}
