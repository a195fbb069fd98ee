/**
 * The eBPF connection recorder (issue 14): the Linux implementation of the contract in
 * connection-events.ts. The kernel half is native/bpf/connection-recorder.bpf.c (shipped
 * compiled, CO-RE), loaded by the addon's bpf_recorder part with libbpf.so.1 opened at run
 * time; this module says whether it can run here and turns its records into events.
 *
 * The program writes its records into rings of its own, one per CPU, mapped into the daemon's
 * memory (no lock shared between CPUs on the connecting side); the addon merges them back into
 * the order the records were made. Reading is polled: a timer drains the rings every
 * `pollIntervalMs`, and the program wakes the reader only when a CPU's ring gets half full in
 * between (a burst), so a connect-heavy host pays no context switch into the daemon per
 * connection.
 */
import { existsSync, readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { formatIpBytes } from '../protocol/index.js';
import { missingCapabilities, readEffectiveCapabilities, RECORDER_CAPABILITIES } from './capabilities.js';
import type {
  ConnectionEvent,
  ConnectionRecorder,
  RecorderAvailability,
  RecorderLossEvent,
  StartConnectionRecorder,
} from './connection-events.js';
import {
  findBpfObject,
  loadNativeAddon,
  nativeRecorderFunctions,
  type NativeRecorderFunctions,
  type RawRecorder,
  type RawRecorderRead,
} from './native-addon.js';

/** Bytes per record: `struct record` of the BPF program (checked there by a static assertion). */
export const RECORD_BYTES = 120;

/** Where the kernel publishes its own BTF, which CO-RE relocates the program against. */
const KERNEL_BTF = '/sys/kernel/btf/vmlinux';

/**
 * Records one `recorderRead` copies at most by default (960 KB): a 200 ms poll at 40 000
 * records a second fits, and a larger backlog is read in several calls.
 */
export const DEFAULT_READ_BUFFER_RECORDS = 8192;

/** How often the rings are drained by default. */
export const DEFAULT_POLL_INTERVAL_MS = 200;

/** The bounds of {@link ConnectionRecorderOptions.ringRecordsPerCpu} (native/bpf_recorder.h). */
export const RING_RECORDS_MIN = 64;
export const RING_RECORDS_MAX = 1 << 20;

/** Whether `records` is a ring size the recorder takes: a power of two within the bounds. */
export function isRingRecordsPerCpu(records: number): boolean {
  return Number.isInteger(records) && records >= RING_RECORDS_MIN && records <= RING_RECORDS_MAX && (records & (records - 1)) === 0;
}

/** The CPUs of a kernel CPU list ("0-3,8-11", as in sysfs and /proc/PID/status), in order. */
export function parseCpuList(text: string): number[] {
  return text
    .trim()
    .split(',')
    .filter((range) => range !== '')
    .flatMap((range) => {
      const [first, last = first] = range.split('-').map(Number);
      if (first === undefined || last === undefined || !Number.isInteger(first) || !Number.isInteger(last) || first < 0) return [];
      return Array.from({ length: Math.max(0, last - first + 1) }, (_, i) => first + i);
    });
}

/**
 * The CPUs the kernel may ever bring online (/sys/devices/system/cpu/possible, "0-3,8-11"):
 * the recorder has a ring for each, as BPF per-CPU maps do.
 */
export function possibleCpuCount(): number {
  try {
    const possible = parseCpuList(readFileSync('/sys/devices/system/cpu/possible', 'utf8'));
    if (possible.length > 0) return Math.max(...possible) + 1;
  } catch {
    // Not Linux, or no sysfs: the CPUs this process sees.
  }
  return Math.max(1, cpus().length);
}

/**
 * Records a CPU's ring holds by default: 4 096 (480 KiB a CPU), fewer on a host with more than
 * 64 possible CPUs, so that the rings stay near 32 MiB at most (1 024 records a CPU at least).
 * Small on purpose: measured, the program's writes cost the connecting process less in a ring
 * that stays in the CPU's cache (bench/README.md). A burst does not overflow it as long as the
 * reader is not stalled: the program wakes the reader when a ring is half full, and the other
 * half, 1 024 connections, is about 20 ms of the fastest loopback flood measured here.
 */
export function defaultRingRecordsPerCpu(cpuCount = possibleCpuCount()): number {
  const fit = Math.floor((32 << 20) / RECORD_BYTES / Math.max(1, cpuCount));
  let records = 1024;
  while (records * 2 <= Math.min(fit, 4096)) records *= 2;
  return records;
}

/** Options of {@link probeConnectionRecorder} and {@link createConnectionRecorderStarter}. */
export interface ConnectionRecorderOptions {
  /** The BPF object to load; default the shipped native/bpf/connection-recorder.bpf.o. */
  readonly objectPath?: string;
  /** Milliseconds between two drains of the rings (10 to 10 000); default 200. */
  readonly pollIntervalMs?: number;
  /** Records one read copies at most (1 to 65 536); fuller rings are read in several calls. Default 8192. */
  readonly readBufferRecords?: number;
  /** Records each CPU's ring holds (a power of two, 64 to 1 048 576); default {@link defaultRingRecordsPerCpu}. */
  readonly ringRecordsPerCpu?: number;
}

/** The shipped BPF object's path, or undefined when the package root cannot be found. */
export function findRecorderObject(): string | undefined {
  return findBpfObject('connection-recorder.bpf.o');
}

/**
 * Whether this host can record connections, and if not, the one sentence saying why history
 * is off. It loads and attaches the program once and releases it at once (some tens of
 * milliseconds): only the kernel knows whether it accepts the program.
 */
export function probeConnectionRecorder(options: ConnectionRecorderOptions = {}): RecorderAvailability {
  const ready = prepare(options);
  if ('reason' in ready) return { available: false, reason: ready.reason };
  try {
    ready.functions.recorderClose(ready.functions.recorderOpen(ready.objectPath, options.ringRecordsPerCpu ?? defaultRingRecordsPerCpu()));
    return { available: true };
  } catch (err) {
    return { available: false, reason: explainRefusal(err) };
  }
}

/** The addon's functions and the object, or why the recorder cannot even be tried. */
function prepare(options: ConnectionRecorderOptions): { functions: NativeRecorderFunctions; objectPath: string } | { reason: string } {
  const { binding, error } = loadNativeAddon();
  if (binding === undefined) return { reason: `History is off: the native addon cannot be loaded (${error.message}).` };
  const functions = nativeRecorderFunctions();
  if (functions === undefined) return { reason: 'History is off: the native addon predates the connection recorder; rebuild it (node scripts/build-addon.mjs).' };
  const noLibbpf = functions.recorderSupport();
  if (noLibbpf !== null) return { reason: `History is off: libbpf cannot be loaded (install Debian's libbpf1): ${noLibbpf}.` };
  const objectPath = options.objectPath ?? findRecorderObject();
  if (objectPath === undefined || !existsSync(objectPath)) {
    return { reason: `History is off: the BPF object ${objectPath ?? 'native/bpf/connection-recorder.bpf.o'} is missing from the installation.` };
  }
  if (!existsSync(KERNEL_BTF)) {
    return { reason: `History is off: the kernel publishes no BTF (${KERNEL_BTF}, CONFIG_DEBUG_INFO_BTF), which the recorder needs to adapt to it.` };
  }
  return { functions, objectPath };
}

/** The one sentence for a refusal of recorderOpen. */
function explainRefusal(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  const message = err instanceof Error ? err.message : String(err);
  if (code === 'EPERM' || code === 'EACCES') {
    const mask = readEffectiveCapabilities();
    const holdsAdmin = mask !== undefined && missingCapabilities(mask, ['CAP_SYS_ADMIN']).length === 0;
    const missing = mask === undefined ? [...RECORDER_CAPABILITIES] : missingCapabilities(mask, RECORDER_CAPABILITIES);
    if (missing.length > 0 && !holdsAdmin) {
      return `History is off: the kernel refused BPF (${code}): stopd needs ${RECORDER_CAPABILITIES.join(' and ')} and lacks ${missing.join(' and ')}.`;
    }
    return `History is off: the kernel refused BPF (${code}) although stopd holds ${RECORDER_CAPABILITIES.join(' and ')}: a lockdown, a security module or a seccomp filter forbids it (${message}).`;
  }
  return `History is off: the kernel refused the connection recorder (${typeof code === 'string' ? code : 'error'}: ${message}).`;
}

/**
 * Strings the decoder has made, by a 32-bit key, so that the addresses and command names a
 * host repeats (its own addresses, its busy peers, its few clients) are formatted once rather
 * than per event. Bounded: cleared when full, so a host talking to many peers pays only the
 * formatting it paid before.
 */
class StringCache<Entry> {
  readonly #entries = new Map<number, Entry>();
  readonly #limit: number;

  constructor(limit: number) {
    this.#limit = limit;
  }

  get(key: number): Entry | undefined {
    return this.#entries.get(key);
  }

  set(key: number, entry: Entry): void {
    if (this.#entries.size >= this.#limit) this.#entries.clear();
    this.#entries.set(key, entry);
  }
}

/** IPv4 addresses by their four bytes read as one int32. */
const ipv4Strings = new StringCache<string>(4096);

/** A string decoded from 16 bytes, with the four words of those bytes. */
interface WordsEntry {
  readonly w0: number;
  readonly w1: number;
  readonly w2: number;
  readonly w3: number;
  readonly value: string;
}

/** Command names by a hash of their 16 bytes (the words are compared on a hit). */
const commStrings = new StringCache<WordsEntry>(4096);

/** IPv6 addresses (not v4-mapped) by a hash of their 16 bytes (the words are compared on a hit). */
const ipv6Strings = new StringCache<WordsEntry>(4096);

/**
 * The string of the 16 bytes at byte `at` (word `w`) from `cache`, or made by `decode` and
 * kept. The key mixes the words (rotated, so that swapped words differ); a hit counts only
 * when all four words are equal.
 */
function readWords16(views: RecordViews, at: number, cache: StringCache<WordsEntry>, decode: (bytes: Uint8Array) => string): string {
  const i32 = views.i32;
  const w = at >>> 2;
  const w0 = i32[w] ?? 0;
  const w1 = i32[w + 1] ?? 0;
  const w2 = i32[w + 2] ?? 0;
  const w3 = i32[w + 3] ?? 0;
  const key = w0 ^ ((w1 << 7) | (w1 >>> 25)) ^ ((w2 << 14) | (w2 >>> 18)) ^ ((w3 << 21) | (w3 >>> 11));
  const hit = cache.get(key);
  if (hit !== undefined && hit.w0 === w0 && hit.w1 === w1 && hit.w2 === w2 && hit.w3 === w3) return hit.value;
  const value = decode(views.bytes.subarray(at, at + 16));
  cache.set(key, { w0, w1, w2, w3, value });
  return value;
}

/** A NUL-padded comm field (16 bytes). */
function decodeComm(bytes: Uint8Array): string {
  const end = bytes.indexOf(0);
  return Buffer.from(bytes.buffer, bytes.byteOffset, end < 0 ? 16 : end).toString('utf8');
}

/** The record views decoding reads through: word reads are plain indexed loads. */
interface RecordViews {
  readonly bytes: Uint8Array;
  readonly u16: Uint16Array;
  readonly u32: Uint32Array;
  readonly i32: Int32Array;
}

/** Views of `records` (32-bit aligned, which a 120-byte record keeps for every record). */
function viewRecords(records: Uint8Array): RecordViews {
  // A Buffer from Node's pool may start anywhere: copy it once to an aligned one.
  const bytes = records.byteOffset % 4 === 0 ? records : new Uint8Array(records);
  const { buffer, byteOffset, byteLength } = bytes;
  return {
    bytes,
    u16: new Uint16Array(buffer, byteOffset, byteLength >>> 1),
    u32: new Uint32Array(buffer, byteOffset, byteLength >>> 2),
    i32: new Int32Array(buffer, byteOffset, byteLength >>> 2),
  };
}

/** The IPv4 address at byte `at` (word `w`). */
function readIpv4(views: RecordViews, at: number, w: number): string {
  const key = views.i32[w] ?? 0;
  let address = ipv4Strings.get(key);
  if (address === undefined) {
    const b = views.bytes;
    address = `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`;
    ipv4Strings.set(key, address);
  }
  return address;
}

/** The address at byte `at` (word `w`): IPv4, or IPv6 (a v4-mapped one reads as IPv4, like formatIpBytes). */
function readAddress(views: RecordViews, at: number, family: number): string {
  if (family !== 6) return readIpv4(views, at, at >>> 2);
  const b = views.bytes;
  const u32 = views.u32;
  const w = at >>> 2;
  if (u32[w] === 0 && u32[w + 1] === 0 && b[at + 8] === 0 && b[at + 9] === 0 && b[at + 10] === 0xff && b[at + 11] === 0xff) {
    return readIpv4(views, at + 12, w + 3);
  }
  return readWords16(views, at, ipv6Strings, formatIpBytes);
}

/** A socket pointer's hex, with the pointer's high word it was made with. */
interface SocketEntry {
  readonly high: number;
  readonly hex: string;
}

/**
 * Socket pointers by their low word: an `open` and its `close` name the same socket, and the
 * kernel's slab hands the same few addresses out again and again.
 */
const socketStrings = new StringCache<SocketEntry>(4096);

/** The kernel socket pointer (words `w`, `w + 1`) as lowercase hex, as `(hi).toString(16) + lo in 8 digits`. */
function readSocket(views: RecordViews, w: number): string {
  const key = views.i32[w] ?? 0;
  const high = views.u32[w + 1] ?? 0;
  const hit = socketStrings.get(key);
  if (hit !== undefined && hit.high === high) return hit.hex;
  const low = views.u32[w] ?? 0;
  const hex = high.toString(16) + low.toString(16).padStart(8, '0');
  socketStrings.set(key, { high, hex });
  return hex;
}

/** A u64 at words `w`, `w + 1` as a Number: exact below 2^53 (kernel times: 104 days of uptime in ns; beyond, off by a few ns). */
function readU64(u32: Uint32Array, w: number): number {
  return (u32[w] ?? 0) + (u32[w + 1] ?? 0) * 0x1_0000_0000;
}

/**
 * Turns the records of one `recorderRead` into events, in their order (the order the kernel made
 * them, across CPUs: the addon merges the rings by the records' numbers). Kernel times
 * (CLOCK_MONOTONIC nanoseconds) become epoch milliseconds with `epochOffsetMs`. Written for
 * speed: a connect-heavy host sends tens of thousands of records a second, and this runs on
 * the daemon's event loop. Fields are read as words of typed-array views (no Buffer method
 * calls, slices or BigInts), and the strings a host repeats (addresses, command names) come
 * from small caches: profiled, formatting them was most of the decoding.
 */
export function decodeRecorderRecords(records: Uint8Array, epochOffsetMs: number): ConnectionEvent[] {
  if (records.length % RECORD_BYTES !== 0) {
    throw new RangeError(`Cannot decode recorder records: ${records.length} bytes is not a multiple of ${RECORD_BYTES}`);
  }
  const views = viewRecords(records);
  const { bytes, u16, u32 } = views;
  const events: ConnectionEvent[] = [];
  for (let at = 0; at < bytes.length; at += RECORD_BYTES) {
    const w = at >>> 2;
    const h = at >>> 1;
    const kind = bytes[at];
    const family = bytes[at + 1] ?? 4;
    const local = { address: readAddress(views, at + 72, family), port: u16[h + 1] ?? 0 };
    const remote = { address: readAddress(views, at + 88, family), port: u16[h + 2] ?? 0 };
    const socket = readSocket(views, w + 10);
    const netns = u32[w + 8] ?? 0;
    if (kind === 2) {
      events.push({ kind: 'close', socket, closedAt: readU64(u32, w + 16) / 1e6 + epochOffsetMs, netns, local, remote });
      continue;
    }
    if (kind !== 1) throw new RangeError(`Cannot decode recorder records: unknown kind ${kind}`);
    const established = readU64(u32, w + 14);
    events.push({
      kind: 'open',
      socket,
      connectedAt: readU64(u32, w + 12) / 1e6 + epochOffsetMs,
      establishedAt: established === 0 ? null : established / 1e6 + epochOffsetMs,
      tid: u32[w + 2] ?? 0,
      pid: u32[w + 3] ?? 0,
      uid: u32[w + 4] ?? 0,
      gid: u32[w + 5] ?? 0,
      loginuid: u32[w + 6] ?? 0,
      sessionid: u32[w + 7] ?? 0,
      comm: readWords16(views, at + 104, commStrings, decodeComm),
      netns,
      local,
      remote,
    });
  }
  return events;
}

/**
 * A {@link StartConnectionRecorder} with options. Starting throws (with the sentence of
 * {@link probeConnectionRecorder} as message) when the recorder cannot run.
 */
export function createConnectionRecorderStarter(options: ConnectionRecorderOptions = {}): StartConnectionRecorder {
  const interval = options.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS;
  if (!Number.isInteger(interval) || interval < 10 || interval > 10_000) {
    throw new RangeError(`pollIntervalMs must be an integer from 10 to 10000, not ${interval}`);
  }
  const bufferRecords = options.readBufferRecords ?? DEFAULT_READ_BUFFER_RECORDS;
  if (!Number.isInteger(bufferRecords) || bufferRecords < 1 || bufferRecords > 65_536) {
    throw new RangeError(`readBufferRecords must be an integer from 1 to 65536, not ${bufferRecords}`);
  }
  const ringRecords = options.ringRecordsPerCpu ?? defaultRingRecordsPerCpu();
  if (!isRingRecordsPerCpu(ringRecords)) {
    throw new RangeError(`ringRecordsPerCpu must be a power of two from ${RING_RECORDS_MIN} to ${RING_RECORDS_MAX}, not ${ringRecords}`);
  }
  return (onEvents) => {
    const ready = prepare(options);
    if ('reason' in ready) throw new Error(ready.reason);
    let handle: RawRecorder;
    // The program's wake-ups (a ring half full) reach the poller made below.
    let onBurst = (): void => {};
    try {
      handle = ready.functions.recorderOpen(ready.objectPath, ringRecords, () => onBurst());
    } catch (err) {
      throw new Error(explainRefusal(err), { cause: err });
    }
    const running = runRecorder(ready.functions, handle, onEvents, { interval, bufferRecords });
    onBurst = running.pollNow;
    return running.recorder;
  };
}

/** Starts recording with the shipped object and the default poll interval. */
export const startConnectionRecorder: StartConnectionRecorder = (onEvents) => createConnectionRecorderStarter()(onEvents);

/** Polls an open recorder until closed. */
function runRecorder(
  functions: NativeRecorderFunctions,
  handle: RawRecorder,
  onEvents: (events: readonly ConnectionEvent[]) => void,
  options: { readonly interval: number; readonly bufferRecords: number },
): { recorder: ConnectionRecorder; pollNow: () => void } {
  const seen = { 'ring-buffer-full': 0, unattributed: 0, recursion: 0 };
  // One buffer for the life of the recorder, filled by the addon in place: a read allocates
  // and copies no batch (profiled, a fresh megabyte per read cost more in page faults than
  // the decoding).
  const buffer = new Uint8Array(options.bufferRecords * RECORD_BYTES);
  let lastRead = Date.now();
  let closed = false;

  const lossSince = (reason: RecorderLossEvent['reason'], total: number, now: number): RecorderLossEvent | undefined => {
    const count = total - seen[reason];
    if (count <= 0) return undefined;
    seen[reason] = total;
    // The kernel only counts: the loss happened between the previous read and this one.
    return { kind: 'loss', reason, count, from: lastRead, to: now };
  };

  /**
   * Reads what the kernel has, with the losses counted since the previous read after the
   * records; `last` before closing (nothing is left waiting for a later read).
   */
  const read = (last = false): ConnectionEvent[] => {
    let events: ConnectionEvent[] | undefined;
    let raw: RawRecorderRead;
    // A full buffer means more may wait: read until none waits (at most what the rings held).
    do {
      raw = functions.recorderRead(handle, buffer, last);
      if (raw.bytes === 0) break;
      const decoded = decodeRecorderRecords(buffer.subarray(0, raw.bytes), raw.epochOffsetMs);
      if (events === undefined) events = decoded;
      else for (const event of decoded) events.push(event);
    } while (raw.bytes + RECORD_BYTES > buffer.length);
    events ??= [];
    const now = Date.now();
    // Losses were counted before the last drain (bpf_recorder_napi.c), so they belong to this
    // window, and come after every record drained before them.
    for (const loss of [lossSince('ring-buffer-full', raw.ringFull, now), lossSince('unattributed', raw.unattributed, now), lossSince('recursion', raw.recursion, now)]) {
      if (loss !== undefined) events.push(loss);
    }
    lastRead = now;
    return events;
  };

  const stop = (): void => {
    closed = true;
    clearTimeout(timer);
    functions.recorderClose(handle);
  };

  // Every `interval`, and at once when the program says a ring is half full (a burst): the
  // next timed poll then comes a whole interval later.
  const poll = (): void => {
    if (closed) return;
    clearTimeout(timer);
    let events: ConnectionEvent[];
    try {
      events = read();
    } catch (err) {
      // A read that fails once fails for good (the handle is broken): stop rather than spin.
      stop();
      process.emitWarning(`stopd: the connection recorder stopped: ${err instanceof Error ? err.message : String(err)}`);
      return;
    }
    timer = setTimeout(poll, options.interval);
    timer.unref();
    if (events.length > 0) onEvents(events);
  };
  let timer = setTimeout(poll, options.interval);
  timer.unref();

  const recorder: ConnectionRecorder = {
    close(): Promise<void> {
      if (closed) return Promise.resolve();
      let events: ConnectionEvent[];
      try {
        events = read(true);
      } catch (err) {
        return Promise.reject(err instanceof Error ? err : new Error(String(err)));
      } finally {
        stop();
      }
      if (events.length > 0) onEvents(events);
      return Promise.resolve();
    },
  };
  return { recorder, pollNow: poll };
}
