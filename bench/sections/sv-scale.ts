/**
 * Issue 14, "keep SV flat as the host grows": SV time for one small structure while the host
 * also runs 10 000 idle processes, or 10 000 threads in 20 processes, that share nothing with
 * it, against the same host without them. Two daemons run side by side and are asked in
 * turn, a block of requests each: one whose descriptor index learns which processes ran from the
 * BPF run tracker (`--process-index auto`, the default), one with `--process-index schedstat`,
 * whose index reads a schedstat file per thread instead (as before issue 14). Both run with
 * `--history off`: the recorder would otherwise capture every connection of the host on the
 * same analysis thread, and a busy neighbour would measure that instead. Target for the run
 * tracker: ≤ 1.3× the baseline.
 */
import { readdirSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';
import { createServer, type Server } from 'node:net';
import { startCrowd, type Crowd } from '../../test/support/crowd.js';
import { compileC, LIFT_REQUESTER_LIMITS, startReadyProgram, startStopd, type BenchStopd, type Stoppable } from '../lib/processes.js';
import { repeated, summarize, type Repeated } from '../lib/stats.js';
import { timeSvRequest } from '../lib/sv-request.js';

/** Pause before each daemon's block of requests, for the other daemon's work to end. */
const SETTLE_MS = 500;

/** The two index designs compared. */
export const SV_SCALE_DAEMONS = ['run tracker', 'schedstat'] as const;

export interface SvScaleResult {
  readonly skipped?: string;
  readonly rounds: number;
  /** SV requests per daemon per round. */
  readonly perRound: number;
  /** Processes on the host at the baseline (the machine's own). */
  readonly baselineProcesses: number;
  /** Per load (`baseline` first): per daemon, the p50 of each round's requests (ms). */
  readonly loads: readonly {
    readonly name: string;
    readonly daemons: readonly { readonly daemon: (typeof SV_SCALE_DAEMONS)[number]; readonly svP50Ms: Repeated }[];
  }[];
  /** Whether the run tracker was in use in the first daemon (its start-up log says when not). */
  readonly runTrackerActive: boolean;
}

/** Runs the section: `rounds` rounds of `perRound` requests to each daemon in turn, per load. */
export async function benchSvScale(options: { rounds: number; perRound: number; processes: number; threadProcesses: number; threadsEach: number }): Promise<SvScaleResult> {
  const empty = { rounds: 0, perRound: 0, baselineProcesses: 0, loads: [], runTrackerActive: false };
  if (process.getuid?.() !== 0) return { skipped: 'needs root: reads /proc of every process, and the run tracker is BPF', ...empty };
  const daemons: BenchStopd[] = [];
  let server: Server | undefined;
  let holder: Crowd | undefined;
  try {
    const tracked = await startStopd({ args: [...LIFT_REQUESTER_LIMITS, '--history', 'off'] });
    daemons.push(tracked);
    daemons.push(await startStopd({ args: [...LIFT_REQUESTER_LIMITS, '--history', 'off', '--process-index', 'schedstat'] }));
    const listener = createServer((socket) => socket.on('error', () => undefined));
    server = listener;
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.2', resolve));
    const address = listener.address();
    const port = typeof address === 'object' && address !== null ? address.port : 0;
    // The queried structure: a holder and one child sharing a pipe, connected to the listener.
    holder = await startCrowd({ mode: 'pipe', count: 1, connectTo: { host: '127.0.0.2', port }, timeoutMs: 60_000 });
    const local = holder.localPort;

    // Per daemon, the p50 of every baseline round: the baseline is measured before, between and
    // after the loads and pooled, so that the shared machine drifting over the section (minutes)
    // does not pass for growth.
    const baselineRuns = SV_SCALE_DAEMONS.map(() => [] as number[]);
    const measure = async (name: string, runs = SV_SCALE_DAEMONS.map(() => [] as number[])): Promise<SvScaleResult['loads'][number]> => {
      // Round 0 warms up: each index reads the new processes once. Within a round each daemon
      // gets its requests in one block, after a pause: a schedstat refresh of 10 000 processes
      // leaves work behind it (its record, its garbage) that would land on the other daemon's
      // requests if they alternated one by one on two CPUs.
      for (let round = 0; round <= options.rounds; round += 1) {
        for (const [index, stopd] of daemons.entries()) {
          await delay(SETTLE_MS);
          const samples: number[] = [];
          for (let n = 0; n < options.perRound; n += 1) samples.push(await timeSvRequest(stopd, local, port, { timeoutMs: 60_000 }));
          if (round > 0) runs[index]?.push(summarize(samples).p50);
        }
      }
      return { name, daemons: SV_SCALE_DAEMONS.map((daemon, index) => ({ daemon, svP50Ms: repeated(runs[index] ?? []) })) };
    };
    const baselineProcesses = readdirSync('/proc').filter((name) => /^\d+$/.test(name)).length;
    const loads: SvScaleResult['loads'][number][] = [];
    const baseline = async (): Promise<void> => {
      await measure('baseline', baselineRuns);
    };
    const withLoad = async (name: string, start: () => Promise<Stoppable>): Promise<void> => {
      const load = await start();
      try {
        loads.push(await measure(name));
      } finally {
        await load.stop();
      }
      await baseline();
    };
    await baseline();
    const crowd = await compileC('crowd');
    await withLoad(`+ ${options.processes} idle processes`, () => startReadyProgram([crowd, String(options.processes), '/etc/hostname'], `crowd of ${options.processes}`, 300_000));
    await withLoad(`+ ${options.threadProcesses * options.threadsEach} threads in ${options.threadProcesses} processes`, () =>
      startReadyProgram([crowd, String(options.threadProcesses), '/etc/hostname', String(options.threadsEach)], 'threads', 300_000),
    );
    // The analysis thread says so at its start when the run tracker did not load.
    const runTrackerActive = !tracked.stderr().includes('run tracker is not in use');
    loads.unshift({ name: 'baseline', daemons: SV_SCALE_DAEMONS.map((daemon, index) => ({ daemon, svP50Ms: repeated(baselineRuns[index] ?? []) })) });
    return { rounds: options.rounds, perRound: options.perRound, baselineProcesses, loads, runTrackerActive };
  } finally {
    holder?.kill();
    server?.close();
    for (const stopd of daemons) await stopd.stop();
  }
}
