/**
 * From the connection recorder to the history journal (issue 14): each `open` event is
 * completed with what an SV would have needed while it still exists (the process's ancestry
 * and the inbound connections behind it, read by the analysis thread, which owns the
 * descriptor index), then written to the journal in kernel order with `close` and loss events.
 */
import type { ConnectionEvent, OutboundOpenEvent } from '../host/connection-events.js';
import type { HistoryConnection } from '../evidence/history-entry.js';
import type { HistoryAppendItem } from '../evidence/history-files.js';
import type { HistoryGap, HistoryJournal } from '../evidence/history-journal.js';
import type { SaveCategory } from '../evidence/record.js';
import type { CapturedConnection } from '../trace/index.js';
import type { AnalysisRunner } from './evidence-collector.js';
import type { Logger } from './logger.js';

/**
 * The journal as the feed writes it (evidence/history-journal.ts): batches of opens and
 * closes (group commit), and gaps, which go to the ledger.
 */
export type HistoryJournalWriter = Pick<HistoryJournal, 'append' | 'noteGap'>;

/** Options of {@link HistoryFeed}. */
export interface HistoryFeedOptions {
  readonly journal: HistoryJournalWriter;
  /** Where captures run: the analysis thread, beside the descriptor index. */
  readonly analyses: AnalysisRunner;
  /** What records keep now (`cmdline` decides whether command lines are read). */
  readonly save: () => readonly SaveCategory[];
  /** Whether the recorder's pids (initial PID namespace) are pids of this daemon's /proc; default true. */
  readonly pidVisible?: boolean;
  /** Only connections of this network namespace (the daemon's own) are this host's; default all. */
  readonly netns?: number;
  /** Opens waiting for their capture at most; beyond, opens are journaled without capture and counted as an `overload` gap. Default 1024. */
  readonly maxQueued?: number;
  /**
   * Events waiting to be journaled at most (captured or not); beyond, events are not journaled
   * at all and are counted as an `overload` gap, so that a stalled journal under a connect flood
   * cannot grow the daemon without bound. Default 32 768: the recorder's full rings on a host
   * of 8 CPUs (4 096 records each), so that a reader stalled for a while loses nothing here.
   */
  readonly maxPending?: number;
  /** Captures per message to the analysis thread (one host view each): small enough that an SV never waits long behind one. Default 64. */
  readonly batch?: number;
  /** Events per journal append at most, captured or not: one append's lines are built in memory at once. Default 1024. */
  readonly maxBatchEvents?: number;
  readonly log: Logger;
}

/** Default of {@link HistoryFeedOptions.maxPending}. */
const DEFAULT_MAX_PENDING = 32_768;

interface Queued {
  readonly event: ConnectionEvent;
  /** False for an open that arrived beyond `maxQueued`: journaled with the kernel's attribution alone. */
  readonly capture: boolean;
}

/**
 * Feeds recorder events into the journal. Never blocks the caller: events are queued and
 * written in order by one drain loop. Nothing is lost silently: a capture skipped for
 * overload is a gap, and so is every loss the recorder reports.
 */
export class HistoryFeed {
  readonly #o: HistoryFeedOptions;
  readonly #queue: Queued[] = [];
  #waitingCaptures = 0;
  #overload: { count: number; from: number; to: number } | undefined;
  /** Events dropped because `maxPending` were waiting: not in the journal at all. */
  #dropped: { count: number; from: number; to: number } | undefined;
  #draining: Promise<void> | undefined;
  /** Counts of what went into the journal, for tests and the start-up log. */
  readonly counts = { opens: 0, captured: 0, closes: 0, gaps: 0, ignored: 0 };
  readonly #warned = new Set<string>();

  constructor(options: HistoryFeedOptions) {
    this.#o = options;
  }

