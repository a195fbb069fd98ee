/**
 * From the connection recorder to the history journal (issue 14): each `open` event is
 * completed with what an SV would have needed while it still exists (the process's ancestry
 * and the inbound connections behind it, read by the analysis thread, which owns the
 * descriptor index), then written to the journal in kernel order with `close` and loss events.
 */
import type { ConnectionEvent, OutboundCloseEvent, OutboundOpenEvent, RecorderLossEvent } from '../host/connection-events.js';
import type { Endpoint } from '../host/types.js';
import type { HistoryConnection, HistoryLookup } from '../evidence/history-entry.js';
import type { SaveCategory } from '../evidence/record.js';
import type { CapturedConnection } from '../trace/index.js';
import type { AnalysisRunner } from './evidence-collector.js';
import type { Logger } from './logger.js';

/** Why history is incomplete for a time range (a `gap`): the recorder's losses, or captures this daemon could not keep up with. */
export type HistoryGapReason = RecorderLossEvent['reason'] | 'overload';

/** A gap in the history: `count` events (or captures) lost between `from` and `to` (ISO 8601 UTC). */
export interface HistoryGap {
  readonly reason: HistoryGapReason;
  readonly count: number;
  readonly from: string;
  readonly to: string;
}

/** The journal as the feed writes it: the journal module's writer, behind the lookups the responder asks. */
export interface HistoryJournalWriter extends HistoryLookup {
  /** Appends an `open` entry; the journal gives it its seq. */
  recordOpen(connection: Omit<HistoryConnection, 'seq' | 'closedAt'>): Promise<void>;
  recordClose(close: { readonly socket: string; readonly netns: number; readonly local: Endpoint; readonly remote: Endpoint; readonly closedAt: string }): Promise<void>;
  /** Writes a gap (the journal notes it in the ledger too). */
  recordGap(gap: HistoryGap): Promise<void>;
}

/** Options of {@link HistoryFeed}. */
export interface HistoryFeedOptions {
  readonly journal: HistoryJournalWriter;
  /** Where captures run: the analysis thread, beside the descriptor index. */
  readonly analyses: AnalysisRunner;
  /** What records keep now (`cmdline` decides whether command lines are read). */
  readonly save: () => readonly SaveCategory[];
  /** Only connections of this network namespace (the daemon's own) are this host's; default all. */
  readonly netns?: number;
  /** Opens waiting for their capture at most; beyond, opens are journaled without capture and counted as an `overload` gap. Default 1024. */
  readonly maxQueued?: number;
  /** Captures per message to the analysis thread (one host view each): small enough that an SV never waits long behind one. Default 32. */
  readonly batch?: number;
  readonly log: Logger;
}

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
    for (const event of events) {
      if (event.kind !== 'loss' && this.#o.netns !== undefined && event.netns !== this.#o.netns) {
        // Another network namespace's connection (a container, a test host): not this host's.
        this.counts.ignored += 1;
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
    const batchSize = this.#o.batch ?? 32;
    while (this.#queue.length > 0) {
      // Take events up to the batch's captures: later events wait for the next batch, so order is kept.
      let captures = 0;
      let end = 0;
      while (end < this.#queue.length && captures < batchSize) {
        if (this.#queue[end]?.capture === true) captures += 1;
        end += 1;
      }
      const batch = this.#queue.splice(0, end);
      const opens = batch.filter((item) => item.capture).map((item) => item.event as OutboundOpenEvent);
      this.#waitingCaptures -= opens.length;
      const captured = await this.#capture(opens);
      const capturedAt = new Date().toISOString();
      let index = 0;
      for (const item of batch) {
        const result = item.capture ? captured[index++] : undefined;
        await this.#write(item.event, result === undefined ? undefined : { result, at: capturedAt });
      }
      await this.#flushOverload();
    }
  }

  async #capture(opens: readonly OutboundOpenEvent[]): Promise<(CapturedConnection | undefined)[]> {
    if (opens.length === 0) return [];
    try {
      return await this.#o.analyses.capture(
        opens.map((event) => ({ pid: event.pid, local: event.local, remote: event.remote })),
        this.#o.save(),
      );
    } catch (error) {
      this.#warnOnce('capture', `Cannot read the processes behind new connections (${String(error)}): they are recorded with the kernel's attribution alone`);
      return opens.map(() => undefined);
    }
  }

  async #write(event: ConnectionEvent, capture: { result: CapturedConnection; at: string } | undefined): Promise<void> {
    try {
      switch (event.kind) {
        case 'open':
          await this.#o.journal.recordOpen(describeOpen(event, capture));
          this.counts.opens += 1;
          if (capture !== undefined && capture.result.ancestry.length > 0) this.counts.captured += 1;
          return;
        case 'close':
          await this.#o.journal.recordClose(describeClose(event));
          this.counts.closes += 1;
          return;
        case 'loss':
          await this.#o.journal.recordGap({ reason: event.reason, count: event.count, from: iso(event.from), to: iso(event.to) });
          this.counts.gaps += 1;
          return;
      }
    } catch (error) {
      this.#warnOnce(`journal-${event.kind}`, `Cannot write to the history journal: ${String(error)}`);
    }
  }

  async #flushOverload(): Promise<void> {
    const overload = this.#overload;
    if (overload === undefined) return;
    this.#overload = undefined;
    this.#warnOnce('overload', `History: connections arrive faster than their processes can be read; ${overload.count} were recorded without them (a gap, reason overload, in the ledger)`);
    try {
      await this.#o.journal.recordGap({ reason: 'overload', count: overload.count, from: iso(overload.from), to: iso(overload.to) });
      this.counts.gaps += 1;
    } catch (error) {
      this.#warnOnce('journal-gap', `Cannot write to the history journal: ${String(error)}`);
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
): Omit<HistoryConnection, 'seq' | 'closedAt'> {
  const captured = capture !== undefined && isSameProcess(event, capture.result);
  return {
    socket: event.socket,
    netns: event.netns,
    local: { ...event.local },
    remote: { ...event.remote },
    connectedAt: iso(event.connectedAt),
    establishedAt: event.establishedAt === null ? null : iso(event.establishedAt),
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

function describeClose(event: OutboundCloseEvent): Parameters<HistoryJournalWriter['recordClose']>[0] {
  return { socket: event.socket, netns: event.netns, local: { ...event.local }, remote: { ...event.remote }, closedAt: iso(event.closedAt) };
}
