import { Worker } from 'node:worker_threads';
import { AnalysisWorkerError, StopdError } from '../errors.js';
import type { TcpSocket } from '../host/types.js';
import type { SaveCategory } from '../evidence/record.js';
import type { TokenHash } from '../evidence/tokens.js';
import type { CapturedConnection, CaptureOptions } from '../trace/index.js';
import type { AnalysisRunner, ClosureSummary, EvidenceRequest, PreparedEvidence } from './evidence-collector.js';
import type { Logger } from './logger.js';

/** What the analysis thread is started with (its `workerData`). */
export interface AnalysisThreadData {
  readonly tokenHash: TokenHash;
  readonly utmpPath?: string;
  /** What a refusal to read a process's descriptors does (daemon.ts decides from the capabilities). */
  readonly onDenied: 'throw' | 'skip';
  /** Keep the persistent descriptor index in the thread between analyses. */
  readonly keepFdIndex: boolean;
  /** Let the index learn which processes ran from the BPF run tracker where the kernel allows it (`--process-index auto`). */
  readonly runTracker: boolean;
}

/** A message to the analysis thread. */
export type AnalysisRequest =
  | {
      readonly kind: 'prepare';
      readonly id: number;
      readonly socket: TcpSocket;
      readonly request: EvidenceRequest;
      readonly save: readonly SaveCategory[];
    }
  | { readonly kind: 'summarise'; readonly id: number; readonly socket: TcpSocket; readonly save: readonly SaveCategory[] }
  | { readonly kind: 'capture'; readonly id: number; readonly requests: readonly CaptureOptions[]; readonly save: readonly SaveCategory[] }
  | { readonly kind: 'close' };

/** A message from the analysis thread. */
export type AnalysisReply =
  | { readonly kind: 'done'; readonly id: number; readonly result: PreparedEvidence | ClosureSummary | CapturedConnection[] }
  | { readonly kind: 'failed'; readonly id: number; readonly error: { readonly message: string; readonly name: string; readonly code?: string } }
  | { readonly kind: 'log'; readonly level: 'warn' | 'error'; readonly message: string };

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

interface Pending {
  resolve(result: PreparedEvidence | ClosureSummary | CapturedConnection[]): void;
  reject(error: Error): void;
}

/**
 * Runs analyses in a worker thread (analysis-thread.ts), so that an SV analysis costing tens
 * of milliseconds of CPU never delays the accept/ID path on the event loop. The thread owns
 * the persistent descriptor index. When the thread ends unexpectedly (an uncaught error, out
 * of memory), the analyses in flight fail with {@link AnalysisWorkerError} (their requests get
 * the policy's error reply), one log line says so, and the next analysis starts a new thread.
 */
export class AnalysisWorker implements AnalysisRunner {
  readonly #data: AnalysisThreadData;
  readonly #log: Logger;
  #worker: Worker | undefined;
  #nextId = 1;
  readonly #pending = new Map<number, Pending>();
  #closing: Promise<void> | undefined;
  /** Set after an unexpected end is logged, cleared by the next success: a thread that cannot start logs once. */
  #failing = false;

  constructor(data: AnalysisThreadData, options: { log: Logger }) {
    this.#data = data;
    this.#log = options.log;
    // Started now, so the first SV request does not wait for the thread to load.
    this.#ensure();
  }

  prepare(socket: TcpSocket, options: { request: EvidenceRequest; save: readonly SaveCategory[] }): Promise<PreparedEvidence> {
    return this.#send({ kind: 'prepare', socket, request: options.request, save: options.save }) as Promise<PreparedEvidence>;
  }

  summarise(socket: TcpSocket, save: readonly SaveCategory[]): Promise<ClosureSummary> {
    return this.#send({ kind: 'summarise', socket, save }) as Promise<ClosureSummary>;
  }

  capture(requests: readonly CaptureOptions[], save: readonly SaveCategory[]): Promise<CapturedConnection[]> {
    return this.#send({ kind: 'capture', requests, save }) as Promise<CapturedConnection[]>;
  }

  /** Asks the thread to close its descriptor index and end; waits for it (at most 5 s, then ends it). Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      const worker = this.#worker;
      if (worker === undefined) return;
      const ended = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
      // Held from here on: an unreferenced thread would let the process end before its exit
      // event, with this promise (and the daemon's close) never settled.
      worker.ref();
      worker.postMessage({ kind: 'close' } satisfies AnalysisRequest);
      const timer = setTimeout(() => void worker.terminate(), 5000);
      timer.unref();
      await ended;
      clearTimeout(timer);
    })();
    return this.#closing;
  }

  #send(message: DistributiveOmit<Extract<AnalysisRequest, { id: number }>, 'id'>): Promise<PreparedEvidence | ClosureSummary | CapturedConnection[]> {
    if (this.#closing !== undefined) return Promise.reject(new AnalysisWorkerError('Cannot analyse: the analysis thread is closed'));
    const worker = this.#ensure();
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      worker.postMessage({ ...message, id });
    });
  }

  #ensure(): Worker {
    if (this.#worker !== undefined) return this.#worker;
    const worker = new Worker(new URL('./analysis-thread.js', import.meta.url), { workerData: this.#data });
    // The server keeps the daemon alive; an idle analysis thread must not.
    worker.unref();
    let failure: Error | undefined;
    worker.on('message', (message: AnalysisReply) => this.#receive(message));
    worker.on('error', (error) => {
      failure = error instanceof Error ? error : new Error(String(error));
    });
    worker.on('exit', (code) => {
      if (this.#worker === worker) this.#worker = undefined;
      const reason = failure !== undefined ? failure.message : `exit code ${code}`;
      const error = new AnalysisWorkerError(`Cannot analyse: the analysis thread ended (${reason})`, { cause: failure });
      for (const pending of this.#pending.values()) pending.reject(error);
      const lost = this.#pending.size;
      this.#pending.clear();
      if (this.#closing !== undefined || this.#failing) return;
      this.#failing = true;
      this.#log.error(
        `The analysis thread ended (${reason}); analyses in flight: ${lost}, each answered with an error; the next one starts a new thread`,
      );
    });
    this.#worker = worker;
    return worker;
  }

  #receive(message: AnalysisReply): void {
    if (message.kind === 'log') {
      this.#log[message.level](message.message);
      return;
    }
    const pending = this.#pending.get(message.id);
    if (pending === undefined) return;
    this.#pending.delete(message.id);
    this.#failing = false;
    if (message.kind === 'done') {
      pending.resolve(message.result);
      return;
    }
    const { code, name, message: text } = message.error;
    // Keep the stable code (HostLookupError's ERR_HOST_LOOKUP, ...) for the ledger's evidenceError.
    const error = code === undefined ? new Error(text) : new StopdError(code, text);
    error.name = name;
    pending.reject(error);
  }
}