  /** Takes a batch of recorder events (the recorder's `onEvents`). */
  push(events: readonly ConnectionEvent[]): void {
    const maxQueued = this.#o.maxQueued ?? 1024;
    const maxPending = this.#o.maxPending ?? DEFAULT_MAX_PENDING;
    for (const event of events) {
      if (event.kind !== 'loss' && this.#o.netns !== undefined && event.netns !== this.#o.netns) {
        // Another network namespace's connection (a container, a test host): not this host's.
        this.counts.ignored += 1;
        continue;
      }
      if (event.kind !== 'loss' && this.#queue.length >= maxPending) {
        const at = event.kind === 'open' ? event.connectedAt : event.closedAt;
        this.#dropped = this.#dropped === undefined ? { count: 1, from: at, to: at } : { count: this.#dropped.count + 1, from: Math.min(this.#dropped.from, at), to: Math.max(this.#dropped.to, at) };
        continue;
      }
      if (event.kind === 'open' && event.establishedAt !== null) {
        if (this.#waitingCaptures < maxQueued) {
          this.#waitingCaptures += 1;
          this.#queue.push({ event, capture: true });
          continue;
        }
        const at = event.connectedAt;
        this.#overload = this.#overload === undefined ? { count: 1, from: at, to: at } : { ...this.#overload, count: this.#overload.count + 1, to: at };
      }
      this.#queue.push({ event, capture: false });
    }
    this.#draining ??= this.#drain().finally(() => {
      this.#draining = undefined;
    });
  }

  /** Resolves once every event pushed so far is in the journal. */
  async idle(): Promise<void> {
    while (this.#draining !== undefined) await this.#draining;
  }

  async #drain(): Promise<void> {
    const batchSize = this.#o.batch ?? 64;
    const maxEvents = this.#o.maxBatchEvents ?? 1024;
    while (this.#queue.length > 0) {
      // Take events up to the batch's captures: later events wait for the next batch, so order is kept.
      let captures = 0;
      let end = 0;
      while (end < this.#queue.length && captures < batchSize && end < maxEvents) {
        if (this.#queue[end]?.capture === true) captures += 1;
        end += 1;
      }
      const batch = this.#queue.splice(0, end);
      const opens = batch.filter((item) => item.capture).map((item) => item.event as OutboundOpenEvent);
      this.#waitingCaptures -= opens.length;
      const captured = await this.#capture(opens);
      const capturedAt = new Date().toISOString();
      const items: HistoryAppendItem[] = [];
      const gaps: HistoryGap[] = [];
      let index = 0;
      for (const { event, capture } of batch) {
        if (event.kind === 'open') {
          const result = capture ? captured[index++] : undefined;
          const connection = describeOpen(event, result === undefined ? undefined : { result, at: capturedAt });
          if (connection.capturedAt !== null) this.counts.captured += 1;
          items.push({ kind: 'open', connection });
        } else if (event.kind === 'close') {
          items.push({ kind: 'close', socket: event.socket, local: { ...event.local }, remote: { ...event.remote }, closedAt: event.closedAt });
        } else {
          if (event.reason === 'ring-buffer-full') {
            // The operator should hear of it, not only the ledger: the recorder could not keep up (or was not drained).
            this.#warnOnce(
              'ring-buffer-full',
              `History: a kernel ring of the recorder overflowed; ${event.count} connection events between ${iso(event.from)} and ${iso(event.to)} were lost (a gap, reason ring-buffer-full, in the ledger; later ones are noted there only)`,
            );
          }
          gaps.push({ reason: event.reason, count: event.count, from: event.from, to: event.to });
        }
      }
      const overload = this.#overload;
      this.#overload = undefined;
      if (overload !== undefined) {
        this.#warnOnce('overload', `History: connections arrive faster than their processes can be read; ${overload.count} were recorded without them (a gap, reason overload, in the ledger)`);
        gaps.push({
          reason: 'overload',
          count: overload.count,
          from: overload.from,
          to: overload.to,
          note: 'the daemon could not read the processes behind these connections in time: they are in the history with the kernel attribution alone (pid, uid, comm), without ancestry or upstream candidates',
        });
      }
      const dropped = this.#dropped;
      this.#dropped = undefined;
      if (dropped !== undefined) {
        this.#warnOnce('dropped', `History: the journal fell ${this.#o.maxPending ?? DEFAULT_MAX_PENDING} events behind; ${dropped.count} connection events were not recorded (a gap, reason overload, in the ledger)`);
        gaps.push({
          reason: 'overload',
          count: dropped.count,
          from: dropped.from,
          to: dropped.to,
          note: 'the history journal fell too far behind (a burst of connections while it could not write): these opens and closes are not in the history at all',
        });
      }
      await this.#write(items, gaps);
    }
  }

  async #capture(opens: readonly OutboundOpenEvent[]): Promise<(CapturedConnection | undefined)[]> {
    if (opens.length === 0) return [];
    try {
      return await this.#o.analyses.capture(
        opens.map((event) => ({ pid: event.pid, pidVisible: this.#o.pidVisible ?? true, local: event.local, remote: event.remote })),
        this.#o.save(),
      );
    } catch (error) {
      this.#warnOnce('capture', `Cannot read the processes behind new connections (${String(error)}): they are recorded with the kernel's attribution alone`);
      return opens.map(() => undefined);
    }
  }

  async #write(items: readonly HistoryAppendItem[], gaps: readonly HistoryGap[]): Promise<void> {
    if (items.length > 0) {
      try {
        // One append per batch: the journal syncs once for all of it.
        await this.#o.journal.append(items);
        for (const item of items) this.counts[item.kind === 'open' ? 'opens' : 'closes'] += 1;
      } catch (error) {
        // The journal notes its own write-failed gap in the ledger.
        this.#warnOnce('journal', `Cannot write to the history journal: ${String(error)}`);
      }
    }
    for (const gap of gaps) {
      try {
        await this.#o.journal.noteGap(gap);
        this.counts.gaps += 1;
      } catch (error) {
        this.#warnOnce('gap', `Cannot write a history gap to the ledger: ${String(error)}`);
      }
    }
  }

  #warnOnce(key: string, message: string): void {
    if (this.#warned.has(key)) return;
    this.#warned.add(key);
    this.#o.log.warn(message);
  }
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

