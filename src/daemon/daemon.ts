import type { Socket } from 'node:net';
import { AccountDirectory } from '../host/users.js';
import { missingCapabilities, PROCESS_VIEW_CAPABILITIES, readEffectiveCapabilities } from '../host/capabilities.js';
import { checkConntrack, createConntrackTable, openConntrackEvents, type ConntrackEvents, type ConntrackTable } from '../host/conntrack.js';
import { NatJournal } from '../evidence/nat-journal.js';
import { join } from 'node:path';
import { createLinuxHostView } from '../host/linux-host.js';
import { createLinuxSocketTable, type LinuxSocketTable } from '../host/linux-sockets.js';
import { createPersistentFdIndex, describeRunTrackerOff, type PersistentFdIndex } from '../host/persistent-fd-index.js';
import type { Endpoint } from '../host/types.js';
import { ALL_SAVE_CATEGORIES, type SaveCategory } from '../evidence/record.js';
import { openStore, storePaths } from '../evidence/store.js';
import type { SyslogTarget } from '../evidence/forwarder.js';
import type { TokenHash } from '../evidence/tokens.js';
import type { Logger } from './logger.js';
import type { ReplyPolicy } from './policy.js';
import { AnalysisWorker } from './analysis-worker.js';
import { createInlineAnalyses, EvidenceCollector, type AnalysisRunner } from './evidence-collector.js';
import { LoopTable } from './loop-table.js';
import { Responder } from './responder.js';
import { UpstreamDispatcher } from './upstream.js';
import { Semaphore } from './semaphore.js';
import { createConnectionRecorderStarter, probeConnectionRecorder } from '../host/connection-recorder.js';
import type { ConnectionRecorder, RecorderAvailability, StartConnectionRecorder } from '../host/connection-events.js';
import { readNetworkNamespaceInode } from '../host/network-namespace.js';
import { readPidNamespaceView } from '../host/pid-namespace.js';
import { HistoryJournal, type HistoryLedger } from '../evidence/history-journal.js';
import { HistoryFeed } from './history-feed.js';
import { StopServer, type ListenAddress } from './server.js';
import { describeRateLimitReport, RateLimiter, type RateLimits } from './rate-limiter.js';

/** Everything the daemon can be told (the command line maps onto this one to one). */
export interface DaemonOptions {
  readonly listen: readonly ListenAddress[];
  readonly storeDir: string;
  readonly policy: ReplyPolicy;
  readonly optIn: boolean;
  readonly maxConnections: number;
  /** Open connections of one requester group (IPv4 address, IPv6 /64) at most. */
  readonly maxConnectionsPerRequester: number;
  /**
   * Token buckets per requester group: `analysis` for SV, SV_REC and ID_REC, `id` for ID (and
   * lines that do not parse). A rate of 0 per minute lifts that limit.
   */
  readonly rateLimits: RateLimits;
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
  /** `--nat`: answer for connections this gateway translated and ask the host behind them. */
  readonly nat?: boolean;
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
  /** `--history-retention`, `--history-max-bytes`: bounds of the history journal (evidence/history-journal.ts). */
  readonly historyRetentionMs?: number;
  readonly historyMaxBytes?: number;
  /** `--history-ring-records`: records each CPU's ring of the recorder holds; default host/connection-recorder.ts defaultRingRecordsPerCpu. */
  readonly historyRingRecords?: number;
  /** Wait this long for the store lock (inetd mode: one process per connection, taking turns). */
  readonly storeLockWaitMs?: number;
  /**
   * `--history`: `auto` (default) records outbound connections with the eBPF recorder where
   * the kernel allows it and answers closed connections from the history journal; `off` runs
   * as before history existed. Either way the start-up log says once whether history is on, and why not.
   */
  readonly history?: 'auto' | 'off';
  /**
   * `--process-index`: `auto` (default) lets the descriptor index learn which processes ran
   * from the BPF run tracker where the kernel allows it (native/FD_INDEX.md, "With the run
   * tracker"); `schedstat` keeps a schedstat file per thread, as before.
   */
  readonly processIndex?: 'auto' | 'schedstat';
  /** Replaces the connection recorder (tests): its probe and start. */
  readonly recorder?: { readonly probe: () => RecorderAvailability; readonly start: StartConnectionRecorder };
  /** Replaces the Linux socket table (tests). */
  readonly sockets?: LinuxSocketTable;
  /**
   * Keep a descriptor index between SV analyses (default true): its first refresh costs more
   * than one full scan, which a process serving a single connection (inetd mode) never earns back.
   */
  readonly keepFdIndex?: boolean;
  /**
   * `--inline-analyses`: run SV/SV_REC/ID_REC analyses on the event loop instead of the analysis
   * worker thread (default false). Kept for measurement (bench) and for inetd mode, which
   * serves one connection and so has no other request an analysis could delay.
   */
  readonly inlineAnalyses?: boolean;
}

