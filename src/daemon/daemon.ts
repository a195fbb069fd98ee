import type { Socket } from 'node:net';
import { AccountDirectory } from '../host/users.js';
import { missingCapabilities, PROCESS_VIEW_CAPABILITIES, readEffectiveCapabilities } from '../host/capabilities.js';
import { createLinuxHostView } from '../host/linux-host.js';
import { createLinuxSocketTable, type LinuxSocketTable } from '../host/linux-sockets.js';
import { createPersistentFdIndex, type PersistentFdIndex } from '../host/persistent-fd-index.js';
import type { Endpoint } from '../host/types.js';
import { ALL_SAVE_CATEGORIES, type SaveCategory } from '../evidence/record.js';
import { openStore, storePaths } from '../evidence/store.js';
import type { SyslogTarget } from '../evidence/forwarder.js';
import type { TokenHash } from '../evidence/tokens.js';
import type { Logger } from './logger.js';
import type { ReplyPolicy } from './policy.js';
import { EvidenceCollector } from './evidence-collector.js';
import { LoopTable } from './loop-table.js';
import { Responder } from './responder.js';
import { UpstreamDispatcher } from './upstream.js';
import { Semaphore } from './semaphore.js';
import { StopServer, type ListenAddress } from './server.js';

/** Everything the daemon can be told (the command line maps onto this one to one). */
export interface DaemonOptions {
  readonly listen: readonly ListenAddress[];
  readonly storeDir: string;
  readonly policy: ReplyPolicy;
  readonly optIn: boolean;
  readonly maxConnections: number;
  readonly maxLookups: number;
  readonly idleTimeoutMs: number;
  readonly maxLineLength: number;
  readonly tokenHash: TokenHash;
  /** What SV records keep (paper 3.1.2, "should" property 3). */
  readonly save: readonly SaveCategory[];
  /** SV/SV_REC/ID_REC analyses that may wait for their turn; more are answered UNKNOWN-ERROR. */
  readonly maxAnalysisQueue: number;
  /** The STOP port asked on upstream hosts. */
  readonly upstreamPort: number;
  /** Connect and reply deadline of each upstream request. */
  readonly upstreamTimeoutMs: number;
  /** Upstream hosts asked per recursive request at most. */
  readonly maxFanOut: number;
  /** Upstream requests in flight at once. */
  readonly maxUpstream: number;
  /** How long a recursive request is remembered for loop detection (paper 3.1.4: 120 s). */
  readonly loopWindowMs: number;
  /** Work (requests processed + upstream requests sent) per SID and window. */
  readonly maxPerSid: number;
  readonly log: Logger;
  /** An initial ledger key from `stopctl keygen`, moved into the store (`stopd --ledger-key`). */
  readonly ledgerKeyFile?: string;
  /** `--syslog`: forward every ledger entry (RFC 5424 over TCP, or TLS with `tls`; `ca` is PEM). */
  readonly syslog?: { readonly target: SyslogTarget; readonly tls?: { readonly ca?: string | Buffer } };
  /** `--max-records`: SV records kept at most; past it replies go on, records are not kept. */
  readonly maxRecords?: number;
  /** `--max-store-bytes`: total size of the SV records kept at most (default 1 GiB). */
  readonly maxStoreBytes?: number;
  /** `--max-requester-share`: percent of the record limits one requester group may use (100: no share). */
  readonly maxRequesterSharePercent?: number;
  /** `--ledger-segment-bytes`, `--ledger-max-bytes`, `--ledger-retention` (days): ledger segments and retention. */
  readonly ledgerSegmentBytes?: number;
  readonly ledgerMaxBytes?: number;
  readonly ledgerRetentionDays?: number;
  /** Wait this long for the store lock (inetd mode: one process per connection, taking turns). */
  readonly storeLockWaitMs?: number;
  /** Replaces the Linux socket table (tests). */
  readonly sockets?: LinuxSocketTable;
  /**
   * Keep a descriptor index between SV analyses (default true): its first refresh costs more
   * than one full scan, which a process serving a single connection (inetd mode) never earns back.
   */
  readonly keepFdIndex?: boolean;
}

