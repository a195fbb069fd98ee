/**
 * Host facts that rarely change, read at most once per `maxAgeMs` by all the requests of that
 * time: boot time (wall-clock based: it moves only when the clock is stepped), the host's
 * interface addresses, CLK_TCK, the host name and OS. Reading them costs more than a small
 * closure analysis; a request made within a second of a change may see the earlier value.
 */
const recentValues = new Map<string, { readonly at: number; readonly value: unknown }>();

/** `compute()`'s value, computed again once the one stored under `key` is `maxAgeMs` old. */
export function recent<T>(key: string, compute: () => T, maxAgeMs = 1000): T {
  const now = performance.now();
  const known = recentValues.get(key);
  if (known !== undefined && now - known.at < maxAgeMs) return known.value as T;
  const value = compute();
  recentValues.set(key, { at: now, value });
  return value;
}

/** Forgets every stored value (a process table's `refresh()`: the caller wants everything read again). */
export function forgetRecent(): void {
  recentValues.clear();
}
