import { OverloadError } from '../errors.js';

/**
 * Counts concurrent lookups (`--max-lookups`). Waiters queue up to `maxWaiting`; beyond that
 * `acquire` fails at once, so overload turns into error replies instead of unbounded memory.
 */
export class Semaphore {
  readonly #limit: number;
  readonly #maxWaiting: number;
  #active = 0;
  readonly #waiting: (() => void)[] = [];

  constructor(limit: number, options: { maxWaiting: number }) {
    this.#limit = limit;
    this.#maxWaiting = options.maxWaiting;
  }

  /** Resolves with a release function once a slot is free. */
  async acquire(): Promise<() => void> {
    if (this.#active >= this.#limit) {
      if (this.#waiting.length >= this.#maxWaiting) {
        throw new OverloadError(`Cannot start a lookup: ${this.#limit} running and ${this.#maxWaiting} waiting`);
      }
      await new Promise<void>((resolve) => this.#waiting.push(resolve));
    } else {
      this.#active += 1;
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.#waiting.shift();
      if (next === undefined) this.#active -= 1;
      else next(); // hand the slot over without freeing it
    };
  }
}