/** Built-in defaults; `stopd --help` prints them. */
export const DEFAULTS = {
  listen: [{ host: '::', port: 113 }] as const,
  storeDir: '/var/lib/stopd',
  maxConnections: 256,
  maxConnectionsPerRequester: 8,
  // One analysis a second per requester, after a burst of 20: an IDS or a gateway asking about
  // each suspicious connection stays well inside it; a flood cannot take the analysis queue.
  rateAnalysisPerMinute: 60,
  rateAnalysisBurst: 20,
  // ID costs a lookup and a ledger line: twenty a second, after a burst of 600 (a server with
  // hundreds of users behind one host, all reconnecting at once).
  rateIdPerMinute: 1200,
  rateIdBurst: 600,
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
  /** History: a day of connections, at most 1 GiB (about 1.5 million connections with their capture). */
  historyRetentionMs: 24 * 3_600_000,
  historyMaxBytes: 1024 ** 3,
};

/** A running daemon. */
export interface RunningDaemon {
  readonly endpoints: readonly Endpoint[];
  /** Answers the one connection on `socket` (inetd mode); resolves when it closes. */
  serve(socket: Socket): Promise<void>;
  /**
   * Applies new values of the options that can change while running ({@link LIVE_OPTIONS}:
   * reply policy, opt-in, connection limits, rates, what records keep, upstream port, timeouts
   * and fan-out) to new connections and requests. Which settings are live is the caller's
   * table (stopd's settings table); the rest of a running daemon never changes.
   */
  reconfigure(next: LiveOptions): void;
  /** Drains connections, flushes the ledger, releases the store. Idempotent. */
  close(): Promise<void>;
}

/**
 * The options a running daemon applies anew ({@link RunningDaemon.reconfigure}); every other
 * option is read once, at start. What may change for new connections and requests without
 * touching the store, the listeners or the queues.
 */
export const LIVE_OPTIONS = [
  'policy',
  'optIn',
  'maxConnections',
  'maxConnectionsPerRequester',
  'rateLimits',
  'idleTimeoutMs',
  'maxLineLength',
  'save',
  'upstreamPort',
  'upstreamTimeoutMs',
  'maxFanOut',
] as const satisfies readonly (keyof DaemonOptions)[];

/** The part of {@link DaemonOptions} that {@link RunningDaemon.reconfigure} takes. */
export type LiveOptions = Pick<DaemonOptions, (typeof LIVE_OPTIONS)[number]>;

