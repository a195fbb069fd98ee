/**
 * Fair connection slots (issue 13, DESIGN "Fairness"): the table of open client connections,
 * grouped by requester (`formatRequesterGroup`: IPv4 per address, IPv6 per /64). One
 * requester holds at most `maxPerRequester` slots; when the whole table is full, a newcomer
 * from a lighter requester takes the slot of the oldest idle connection of the heaviest one,
 * so that idle connections from one address (a Slowloris attack) cannot silence the daemon
 * for everyone else. Pure bookkeeping: the server closes what it is told to.
 */

/** The two bounds of the table. */
export interface SlotLimits {
  /** Open connections at most, all requesters together. */
  readonly maxConnections: number;
  /** Open connections of one requester group at most. */
  readonly maxPerRequester: number;
}

/** What to do with a new connection. */
export type SlotDecision<T> =
  | { readonly kind: 'admit' }
  /** Admit after closing `victim`, the oldest idle connection of `victimGroup`. */
  | { readonly kind: 'evict'; readonly victim: T; readonly victimGroup: string }
  /** `requester-limit`: this requester holds its share already; `table-full`: nothing idle to take. */
  | { readonly kind: 'refuse'; readonly reason: 'requester-limit' | 'table-full' };

/**
 * The open connections per requester group, each group in opening order. `isIdle` tells
 * whether a connection may be evicted: one that sent a complete request is not idle until
 * its reply is written, so a request is never dropped unanswered to make room.
 */
export class ConnectionSlots<T> {
  #limits: SlotLimits;
  readonly #isIdle: (item: T) => boolean;
  readonly #groups = new Map<string, Set<T>>();
  #size = 0;

  constructor(limits: SlotLimits, isIdle: (item: T) => boolean) {
    this.#limits = limits;
    this.#isIdle = isIdle;
  }

  /** New bounds (SIGHUP reload); connections already open stay, even above them. */
  configure(limits: SlotLimits): void {
    this.#limits = limits;
  }

  /** Open connections, all groups together. */
  get size(): number {
    return this.#size;
  }

  /** Open connections of `group`. */
  countOf(group: string): number {
    return this.#groups.get(group)?.size ?? 0;
  }

  /**
   * Whether a new connection from `group` may have a slot. When the table is full, the
   * victim is the oldest idle connection of the heaviest group that holds at least two more
   * connections than `group` (after the swap, `group` still holds fewer or as many), so
   * requesters never evict each other back and forth, and the heaviest pays first.
   */
  decide(group: string): SlotDecision<T> {
    const own = this.countOf(group);
    if (own >= this.#limits.maxPerRequester) return { kind: 'refuse', reason: 'requester-limit' };
    if (this.#size < this.#limits.maxConnections) return { kind: 'admit' };
    const heavier = [...this.#groups].filter(([name, items]) => name !== group && items.size > own + 1);
    heavier.sort((a, b) => b[1].size - a[1].size);
    for (const [name, items] of heavier) {
      for (const item of items) {
        if (this.#isIdle(item)) return { kind: 'evict', victim: item, victimGroup: name };
      }
    }
    return { kind: 'refuse', reason: 'table-full' };
  }

  /** Counts `item` as open in `group`. */
  add(group: string, item: T): void {
    let items = this.#groups.get(group);
    if (items === undefined) {
      items = new Set();
      this.#groups.set(group, items);
    }
    if (items.has(item)) return;
    items.add(item);
    this.#size += 1;
  }

  /** Forgets `item` (closed or evicted); idempotent. */
  remove(group: string, item: T): void {
    const items = this.#groups.get(group);
    if (items === undefined || !items.delete(item)) return;
    this.#size -= 1;
    if (items.size === 0) this.#groups.delete(group);
  }
}
