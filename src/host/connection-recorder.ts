/**
 * The eBPF connection recorder (issue 14): the Linux implementation of the contract in
 * connection-events.ts. The kernel half is native/bpf/connection-recorder.bpf.c (shipped
 * compiled, CO-RE), loaded by the addon's bpf_recorder part with libbpf.so.1 opened at run
 * time; this module says whether it can run here and turns its records into events.
 *
 * Reading is polled: the BPF program never wakes a reader, and a timer drains the ring buffer
 * every `pollIntervalMs` (one system call per poll whatever the connect rate), so a
 * connect-heavy host pays no context switch into the daemon per connection.
 */
import { existsSync } from 'node:fs';
import { formatIpBytes } from '../protocol/index.js';
import { missingCapabilities, readEffectiveCapabilities, RECORDER_CAPABILITIES } from './capabilities.js';
import type {
  ConnectionEvent,
  ConnectionRecorder,
  RecorderAvailability,
  RecorderLossEvent,
  StartConnectionRecorder,
} from './connection-events.js';
import { findBpfObject, loadNativeAddon, nativeRecorderFunctions, type NativeRecorderFunctions, type RawRecorder } from './native-addon.js';

/** Bytes per record: `struct record` of the BPF program (checked there by a static assertion). */
export const RECORD_BYTES = 120;

/** Where the kernel publishes its own BTF, which CO-RE relocates the program against. */
const KERNEL_BTF = '/sys/kernel/btf/vmlinux';

/** How often the ring buffer is drained by default. */
export const DEFAULT_POLL_INTERVAL_MS = 200;