/** Built-in defaults; `stopd --help` prints them. */
export const DEFAULTS = {
  listen: [{ host: '::', port: 113 }] as const,
  storeDir: '/var/lib/stopd',
  maxConnections: 256,
  maxLookups: 16,
  idleTimeoutSec: 60,
  maxLineLength: 512,
  tokenHash: 'sha256' as TokenHash,
  save: ALL_SAVE_CATEGORIES,
  upstreamPort: 113,
  upstreamTimeoutSec: 10,
  maxFanOut: 16,
  maxUpstream: 32,
  loopWindowSec: 120,
  maxPerSid: 64,
  maxAnalysisQueue: 16,
  /** Records: 1 GiB, of which one requester group may fill 10 %. */
  maxStoreBytes: 1024 ** 3,
  maxRequesterSharePercent: 10,
  /** Ledger: ~520 bytes an entry, so 16 MiB segments hold ~32 000 entries, 1 GiB about two million. */
  ledgerSegmentBytes: 16 * 1024 ** 2,
  ledgerMaxBytes: 1024 ** 3,
  ledgerRetentionDays: 400,
};

/** A running daemon. */
export interface RunningDaemon {
  readonly endpoints: readonly Endpoint[];
  /** Answers the one connection on `socket` (inetd mode); resolves when it closes. */
  serve(socket: Socket): Promise<void>;
  /**
   * Applies new options (SIGHUP reload) to what can change while running: reply policy,
   * opt-in, connection limits, what records keep, upstream port, timeouts and fan-out.
   * Returns the names (long options) of changed settings that need a restart and were kept.
   */
  reconfigure(next: DaemonOptions): string[];
  /** Drains connections, flushes the ledger, releases the store. Idempotent. */
  close(): Promise<void>;
}

/** Settings read at start only: the option name an operator would change, and its field. */
const RESTART_ONLY: readonly (readonly [string, keyof DaemonOptions])[] = [
  ['listen', 'listen'],
  ['store', 'storeDir'],
  ['token-hash', 'tokenHash'],
  ['ledger-key', 'ledgerKeyFile'],
  ['syslog', 'syslog'],
  ['max-records', 'maxRecords'],
  ['max-store-bytes', 'maxStoreBytes'],
  ['max-requester-share', 'maxRequesterSharePercent'],
  ['ledger-segment-bytes', 'ledgerSegmentBytes'],
  ['ledger-max-bytes', 'ledgerMaxBytes'],
  ['ledger-retention', 'ledgerRetentionDays'],
  ['max-lookups', 'maxLookups'],
  ['max-analysis-queue', 'maxAnalysisQueue'],
  ['max-upstream', 'maxUpstream'],
  ['loop-window', 'loopWindowMs'],
  ['max-per-sid', 'maxPerSid'],
];

