import { readHostFacts } from '../host/host-facts.js';
import { readEphemeralPorts, type LinuxHostView } from '../host/linux-host.js';
import type { Endpoint, TcpSocket } from '../host/types.js';
import type { AccountDirectory } from '../host/users.js';
import { readUtmp } from '../host/utmp.js';
import { buildRecord, formatRecordBytes, writeRecord, type SaveCategory } from '../evidence/record.js';
import type { TokenHash } from '../evidence/tokens.js';
import { resolveClosure, type Closure, type UpstreamCandidate } from '../trace/index.js';

/** What the collector needs. */
export interface EvidenceCollectorOptions {
  /** A fresh host view for each request (its process table indexes `/proc` once). */
  readonly hostView: () => LinuxHostView;
  readonly accounts: AccountDirectory;
  readonly recordsDir: string;
  readonly save: readonly SaveCategory[];
  readonly tokenHash: TokenHash;
  /** Where utmp is read from (default `/var/run/utmp`; a missing file is no error). */
  readonly utmpPath?: string;
}

/** The outcome of one SV/SV_REC analysis. */
export interface CollectedEvidence {
  /** The record's token: the hash of its bytes. */
  readonly token: string;
  readonly processCount: number;
  readonly upstream: readonly UpstreamCandidate[];
}

/**
 * Saves the evidence of an SV or SV_REC request (paper 3.3, Table II; DESIGN duty 5): the
 * process/IPC closure of the queried socket, per-request host facts and utmp entries, as a
 * content-hashed record written crash-safely. Resolves once the record is durably on disk.
 */
export class EvidenceCollector {
  readonly #o: EvidenceCollectorOptions;

  constructor(options: EvidenceCollectorOptions) {
    this.#o = options;
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
      host: readHostFacts(),
      utmp: this.#o.save.includes('utmp') ? readUtmp(this.#o.utmpPath) : [],
      denied: view.deniedPids(),
      save: this.#o.save,
      type: request.type,
      ...(request.sid === undefined ? {} : { sid: request.sid }),
    });
    const token = await writeRecord(this.#o.recordsDir, formatRecordBytes(record), { hash: this.#o.tokenHash });
    return { token, processCount: closure.processes.length, upstream: closure.upstream };
  }
}