/** How often the rate limiter's refusals are summed up in the ledger (one entry per requester and window). */
const RATE_WINDOW_MS = 60_000;

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
  let analyses: AnalysisRunner | undefined;
  try {
    const sockets = options.sockets ?? createLinuxSocketTable({ log: (message) => options.log.warn(message) });
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
    // The rates in force, which the ledger's rate-limited entries name.
    let rateLimits = options.rateLimits;
    // What records keep now: history captures read command lines only when records keep them.
    let currentSave = options.save;
    const accounts = new AccountDirectory();
    // One descriptor index for the daemon's lifetime, owned by the thread the analyses run on:
    // each SV analysis refreshes it, which re-reads only the processes that may have changed
    // since the previous one, instead of every /proc/PID/fd. Without the addon's index each
    // analysis scans every process. stopd leaves itself out of every closure
    // (LinuxProcessTableOptions.hideSelf), so the index need not read its own, busy,
    // descriptor table at every refresh either; its kept files can then live in that table,
    // which spares every refresh a hand-over to another thread (they show in
    // `ls /proc/PID/fd` of stopd as schedstat files). With the run tracker (`--process-index
    // auto`) there are none: the kernel says which processes ran.
    const keepFdIndex = options.keepFdIndex ?? true;
    const runTracker = (options.processIndex ?? 'auto') === 'auto';
    if ((options.inlineAnalyses ?? false) || options.sockets !== undefined) {
      // On the event loop (`--inline-analyses`, inetd mode), or with a socket table the
      // caller made, which cannot cross to another thread.
      const fdIndex: PersistentFdIndex | undefined = keepFdIndex ? createPersistentFdIndex({ skipSelf: true, separateTable: false, runTracker }) : undefined;
      if (runTracker && fdIndex !== undefined && !fdIndex.runTracker.active) options.log.warn(describeRunTrackerOff(fdIndex.runTracker.why));
      const hostView = (save: readonly SaveCategory[]) =>
        createLinuxHostView(sockets, {
          readCmdline: save.includes('cmdline'),
          onDenied,
          hideSelf: true,
          ...(fdIndex === undefined ? {} : { fdIndex }),
        });
      analyses = createInlineAnalyses({ hostView, accounts, tokenHash: options.tokenHash }, () => fdIndex?.close());
    } else {
      // Analyses cost tens of milliseconds of CPU on a busy host: in their own thread they
      // cannot delay accepting connections or answering ID (bench: "ID during an SV burst").
      analyses = new AnalysisWorker({ tokenHash: options.tokenHash, onDenied, keepFdIndex, runTracker }, { log: options.log });
    }
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
      analyses,
      recordsDir: storePaths(options.storeDir).records,
      save: options.save,
      tokenHash: options.tokenHash,
      accounts,
      ...(store.quota === undefined ? {} : { quota: { limits: store.quota, ledger: store.ledger, log: options.log } }),
    });
    let nat: ConntrackTable | undefined;
    let natJournal: NatJournal | undefined;
    let natEvents: ConntrackEvents | undefined;
    if (options.nat === true) {
      // Fail at start, with the reason, rather than at the first question (ConntrackError).
      nat = createConntrackTable();
      checkConntrack(nat);
      natJournal = new NatJournal({
        dir: join(options.storeDir, 'nat'),
        retentionMs: (options.ledgerRetentionDays ?? DEFAULTS.ledgerRetentionDays) * 86_400_000,
      });
      natEvents = openConntrackEvents();
    }
    const journal = natJournal;
    const events = natEvents;
    const drainNatEvents = (): void => {
      if (journal === undefined || events === undefined) return;
      try {
        // At most 1024 events a read: read until the kernel has no more waiting.
        for (let round = 0; round < 64; round++) {
          const batch = events.read();
          if (batch.lost) {
            options.log.warn('conntrack events were lost (the kernel buffer overflowed): translations of that moment may be missing from the NAT journal');
            void store.ledger.append({ kind: 'nat-events-lost', message: 'The kernel dropped conntrack events: the NAT journal has a gap here' }).catch(() => undefined);
          }
          journal.add(batch.events, { lost: batch.lost });
          if (batch.events.length < 1024) break;
        }
      } catch (error) {
        options.log.error(`Cannot keep conntrack events in the NAT journal: ${String(error)}`);
      }
    };
    // Four reads a second: the kernel buffer (8 MiB) holds far more than a quarter second of events.
    const natTimer = journal === undefined ? undefined : setInterval(drainNatEvents, 250);
    natTimer?.unref();
    const rates = new RateLimiter(options.rateLimits);
    const reportRates = async (): Promise<void> => {
      for (const report of rates.takeReports()) {
        try {
          await store.ledger.append(describeRateLimitReport(report, rateLimits));
        } catch (error) {
          options.log.error(`Cannot record rate limit refusals of ${report.requester} in the ledger: ${String(error)}`);
        }
      }
    };
    const rateTimer = setInterval(() => void reportRates(), RATE_WINDOW_MS);
    rateTimer.unref();
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
      ...(nat === undefined ? {} : { nat }),
      ...(natJournal === undefined ? {} : { natJournal, natRefresh: drainNatEvents }),
      rates,
      log: options.log,
    });
    const server = new StopServer(responder, {
      listen: options.listen,
      maxConnections: options.maxConnections,
      maxConnectionsPerRequester: options.maxConnectionsPerRequester,
      idleTimeoutMs: options.idleTimeoutMs,
      maxLineLength: options.maxLineLength,
      log: options.log,
    });
    let endpoints: Endpoint[];
    try {
      endpoints = await server.listen();
    } catch (error) {
      clearInterval(rateTimer);
      clearInterval(natTimer);
      natEvents?.close();
      await server.close();
      await upstream.close();
      await evidence.close();
      throw error;
    }
    // History starts once the daemon listens, so that a start that fails leaves no journal
    // behind and says only why it failed; until then closed connections are not answered.
    const history = await startHistory(options, { ledger: store.ledger, analyses, save: () => currentSave });
    if (history !== undefined) responder.attachHistory(history.journal);
    let closing: Promise<void> | undefined;
    return {
      endpoints,
      serve: (socket) => server.serve(socket),
      reconfigure(next) {
        responder.configure({ policy: next.policy, optIn: next.optIn });
        server.configure({
          maxConnections: next.maxConnections,
          maxConnectionsPerRequester: next.maxConnectionsPerRequester,
          idleTimeoutMs: next.idleTimeoutMs,
          maxLineLength: next.maxLineLength,
        });
        rates.configure(next.rateLimits);
        rateLimits = next.rateLimits;
        evidence.configure({ save: next.save });
        currentSave = next.save;
        upstream.configure({
          port: next.upstreamPort,
          connectTimeoutMs: next.upstreamTimeoutMs,
          replyTimeoutMs: next.upstreamTimeoutMs,
          maxFanOut: next.maxFanOut,
        });
      },
      close() {
        // Drain clients, then let upstream exchanges finish (each is bounded by its
        // timeouts) so their outcomes reach the ledger, then close the store.
        // The refusals of the last, unfinished window go to the ledger before it closes.
        closing ??= server
          .close()
          .then(() => {
            clearInterval(rateTimer);
            clearInterval(natTimer);
            drainNatEvents();
            natEvents?.close();
            return reportRates();
          })
          .then(() => upstream.close())
          // The recorder's last events go to the journal, which closes before the store's ledger.
          .then(() => history?.close())
          .then(() => store.close())
          .finally(() => evidence.close());
        return closing;
      },
    };
  } catch (error) {
    await analyses?.close();
    await store.close();
    throw error;
  }
}