/** Opens the store, binds the listeners and starts answering. */
export async function startDaemon(options: DaemonOptions): Promise<RunningDaemon> {
  const syslog = options.syslog;
  const maxStoreBytes = options.maxStoreBytes ?? DEFAULTS.maxStoreBytes;
  const sharePercent = options.maxRequesterSharePercent ?? DEFAULTS.maxRequesterSharePercent;
  const store = await openStore(options.storeDir, {
    ledgerRetention: {
      segmentBytes: options.ledgerSegmentBytes ?? DEFAULTS.ledgerSegmentBytes,
      maxBytes: options.ledgerMaxBytes ?? DEFAULTS.ledgerMaxBytes,
      maxAgeMs: (options.ledgerRetentionDays ?? DEFAULTS.ledgerRetentionDays) * 86_400_000,
    },
    ...(options.storeLockWaitMs === undefined ? {} : { lockWaitMs: options.storeLockWaitMs }),
    ...(options.ledgerKeyFile === undefined ? {} : { ledgerKeyFile: options.ledgerKeyFile }),
    ...(syslog === undefined
      ? {}
      : { forward: { target: syslog.target, log: options.log, ...(syslog.tls === undefined ? {} : { tls: syslog.tls }) } }),
    quota: {
      ...(options.maxRecords === undefined ? {} : { maxRecords: options.maxRecords }),
      maxBytes: maxStoreBytes,
      ...(sharePercent >= 100 ? {} : { requesterShare: sharePercent / 100 }),
    },
  });
  let fdIndex: PersistentFdIndex | undefined;
  try {
    const sockets = options.sockets ?? createLinuxSocketTable({ log: (message) => options.log.warn(message) });
    // One descriptor index for the daemon's lifetime: each SV analysis refreshes it, which
    // re-reads only the processes that may have changed since the previous one, instead of
    // every /proc/PID/fd. Without the addon's index each analysis scans every process.
    // stopd leaves itself out of every closure (LinuxProcessTableOptions.hideSelf), so the
    // index need not read its own, busy, descriptor table at every refresh either; its kept
    // files can then live in that table, which spares every refresh a hand-over to another
    // thread (they show in `ls /proc/PID/fd` of stopd as schedstat files).
    if (options.keepFdIndex ?? true) fdIndex = createPersistentFdIndex({ skipSelf: true, separateTable: false });
    // With the privileges to read every process's descriptors, a refusal is the kernel's policy
    // (an LSM, an outer sandbox's init): note the pid in the record and go on. Without them,
    // SV requests fail with a clear log line rather than silently saving less.
    const missing = missingCapabilities(readEffectiveCapabilities() ?? 0n, PROCESS_VIEW_CAPABILITIES);
    const onDenied = missing.length === 0 ? 'skip' : 'throw';
    if (missing.length > 0) {
      options.log.warn(
        `Cannot read other users' open files without ${missing.join(' and ')}: SV, SV_REC and ID_REC requests ` +
          `about their connections will be answered UNKNOWN-ERROR; run stopd as root or grant ${PROCESS_VIEW_CAPABILITIES.join(', ')}`,
      );
    }
    let current = options;
    const accounts = new AccountDirectory();
    const loops = new LoopTable({ windowMs: options.loopWindowMs, maxWorkPerSid: options.maxPerSid });
    const upstream = new UpstreamDispatcher({
      port: options.upstreamPort,
      connectTimeoutMs: options.upstreamTimeoutMs,
      replyTimeoutMs: options.upstreamTimeoutMs,
      maxFanOut: options.maxFanOut,
      maxConcurrent: options.maxUpstream,
      ledger: store.ledger,
      loops,
      log: options.log,
    });
    const evidence = new EvidenceCollector({
      hostView: () =>
        createLinuxHostView(sockets, {
          readCmdline: current.save.includes('cmdline'),
          onDenied,
          hideSelf: true,
          ...(fdIndex === undefined ? {} : { fdIndex }),
        }),
      accounts,
      recordsDir: storePaths(options.storeDir).records,
      save: options.save,
      tokenHash: options.tokenHash,
      ...(store.quota === undefined ? {} : { quota: { limits: store.quota, ledger: store.ledger, log: options.log } }),
    });
    const responder = new Responder({
      sockets,
      ledger: store.ledger,
      accounts,
      // Waiters beyond four times the limit are turned away with an error reply (duty 10).
      lookups: new Semaphore(options.maxLookups, { maxWaiting: options.maxLookups * 4 + options.maxConnections }),
      policy: options.policy,
      optIn: options.optIn,
      tokenHash: options.tokenHash,
      evidence,
      analyses: new Semaphore(1, { maxWaiting: options.maxAnalysisQueue }),
      loops,
      upstream,
      log: options.log,
    });
    const server = new StopServer(responder, {
      listen: options.listen,
      maxConnections: options.maxConnections,
      idleTimeoutMs: options.idleTimeoutMs,
      maxLineLength: options.maxLineLength,
      log: options.log,
    });
    let endpoints: Endpoint[];
    try {
      endpoints = await server.listen();
    } catch (error) {
      await server.close();
      await upstream.close();
      throw error;
    }
    let closing: Promise<void> | undefined;
    return {
      endpoints,
      serve: (socket) => server.serve(socket),
      reconfigure(next) {
        const changed = RESTART_ONLY.filter(([, key]) => JSON.stringify(next[key]) !== JSON.stringify(current[key]));
        responder.configure({ policy: next.policy, optIn: next.optIn });
        server.configure({ maxConnections: next.maxConnections, idleTimeoutMs: next.idleTimeoutMs, maxLineLength: next.maxLineLength });
        evidence.configure({ save: next.save });
        upstream.configure({
          port: next.upstreamPort,
          connectTimeoutMs: next.upstreamTimeoutMs,
          replyTimeoutMs: next.upstreamTimeoutMs,
          maxFanOut: next.maxFanOut,
        });
        // What needs a restart keeps its running value, so `current` stays what is in force.
        const kept = Object.fromEntries(RESTART_ONLY.map(([, key]) => [key, current[key]])) as Partial<DaemonOptions>;
        current = { ...next, ...kept };
        return changed.map(([name]) => name);
      },
      close() {
        // Drain clients, then let upstream exchanges finish (each is bounded by its
        // timeouts) so their outcomes reach the ledger, then close the store.
        closing ??= server
          .close()
          .then(() => upstream.close())
          .then(() => store.close())
          .finally(() => fdIndex?.close());
        return closing;
      },
    };
  } catch (error) {
    fdIndex?.close();
    await store.close();
    throw error;
  }
}
