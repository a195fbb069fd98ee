/**
 * Issue 13: SV time when N processes share one pipe with the holder of the queried connection
 * (a pre-fork server's inherited log pipe, or an attacker's crowd). Before issue 13 the
 * closure linked the holders pairwise: N = 1 000 took 23 s and 890 MB. Every crowd is alive
 * at once and the sizes are asked in turn, round after round, so the ratios compare runs side
 * by side on the same (noisy) machine. Target: growth no worse than linear in N.
 */
import { createServer, type Server } from 'node:net';
import { startCrowd, type Crowd } from '../../test/support/crowd.js';
import { LIFT_REQUESTER_LIMITS, readMemory, startStopd, type BenchStopd } from '../lib/processes.js';
import { repeated, type Repeated } from '../lib/stats.js';
import { timeSvRequest } from '../lib/sv-request.js';

export interface SharedPipeResult {
  readonly skipped?: string;
  readonly rounds: number;
  /** Per crowd size: SV request written -> token read (ms). */
  readonly sizes: readonly { readonly processes: number; readonly svMs: Repeated }[];
  readonly stopdMemory?: { vmHWMkB: number; vmRSSkB: number };
}

export async function benchSharedPipe(options: { sizes: readonly number[]; rounds: number; extraArgs?: readonly string[] }): Promise<SharedPipeResult> {
  if (process.getuid?.() !== 0) return { skipped: 'needs root: reads /proc of every process', rounds: 0, sizes: [] };
  let stopd: BenchStopd | undefined;
  let server: Server | undefined;
  const crowds: Crowd[] = [];
  try {
    stopd = await startStopd({ args: [...LIFT_REQUESTER_LIMITS, ...(options.extraArgs ?? [])] });
    const listener = createServer((socket) => socket.on('error', () => undefined));
    server = listener;
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.2', resolve));
    const address = listener.address();
    const port = typeof address === 'object' && address !== null ? address.port : 0;
    for (const count of options.sizes) crowds.push(await startCrowd({ mode: 'pipe', count, connectTo: { host: '127.0.0.2', port }, timeoutMs: 600_000 }));
    const runs = options.sizes.map(() => [] as number[]);
    // Round 0 warms up: the daemon's descriptor index reads the new processes once.
    for (let round = 0; round <= options.rounds; round += 1) {
      for (const [index, crowd] of crowds.entries()) {
        const ms = await timeSvRequest(stopd, crowd.localPort, port);
        if (round > 0) runs[index]?.push(ms);
      }
    }
    return {
      rounds: options.rounds,
      sizes: options.sizes.map((processes, index) => ({ processes, svMs: repeated(runs[index] ?? []) })),
      stopdMemory: readMemory(stopd.pid),
    };
  } finally {
    for (const crowd of crowds) crowd.kill();
    server?.close();
    await stopd?.stop();
  }
}
