/**
 * stopd's process/IPC resolution timed in this process, with the daemon's own code: the
 * exact socket lookup, a fresh host view over one persistent descriptor index (refreshed
 * incrementally at each resolution, or one /proc scan per resolution when the addon has no
 * index) and `resolveClosure`, as the daemon's EvidenceCollector does for every SV request.
 * This isolates the part the C floor answers from what surrounds it in a request (connection,
 * ledger, record building and writing).
 */
import { createLinuxHostView, readEphemeralPorts } from '../../src/host/linux-host.js';
import { createLinuxSocketTable } from '../../src/host/linux-sockets.js';
import { createPersistentFdIndex } from '../../src/host/persistent-fd-index.js';
import type { Endpoint } from '../../src/host/types.js';
import { resolveClosure } from '../../src/trace/index.js';
import { summarize, type Summary } from './stats.js';

/** Milliseconds per resolution, and what the closure held. */
export interface ClosureTiming {
  readonly ms: Summary;
  readonly processes: number;
  readonly upstream: number;
}

/**
 * Resolves the closure of the connection `local -> remote` `iterations` times (after 3 warm-up
 * runs). `index: 'incremental'` is the daemon's way (one descriptor index refreshed at each
 * resolution); `'full'` scans every `/proc/PID/fd` at each resolution, like the C floor, so
 * that ratio compares the same work in JavaScript and in C.
 */
export function timeClosure(local: Endpoint, remote: Endpoint, iterations: number, index: 'incremental' | 'full'): ClosureTiming {
  const sockets = createLinuxSocketTable({ log: () => undefined });
  // As the daemon opens them: leaving this process out, as stopd leaves itself out.
  const fdIndex = index === 'incremental' ? createPersistentFdIndex({ skipSelf: true, separateTable: false }) : undefined;
  const samples: number[] = [];
  let processes = 0;
  let upstream = 0;
  try {
    for (let i = -3; i < iterations; i += 1) {
      const started = performance.now();
      const socket = sockets.findTcp(local, remote);
      if (socket === undefined) throw new Error(`No connection ${local.address}:${local.port} -> ${remote.address}:${remote.port}`);
      const view = createLinuxHostView(sockets, { hideSelf: true, ...(fdIndex === undefined ? {} : { fdIndex }) });
      const ephemeralPorts = readEphemeralPorts();
      const closure = resolveClosure(view, { socket, ...(ephemeralPorts === undefined ? {} : { ephemeralPorts }) });
      const elapsed = performance.now() - started;
      if (i >= 0) samples.push(elapsed);
      processes = closure.processes.length;
      upstream = closure.upstream.length;
    }
  } finally {
    fdIndex?.close();
  }
  return { ms: summarize(samples), processes, upstream };
}