/** The journal's `open` entry of an event and its capture (none when skipped or failed). */
export function describeOpen(
  event: OutboundOpenEvent,
  capture: { readonly result: CapturedConnection; readonly at: string } | undefined,
): Omit<HistoryConnection, 'seq'> {
  const captured = capture !== undefined && isSameProcess(event, capture.result);
  return {
    socket: event.socket,
    netns: event.netns,
    local: { ...event.local },
    remote: { ...event.remote },
    connectedAt: iso(event.connectedAt),
    establishedAt: event.establishedAt === null ? null : iso(event.establishedAt),
    closedAt: null,
    tid: event.tid,
    pid: event.pid,
    uid: event.uid,
    gid: event.gid,
    loginuid: event.loginuid,
    sessionid: event.sessionid,
    comm: event.comm,
    capturedAt: captured ? capture.at : null,
    ancestry: captured ? capture.result.ancestry : [],
    upstream: captured ? capture.result.upstream : [],
  };
}

/**
 * Process start times come from boot time, which /proc gives to the second: a process that
 * started more than this after the connect cannot have made it.
 */
const START_TIME_SLACK_MS = 1000;

/**
 * Whether the process read is the one that connected, not a later one with its pid (the
 * connecting process exited and the pid was reused before the capture ran): same uid, and
 * started before the connect.
 */
function isSameProcess(event: OutboundOpenEvent, result: CapturedConnection): boolean {
  const process = result.ancestry[0];
  if (process === undefined) return false;
  if (process.uid.real !== event.uid && process.uid.effective !== event.uid) return false;
  return Date.parse(process.startTime) <= event.connectedAt + START_TIME_SLACK_MS;
}
