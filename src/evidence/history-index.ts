/**
 * The history journal's in-memory index (issue 14): answers "the latest connection with this
 * 4-tuple" and "the first entry written at or after this time" without scanning, and stays
 * small at a million recorded connections. Only numbers are kept, in typed arrays indexed by
 * `seq - base`; the entries themselves stay on disk and are read back by offset on lookup.
 *
 * Per entry: its byte offset in its segment (4 bytes), its write time (8), its kind (1), and
 * for `open` entries the close time (8) and the previous `open` entry with the same tuple key
 * (8). Tuple keys are 52-bit hashes in an open-addressing table (16 bytes a slot, at most half
 * full); two tuples may share a key, so callers compare the entry read from disk and follow
 * `previousWithKey` (collisions are about one in 2^52 / n).
 */

/** Entry kinds as stored in the index. */
export const INDEX_KIND = { open: 1, close: 2, stop: 3 } as const;

const EMPTY = 0;

/** Numbers about every entry of the journal still on disk. */
export class HistoryIndex {
  /** Seq of slot 0. */
  #base: number;
  #count = 0;
  #offset = new Uint32Array(1024);
  #time = new Float64Array(1024);
  #closed = new Float64Array(1024);
  #previous = new Float64Array(1024);
  #kind = new Uint8Array(1024);
  #keys = new Float64Array(2048);
  #heads = new Float64Array(2048);
  #used = 0;
  /** Open entries (keys) dropped since the table was last rebuilt. */
  #stale = 0;

  /** An empty index whose first entry will be `firstSeq`. */
  constructor(firstSeq: number) {
    this.#base = firstSeq;
  }

  /** Seq of the first entry kept, and of the last one added (base - 1 when empty). */
  get firstSeq(): number {
    return this.#base;
  }

  get lastSeq(): number {
    return this.#base + this.#count - 1;
  }

  /** Bytes of the typed arrays (what a recorded connection costs, measured by the bench). */
  get bytes(): number {
    return (
      this.#offset.byteLength + this.#time.byteLength + this.#closed.byteLength + this.#previous.byteLength + this.#kind.byteLength + this.#keys.byteLength + this.#heads.byteLength
    );
  }

