/**
 * Loop and storm control for recursive requests (paper 3.1.4; DESIGN duty 7).
 *
 * A request is keyed by its SID, the requester's address and the queried connection's
 * 4-tuple, and remembered for a window (default 120 s, the paper's). A repeat within the
 * window is not processed. Independently, each SID has a budget of work per window
 * (requests processed plus upstream queries sent), so a SID cannot make this host do
 * unbounded work however the requests differ. The table itself is bounded: when full, new
 * recursive requests are not processed until old entries expire.
 */
export class LoopTable {
  readonly #windowMs: number;
  readonly #maxEntries: number;
  readonly #maxWorkPerSid: number;
  /** key -> time first seen (ms). Map iteration order is insertion order: oldest first. */
  readonly #seen = new Map<string, number>();
  /** sid -> { work done, window start }. */
  readonly #work = new Map<string, { used: number; since: number }>();

  constructor(options: { windowMs: number; maxEntries?: number; maxWorkPerSid?: number }) {
    this.#windowMs = options.windowMs;
    this.#maxEntries = options.maxEntries ?? 100_000;
    this.#maxWorkPerSid = options.maxWorkPerSid ?? 64;
  }

  /**
   * Registers a recursive request. `repeat`: the same (SID, requester, connection) was seen
   * within the window; `budget`: the SID has used up its work; `full`: the table is full;
   * `new`: process it (one unit of the SID's work is taken).
   */
  admit(request: { sid: string; requester: string; connection: string }, now = Date.now()): 'new' | 'repeat' | 'budget' | 'full' {
    this.#expire(now);
    const key = `${request.sid}|${request.requester}|${request.connection}`;
    if (this.#seen.has(key)) return 'repeat';
    if (this.#seen.size >= this.#maxEntries) return 'full';
    this.#seen.set(key, now);
    return this.take(request.sid, 1, now) === 1 ? 'new' : 'budget';
  }

  /** Takes up to `units` of a SID's work budget; returns how many were granted. */
  take(sid: string, units: number, now = Date.now()): number {
    let work = this.#work.get(sid);
    if (work === undefined || now - work.since >= this.#windowMs) {
      work = { used: 0, since: now };
      this.#work.set(sid, work);
    }
    const granted = Math.max(0, Math.min(units, this.#maxWorkPerSid - work.used));
    work.used += granted;
    return granted;
  }

  /** Entries currently remembered (for tests and metrics). */
  get size(): number {
    return this.#seen.size;
  }

  #expire(now: number): void {
    for (const [key, time] of this.#seen) {
      if (now - time < this.#windowMs) break;
      this.#seen.delete(key);
    }
    if (this.#work.size > this.#maxEntries) {
      for (const [sid, work] of this.#work) if (now - work.since >= this.#windowMs) this.#work.delete(sid);
    }
  }
}
