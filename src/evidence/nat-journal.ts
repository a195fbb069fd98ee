import { appendFileSync, mkdirSync, readFileSync, renameSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { FlowEvent, TrackedFlow } from '../host/conntrack.js';
import type { Endpoint } from '../host/types.js';

/** A translated flow as the journal remembers it. */
export interface JournalFlow {
  readonly flow: TrackedFlow;
  /** When the journal saw it begin (ISO 8601); absent when it began before the subscription. */
  readonly seen?: string;
  /** When conntrack forgot it (ISO 8601); absent while it lives. */
  readonly closed?: string;
}

/** Options of {@link NatJournal}. */
export interface NatJournalOptions {
  /** The directory of the two segment files (`<store>/nat`), created mode 0700. */
  readonly dir: string;
  /** Both segments together at most (default 64 MiB); the older half is dropped at rotation. */
  readonly maxBytes?: number;
  /** Flows older than this are not answered from the journal (the ledger's retention; default 400 days). */
  readonly retentionMs?: number;
  /** The clock (tests). */
  readonly now?: () => number;
}

/** One line of a segment file (JSON). */
interface JournalLine {
  readonly time: string;
  readonly event: 'new' | 'destroy' | 'lost';
  readonly flow?: TrackedFlow;
}

const CURRENT = 'journal.jsonl';
const PREVIOUS = 'journal.1.jsonl';
/** About what one line costs: the index keeps as many flows as the segments can hold. */
const BYTES_PER_FLOW = 400;

/**
 * `--nat`'s own journal of translations (issue 15): conntrack forgets a flow soon after it
 * closes, so the gateway keeps every translated flow it hears of (conntrack events), to answer
 * for it later. Bounded: two JSON-lines segments under `<store>/nat`, the older dropped when the
 * current one reaches half of `maxBytes`, and an in-memory index by reply tuple of the flows
 * they hold, rebuilt from them at start.
 *
 * It is NOT hash-chained like the ledger: what the gateway answered from it is in the ledger
 * (the reply entry holds the whole translation), which is. This is the one owner of the journal's
 * format; when the history journal (issue 14) is merged, these events are meant to become
 * entries of it, with its chain and retention, and this module to go.
 */
export class NatJournal {
  readonly #o: Required<Omit<NatJournalOptions, 'now'>> & { now: () => number };
  readonly #index = new Map<string, JournalFlow>();
  readonly #maxFlows: number;
  #bytes = 0;
  /** Times the kernel dropped events (its buffer overflowed): gaps in what the journal knows. */
  #lost = 0;

  constructor(options: NatJournalOptions) {
    this.#o = { maxBytes: 64 * 1024 ** 2, retentionMs: 400 * 86_400_000, now: Date.now, ...options };
    this.#maxFlows = Math.max(16, Math.floor(this.#o.maxBytes / BYTES_PER_FLOW));
    mkdirSync(this.#o.dir, { recursive: true, mode: 0o700 });
    for (const name of [PREVIOUS, CURRENT]) this.#load(join(this.#o.dir, name));
    try {
      this.#bytes = statSync(join(this.#o.dir, CURRENT)).size;
    } catch {
      this.#bytes = 0;
    }
  }

  /** Flows the index holds. */
  get size(): number {
    return this.#index.size;
  }

  /** Times events were lost since start. */
  get lost(): number {
    return this.#lost;
  }

  /**
   * Keeps the translated flows among `events` (others are not this journal's business) and
   * notes a gap when the kernel lost events. One write per call.
   */
  add(events: readonly FlowEvent[], options: { lost?: boolean } = {}): void {
    const time = new Date(this.#o.now()).toISOString();
    const lines: JournalLine[] = [];
    if (options.lost === true) {
      this.#lost += 1;
      lines.push({ time, event: 'lost' });
    }
    for (const { kind, flow } of events) {
      if (!flow.sourceNat && !flow.destinationNat) continue;
      lines.push({ time, event: kind, flow });
    }
    if (lines.length === 0) return;
    for (const line of lines) this.#apply(line);
    const text = lines.map((line) => JSON.stringify(line)).join('\n') + '\n';
    if (this.#bytes + text.length > this.#o.maxBytes / 2) this.#rotate();
    appendFileSync(join(this.#o.dir, CURRENT), text, { mode: 0o600 });
    this.#bytes += Buffer.byteLength(text);
  }

  /**
   * The latest translated flow whose reply direction ran from `from` to `to` (as
   * ConntrackTable.findByReply), within the retention; undefined when the journal has none.
   */
  findByReply(from: Endpoint, to: Endpoint): JournalFlow | undefined {
    const found = this.#index.get(replyKey(from, to));
    if (found === undefined) return undefined;
    const at = Date.parse(found.closed ?? found.seen ?? '');
    if (Number.isFinite(at) && this.#o.now() - at > this.#o.retentionMs) return undefined;
    return found;
  }

  #apply(line: JournalLine): void {
    if (line.flow === undefined) return;
    const key = replyKey(line.flow.reply.source, line.flow.reply.destination);
    const known = this.#index.get(key);
    // The same reply tuple again after a destroy is a new flow that reused the ports.
    const same = known !== undefined && known.closed === undefined && known.flow.id === line.flow.id;
    const next: JournalFlow =
      line.event === 'destroy'
        ? { flow: same ? known.flow : line.flow, ...(same && known.seen !== undefined ? { seen: known.seen } : {}), closed: line.time }
        : { flow: line.flow, seen: line.time };
    this.#index.delete(key);
    this.#index.set(key, next);
    // Oldest first out: the index holds about what the segments hold.
    if (this.#index.size > this.#maxFlows) {
      const oldest = this.#index.keys().next().value;
      if (oldest !== undefined) this.#index.delete(oldest);
    }
  }

  #rotate(): void {
    try {
      renameSync(join(this.#o.dir, CURRENT), join(this.#o.dir, PREVIOUS));
    } catch {
      // No current segment yet.
    }
    this.#bytes = 0;
  }

  #load(path: string): void {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch {
      return;
    }
    for (const raw of text.split('\n')) {
      if (raw.trim() === '') continue;
      try {
        this.#apply(JSON.parse(raw) as JournalLine);
      } catch {
        // A torn last line (a crash mid-write) or a damaged one: skipped, the rest still counts.
      }
    }
  }
}

function replyKey(from: Endpoint, to: Endpoint): string {
  return `${from.address}:${from.port}>${to.address}:${to.port}`;
}