  /**
   * Adds the next entry (seq must be lastSeq + 1). `open` entries give their tuple key and close
   * time (NaN while open); `close` entries the seq of their open entry and their close time.
   */
  add(seq: number, entry: { kind: 'open'; offset: number; time: number; key: string; closedAt: number } | { kind: 'close'; offset: number; time: number; open: number; closedAt: number } | { kind: 'stop'; offset: number; time: number }): void {
    if (this.#count === 0) this.#base = seq;
    // A damaged line leaves a hole (verify reports it): its slots stay kind 0.
    if (seq < this.#base + this.#count) throw new Error(`history index: seq ${seq} is not after ${this.lastSeq}`);
    while (seq > this.#base + this.#count) {
      this.#grow(this.#count + 1);
      this.#kind[this.#count] = 0;
      this.#time[this.#count] = this.#count > 0 ? (this.#time[this.#count - 1] ?? 0) : 0;
      this.#previous[this.#count] = EMPTY;
      this.#count += 1;
    }
    this.#grow(this.#count + 1);
    const slot = this.#count;
    this.#count += 1;
    this.#offset[slot] = entry.offset;
    // Write times only go forward, so that time lookups may bisect (a clock stepped back keeps the last).
    this.#time[slot] = Math.max(entry.time, slot > 0 ? (this.#time[slot - 1] ?? 0) : 0);
    this.#kind[slot] = INDEX_KIND[entry.kind];
    this.#closed[slot] = Number.NaN;
    this.#previous[slot] = EMPTY;
    if (entry.kind === 'open') {
      this.#closed[slot] = entry.closedAt;
      const key = hashKey(entry.key);
      const at = this.#findSlot(key);
      const head = this.#heads[at] ?? EMPTY;
      this.#previous[slot] = head >= this.#base ? head : EMPTY;
      if (this.#keys[at] === EMPTY) {
        this.#keys[at] = key;
        this.#used += 1;
      }
      this.#heads[at] = seq;
      if (this.#used * 2 > this.#keys.length) this.#rehash(this.#keys.length * 2);
    } else if (entry.kind === 'close') {
      this.setClosed(entry.open, entry.closedAt);
    }
  }

  /** Sets the close time of the open entry `seq` (ignored when it is not kept). */
  setClosed(seq: number, closedAt: number): void {
    const slot = seq - this.#base;
    if (slot >= 0 && slot < this.#count && this.#kind[slot] === INDEX_KIND.open) this.#closed[slot] = closedAt;
  }

  /** The newest open entry kept with this tuple key, or undefined. */
  latestWithKey(key: string): number | undefined {
    const at = this.#findSlot(hashKey(key));
    const head = this.#heads[at] ?? EMPTY;
    return head >= this.#base && this.#keys[at] !== EMPTY ? head : undefined;
  }

  /** The open entry before `seq` with the same tuple key, or undefined. */
  previousWithKey(seq: number): number | undefined {
    const previous = this.#previous[seq - this.#base] ?? EMPTY;
    return previous >= this.#base ? previous : undefined;
  }

  /** The kind, offset in its segment, write time and close time (NaN: not closed) of a kept entry. */
  entry(seq: number): { kind: number; offset: number; time: number; closedAt: number } | undefined {
    const slot = seq - this.#base;
    if (slot < 0 || slot >= this.#count) return undefined;
    return { kind: this.#kind[slot] ?? 0, offset: this.#offset[slot] ?? 0, time: this.#time[slot] ?? 0, closedAt: this.#closed[slot] ?? Number.NaN };
  }

  /** The first kept seq written at or after `time` (ms), or lastSeq + 1 when none: a bisection. */
  firstSeqAtOrAfter(time: number): number {
    let low = 0;
    let high = this.#count;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if ((this.#time[middle] ?? 0) < time) low = middle + 1;
      else high = middle;
    }
    return this.#base + low;
  }

  /** Forgets every entry before `seq` (its segments were dropped). */
  dropBefore(seq: number): void {
    const drop = Math.min(Math.max(0, seq - this.#base), this.#count);
    if (drop === 0) return;
    for (let slot = 0; slot < drop; slot += 1) if (this.#kind[slot] === INDEX_KIND.open) this.#stale += 1;
    for (const column of [this.#offset, this.#time, this.#closed, this.#previous, this.#kind]) column.copyWithin(0, drop, this.#count);
    this.#count -= drop;
    this.#base += drop;
    // Keys of dropped entries point below base and read as absent; rebuild once they are most of the table.
    if (this.#stale * 2 > this.#used) this.#rebuildKeys();
  }

  #grow(needed: number): void {
    if (needed <= this.#offset.length) return;
    const size = Math.max(needed, this.#offset.length * 2);
    const grow = <T extends Uint32Array | Float64Array | Uint8Array>(old: T, make: (n: number) => T): T => {
      const next = make(size);
      next.set(old.subarray(0, this.#count));
      return next;
    };
    this.#offset = grow(this.#offset, (n) => new Uint32Array(n));
    this.#time = grow(this.#time, (n) => new Float64Array(n));
    this.#closed = grow(this.#closed, (n) => new Float64Array(n));
    this.#previous = grow(this.#previous, (n) => new Float64Array(n));
    this.#kind = grow(this.#kind, (n) => new Uint8Array(n));
  }

  /**
   * The slot of `key`, or the empty slot where it would go (linear probing). The table is kept
   * at most half full, so an empty slot is always there; a full table (a bug) throws rather than
   * looping for ever.
   */
  #findSlot(key: number): number {
    const mask = this.#keys.length - 1;
    let at = key % this.#keys.length & mask;
    for (let probes = 0; probes < this.#keys.length; probes += 1) {
      const found = this.#keys[at] ?? EMPTY;
      if (found === EMPTY || found === key) return at;
      at = (at + 1) & mask;
    }
    throw new Error(`history index: the tuple table of ${this.#keys.length} slots is full`);
  }

  #rehash(size: number): void {
    const keys = this.#keys;
    const heads = this.#heads;
    this.#keys = new Float64Array(size);
    this.#heads = new Float64Array(size);
    this.#used = 0;
    for (let index = 0; index < keys.length; index += 1) {
      const key = keys[index] ?? EMPTY;
      const head = heads[index] ?? EMPTY;
      if (key === EMPTY || head < this.#base) continue;
      const at = this.#findSlot(key);
      this.#keys[at] = key;
      this.#heads[at] = head;
      this.#used += 1;
    }
    this.#stale = 0;
  }

  /**
   * A table sized for the keys still in use (whose newest entry is kept). Counted here, not
   * derived from #stale: that counts dropped entries, and one key may have had thousands of
   * them (a tuple reused by a connect flood), so `used - stale` said nothing about what is left.
   */
  #rebuildKeys(): void {
    let live = 0;
    for (let index = 0; index < this.#keys.length; index += 1) {
      if ((this.#keys[index] ?? EMPTY) !== EMPTY && (this.#heads[index] ?? EMPTY) >= this.#base) live += 1;
    }
    let size = 2048;
    while (size < live * 2) size *= 2;
    this.#rehash(size);
  }
}

/**
 * A 52-bit hash of a tuple key (two FNV-1a runs), never 0: exact in a double, and spread
 * enough that the low bits index the table.
 */
function hashKey(key: string): number {
  let a = 0x811c9dc5;
  let b = 0x01000193 ^ 0x5bd1e995;
  for (let index = 0; index < key.length; index += 1) {
    const code = key.charCodeAt(index);
    a = Math.imul(a ^ code, 0x01000193);
    b = Math.imul(b ^ code, 0x5bd1e995);
    b ^= b >>> 15;
  }
  const high = (b >>> 0) & 0xfffff;
  const value = (a >>> 0) * 0x100000 + high;
  return value === EMPTY ? 1 : value;
}
