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
import { join } from 'node:path';
import { formatIpBytes } from '../protocol/index.js';
import { missingCapabilities, readEffectiveCapabilities, RECORDER_CAPABILITIES } from './capabilities.js';
import type {
  ConnectionEvent,
  ConnectionRecorder,
  RecorderAvailability,
  RecorderLossEvent,
  StartConnectionRecorder,
} from './connection-events.js';
import { findPackageRoot, loadNativeAddon, nativeRecorderFunctions, type NativeRecorderFunctions, type RawRecorder } from './native-addon.js';

/** Bytes per record: `struct record` of the BPF program (checked there by a static assertion). */
export const RECORD_BYTES = 120;

/** Where the kernel publishes its own BTF, which CO-RE relocates the program against. */
const KERNEL_BTF = '/sys/kernel/btf/vmlinux';

/** How often the ring buffer is drained by default. */
export const DEFAULT_POLL_INTERVAL_MS = 200;

/** The shipped BPF object, relative to the package root. */
const OBJECT_PATH = join('native', 'bpf', 'connection-recorder.bpf.o');

/** Options of {@link probeConnectionRecorder} and {@link createConnectionRecorderStarter}. */
export interface ConnectionRecorderOptions {
  /** The BPF object to load; default the shipped native/bpf/connection-recorder.bpf.o. */
  readonly objectPath?: string;
  /** Milliseconds between two drains of the ring buffer (10 to 10 000); default 200. */
  readonly pollIntervalMs?: number;
}

/** The shipped BPF object's path, or undefined when the package root cannot be found. */
export function findRecorderObject(): string | undefined {
  const root = findPackageRoot();
  return root === undefined ? undefined : join(root, OBJECT_PATH);
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
    return { reason: `History is off: the BPF object ${objectPath ?? OBJECT_PATH} is missing from the installation.` };
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

/** Reads a fixed-size NUL-padded comm field. */
function readComm(bytes: Buffer): string {
  const end = bytes.indexOf(0);
  return bytes.toString('utf8', 0, end < 0 ? bytes.length : end);
}

/**
 * Turns the records of one `recorderRead` into events, in kernel order. Kernel times
 * (CLOCK_MONOTONIC nanoseconds) become epoch milliseconds with `epochOffsetMs`.
 */
export function decodeRecorderRecords(records: Buffer, epochOffsetMs: number): ConnectionEvent[] {
  if (records.length % RECORD_BYTES !== 0) {
    throw new RangeError(`Cannot decode recorder records: ${records.length} bytes is not a multiple of ${RECORD_BYTES}`);
  }
  const events: ConnectionEvent[] = [];
  const toEpoch = (ns: bigint): number => Number(ns) / 1e6 + epochOffsetMs;
  for (let at = 0; at < records.length; at += RECORD_BYTES) {
    const r = records.subarray(at, at + RECORD_BYTES);
    const kind = r.readUInt8(0);
    const size = r.readUInt8(1) === 6 ? 16 : 4;
    const local = { address: formatIpBytes(r.subarray(72, 72 + size)), port: r.readUInt16LE(2) };
    const remote = { address: formatIpBytes(r.subarray(88, 88 + size)), port: r.readUInt16LE(4) };
    const socket = r.readBigUInt64LE(40).toString(16);
    const netns = r.readUInt32LE(32);
    if (kind === 2) {
      events.push({ kind: 'close', socket, closedAt: toEpoch(r.readBigUInt64LE(64)), netns, local, remote });
      continue;
    }
    if (kind !== 1) throw new RangeError(`Cannot decode recorder records: unknown kind ${kind}`);
    const established = r.readBigUInt64LE(56);
    events.push({
      kind: 'open',
      socket,
      connectedAt: toEpoch(r.readBigUInt64LE(48)),
      establishedAt: established === 0n ? null : toEpoch(established),
      tid: r.readUInt32LE(8),
      pid: r.readUInt32LE(12),
      uid: r.readUInt32LE(16),
      gid: r.readUInt32LE(20),
      loginuid: r.readUInt32LE(24),
      sessionid: r.readUInt32LE(28),
      comm: readComm(r.subarray(104, 120)),
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