/** Options of {@link probeConnectionRecorder} and {@link createConnectionRecorderStarter}. */
export interface ConnectionRecorderOptions {
  /** The BPF object to load; default the shipped native/bpf/connection-recorder.bpf.o. */
  readonly objectPath?: string;
  /** Milliseconds between two drains of the ring buffer (10 to 10 000); default 200. */
  readonly pollIntervalMs?: number;
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
    ready.functions.recorderClose(ready.functions.recorderOpen(ready.objectPath));
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

/** The NUL-padded comm field at `at` (16 bytes). */
function readComm(records: Buffer, at: number): string {
  const end = records.indexOf(0, at);
  return records.toString('utf8', at, end < 0 || end > at + 16 ? at + 16 : end);
}

/** The address at `at`: IPv4 formatted inline (the common case, and decoding runs per event). */
function readAddress(records: Buffer, at: number, family: number): string {
  if (family !== 6) return `${records[at]}.${records[at + 1]}.${records[at + 2]}.${records[at + 3]}`;
  return formatIpBytes(records.subarray(at, at + 16));
}

/** A u64 as a Number: exact below 2^53 (kernel times: 104 days of uptime in ns; beyond, off by a few ns). */
function readU64(records: Buffer, at: number): number {
  return records.readUInt32LE(at) + records.readUInt32LE(at + 4) * 0x1_0000_0000;
}

/**
 * Turns the records of one `recorderRead` into events, in kernel order. Kernel times
 * (CLOCK_MONOTONIC nanoseconds) become epoch milliseconds with `epochOffsetMs`. Written for
 * speed (no per-record slices or BigInts): a connect-heavy host sends tens of thousands of
 * records a second, and this runs on the daemon's event loop.
 */
export function decodeRecorderRecords(records: Buffer, epochOffsetMs: number): ConnectionEvent[] {
  if (records.length % RECORD_BYTES !== 0) {
    throw new RangeError(`Cannot decode recorder records: ${records.length} bytes is not a multiple of ${RECORD_BYTES}`);
  }
  const events: ConnectionEvent[] = [];
  for (let at = 0; at < records.length; at += RECORD_BYTES) {
    const kind = records[at];
    const family = records[at + 1] ?? 4;
    const local = { address: readAddress(records, at + 72, family), port: records.readUInt16LE(at + 2) };
    const remote = { address: readAddress(records, at + 88, family), port: records.readUInt16LE(at + 4) };
    const socket = records.readUInt32LE(at + 44).toString(16) + records.readUInt32LE(at + 40).toString(16).padStart(8, '0');
    const netns = records.readUInt32LE(at + 32);
    if (kind === 2) {
      events.push({ kind: 'close', socket, closedAt: readU64(records, at + 64) / 1e6 + epochOffsetMs, netns, local, remote });
      continue;
    }
    if (kind !== 1) throw new RangeError(`Cannot decode recorder records: unknown kind ${kind}`);
    const established = readU64(records, at + 56);
    events.push({
      kind: 'open',
      socket,
      connectedAt: readU64(records, at + 48) / 1e6 + epochOffsetMs,
      establishedAt: established === 0 ? null : established / 1e6 + epochOffsetMs,
      tid: records.readUInt32LE(at + 8),
      pid: records.readUInt32LE(at + 12),
      uid: records.readUInt32LE(at + 16),
      gid: records.readUInt32LE(at + 20),
      loginuid: records.readUInt32LE(at + 24),
      sessionid: records.readUInt32LE(at + 28),
      comm: readComm(records, at + 104),
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
  return (onEvents) => {
    const ready = prepare(options);
    if ('reason' in ready) throw new Error(ready.reason);
    let handle: RawRecorder;
    try {
      handle = ready.functions.recorderOpen(ready.objectPath);
    } catch (err) {
      throw new Error(explainRefusal(err), { cause: err });
    }
    return runRecorder(ready.functions, handle, onEvents, interval);
  };
}

/** Starts recording with the shipped object and the default poll interval. */
export const startConnectionRecorder: StartConnectionRecorder = (onEvents) => createConnectionRecorderStarter()(onEvents);

/** Polls an open recorder until closed. */
function runRecorder(
  functions: NativeRecorderFunctions,
  handle: RawRecorder,
  onEvents: (events: readonly ConnectionEvent[]) => void,
  interval: number,
): ConnectionRecorder {
  const seen = { 'ring-buffer-full': 0, unattributed: 0 };
  let lastRead = Date.now();
  let closed = false;

  const lossSince = (reason: RecorderLossEvent['reason'], total: number, now: number): RecorderLossEvent | undefined => {
    const count = total - seen[reason];
    if (count <= 0) return undefined;
    seen[reason] = total;
    // The kernel only counts: the loss happened between the previous read and this one.
    return { kind: 'loss', reason, count, from: lastRead, to: now };
  };

  /** Reads what the kernel has, with the losses counted since the previous read after the records. */
  const read = (): ConnectionEvent[] => {
    const raw = functions.recorderRead(handle);
    const now = Date.now();
    const events = decodeRecorderRecords(raw.records, raw.epochOffsetMs);
    // Losses were counted before the records were drained (bpf_recorder_napi.c), so they
    // belong to this window.
    for (const loss of [lossSince('ring-buffer-full', raw.ringFull, now), lossSince('unattributed', raw.unattributed, now)]) {
      if (loss !== undefined) events.push(loss);
    }
    lastRead = now;
    return events;
  };

  const stop = (): void => {
    closed = true;
    clearInterval(timer);
    functions.recorderClose(handle);
  };

  const timer = setInterval(() => {
    let events: ConnectionEvent[];
    try {
      events = read();
    } catch (err) {
      // A read that fails once fails for good (the handle is broken): stop rather than spin.
      stop();
      process.emitWarning(`stopd: the connection recorder stopped: ${err instanceof Error ? err.message : String(err)}`);
      return;
    }
    if (events.length > 0) onEvents(events);
  }, interval);
  timer.unref();

  return {
    close(): Promise<void> {
      if (closed) return Promise.resolve();
      let events: ConnectionEvent[];
      try {
        events = read();
      } catch (err) {
        return Promise.reject(err instanceof Error ? err : new Error(String(err)));
      } finally {
        stop();
      }
      if (events.length > 0) onEvents(events);
      return Promise.resolve();
    },
  };
}