/** A running history: the recorder feeding the journal, which answers lookups. */
interface RunningHistory {
  readonly journal: HistoryJournal;
  /** Stops the recorder, writes what it delivered, closes the journal. Idempotent. */
  close(): Promise<void>;
}

/**
 * Starts the history (issue 14) unless `--history off` or the host cannot record: probes the
 * recorder, opens the journal, and feeds the recorder's events to it through captures on the
 * analysis runner. Says once, at start, whether history is on and if not why; never fails the
 * daemon's start for history's sake (without it stopd answers as before).
 */
async function startHistory(
  options: DaemonOptions,
  context: { ledger: HistoryLedger; analyses: AnalysisRunner; save: () => readonly SaveCategory[] },
): Promise<RunningHistory | undefined> {
  const log = options.log;
  if ((options.history ?? 'auto') === 'off') {
    log.info('History is off (history = off, or --inetd mode, which has no resident recorder): only connections open when a request arrives can be answered');
    return undefined;
  }
  const ring = options.historyRingRecords === undefined ? {} : { ringRecordsPerCpu: options.historyRingRecords };
  const recorder = options.recorder ?? { probe: () => probeConnectionRecorder(ring), start: createConnectionRecorderStarter(ring) };
  const availability = recorder.probe();
  if (!availability.available) {
    log.warn(`${availability.reason} Only connections open when a request arrives can be answered.`);
    return undefined;
  }
  let journal: HistoryJournal;
  try {
    journal = await HistoryJournal.open(options.storeDir, {
      ledger: context.ledger,
      ...(options.historyRetentionMs === undefined ? {} : { retentionMs: options.historyRetentionMs }),
      ...(options.historyMaxBytes === undefined ? {} : { maxBytes: options.historyMaxBytes }),
    });
  } catch (error) {
    log.error(`History is off: cannot open the history journal: ${String(error)}`);
    return undefined;
  }
  const netns = readNetworkNamespaceInode();
  const feed = new HistoryFeed({
    journal,
    analyses: context.analyses,
    save: context.save,
    // In a nested PID namespace the kernel's pids are not ours: the capture finds the holder.
    pidVisible: readPidNamespaceView() !== 'nested',
    ...(netns === undefined ? {} : { netns }),
    log,
  });
  let running: ConnectionRecorder;
  try {
    running = recorder.start((events) => feed.push(events));
  } catch (error) {
    log.warn(`${error instanceof Error ? error.message : String(error)} Only connections open when a request arrives can be answered.`);
    await journal.close();
    return undefined;
  }
  log.info('History is on: outbound TCP connections are recorded, and requests about closed ones are answered from the history journal');
  let closing: Promise<void> | undefined;
  return {
    journal,
    close() {
      closing ??= running
        .close()
        .catch((error: unknown) => log.warn(`Cannot stop the connection recorder cleanly: ${String(error)}`))
        .then(() => feed.idle())
        .then(() => journal.close());
      return closing;
    },
  };
}
