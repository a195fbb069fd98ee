/**
 * Item 3 of issue 13: ID latency while SV requests arrive back to back (one at a time, each
 * sent as soon as the previous one is answered), against the same daemon idle; for analyses in
 * their worker thread (the default) and on the event loop (`--inline-analyses`, the design
 * before), both daemons running side by side, interleaved per round (ABAB, order alternating).
 *
 * Layout (all loopback): the ID requests ask from 127.0.0.1 about a held connection
 * (startQueriedConnection). The SV requests ask from 127.0.0.2 about a connection to a
 * listener of this process on 127.0.0.2, held by the first process of a detached pipeline
 * `sleep | cat | ... | cat`: each SV analysis follows the pipes through every process of it,
 * which costs tens of milliseconds of CPU or more (the SV latency is reported beside).
 */
import { setTimeout as delay } from 'node:timers/promises';
import { listen, type TestListener } from '../../test/support/peers.js';
import { descendantsOf, startDetached, waitFor, type DetachedProcess } from '../../test/support/structures.js';
import type { LoadResult } from '../lib/load-client.js';
import { LIFT_REQUESTER_LIMITS, runIdLoad, runLoad, startLoad, startQueriedConnection, startStopd, type BenchStopd, type Stoppable } from '../lib/processes.js';
import { repeated, type Repeated } from '../lib/stats.js';

const TOKEN = '^\\d+,\\d+:USERID:OTHER:[0-9a-f]{64}$';

/** Where a variant's store lives: the root file system (as deployed), or tmpfs (no flush to wait for). */
export type BurstStore = 'disk' | 'tmpfs';

/** One design and store: ID latency idle and during the SV burst, and the ratios per round. */
export interface IdDuringSvCell {
  readonly design: 'worker' | 'inline';
  readonly store: BurstStore;
  readonly idle: { readonly p50Ms: Repeated; readonly p99Ms: Repeated; readonly requests: number };
  readonly burst: { readonly p50Ms: Repeated; readonly p99Ms: Repeated; readonly requests: number };
  /** Burst ÷ idle of the same round. */
  readonly p50Ratio: Repeated;
  readonly p99Ratio: Repeated;
  /** SV requests answered per second during the burst, and their latency. */
  readonly svPerSecond: Repeated;
  readonly svP50Ms: Repeated;
  readonly failed: number;
  readonly failures: readonly string[];
}

export interface IdDuringSvResult {
  readonly skipped?: string;
  readonly durationMs: number;
  readonly rounds: number;
  /** Processes in each SV closure (the pipeline). */
  readonly processes: number;
  readonly cells: readonly IdDuringSvCell[];
}

/** Starts the pipeline holding a connection to `listener`; resolves with it and the SV line about that connection. */
async function startPipeline(listener: TestListener, length: number): Promise<{ shell: DetachedProcess; line: string }> {
  const cats = Array.from({ length: length - 1 }, () => 'cat 3>&-').join(' | ');
  const shell = await startDetached(['bash', '-c', `exec 3<>/dev/tcp/127.0.0.2/${listener.port}; sleep 600 | ${cats} >/dev/null`]);
  try {
    await waitFor(`a pipeline of ${length} processes`, () => descendantsOf(shell.pid).length >= length, { timeoutMs: 60_000 });
    const accepted = await listener.nextAccepted(10_000);
    return { shell, line: `${accepted.remotePort ?? 0},${listener.port}:SV` };
  } catch (error) {
    shell.kill();
    throw error;
  }
}

/**
 * Runs item 3; the pipeline has `processes` processes. With a store on tmpfs too, the
 * difference between the two stores is what the disk adds: the ledger flush of each ID reply
 * waits behind the SV records' flushes on a shared file system, whichever thread analyses.
 */
export async function benchIdDuringSv(options: {
  durationMs: number;
  rounds: number;
  processes: number;
  /** Store variants to run, each with both designs. */
  stores: readonly BurstStore[];
}): Promise<IdDuringSvResult> {
  const base = { durationMs: options.durationMs, rounds: options.rounds, processes: options.processes, cells: [] };
  if (process.getuid?.() !== 0) return { ...base, skipped: 'needs root (reads /proc/PID/fd of every process)' };
  const started: Stoppable[] = [];
  let listener: TestListener | undefined;
  let pipeline: DetachedProcess | undefined;
  try {
    const idLine = await startQueriedConnection(started);
    listener = await listen('127.0.0.2');
    const sv = await startPipeline(listener, options.processes);
    pipeline = sv.shell;
    // Generous limits: the analysis queue never refuses here (one SV at a time).
    const daemons: { design: 'worker' | 'inline'; store: BurstStore; key: string; stopd: BenchStopd }[] = [];
    for (const store of options.stores) {
      for (const design of ['worker', 'inline'] as const) {
        const stopd = await startStopd({ args: [...LIFT_REQUESTER_LIMITS, ...(design === 'inline' ? ['--inline-analyses'] : [])], ...(store === 'tmpfs' ? { storeBase: '/dev/shm' } : {}) });
        started.push(stopd);
        daemons.push({ design, store, key: `${design}/${store}`, stopd });
        // The first SV fills the descriptor index; it is not measured.
        const probe = await runLoad({ host: stopd.host, port: stopd.port, localAddress: '127.0.0.2', line: sv.line, expect: TOKEN, mode: 'closed', count: 2, timeoutMs: 120_000 });
        if (probe.ok !== 2) throw new Error(`stopd (${design}, ${store}) does not answer ${sv.line} with a token: ${probe.failures.join('; ')}`);
      }
    }
    const runs = new Map<string, { idle: LoadResult[]; burst: LoadResult[]; sv: LoadResult[] }>();
    for (let round = 0; round < options.rounds; round += 1) {
      const order = round % 2 === 0 ? daemons : [...daemons].reverse();
      for (const { key, stopd } of order) {
        const runsOf = runs.get(key) ?? { idle: [], burst: [], sv: [] };
        runs.set(key, runsOf);
        const idLoad = () =>
          runIdLoad({ host: stopd.host, port: stopd.port, localAddress: '127.0.0.1', line: idLine, expect: TOKEN, concurrency: 1, durationMs: options.durationMs, warmup: 20 });
        const phases = round % 2 === 0 ? (['idle', 'burst'] as const) : (['burst', 'idle'] as const);
        for (const phase of phases) {
          if (phase === 'idle') {
            runsOf.idle.push(await idLoad());
            continue;
          }
          const burst = startLoad({
            host: stopd.host,
            port: stopd.port,
            localAddress: '127.0.0.2',
            line: sv.line,
            expect: TOKEN,
            mode: 'closed',
            concurrency: 1,
            durationMs: options.durationMs + 60_000,
            timeoutMs: 120_000,
          });
          // Let the burst start (its load generator is a Node process) before ID is measured.
          await delay(500);
          const ids = await idLoad();
          burst.stop();
          runsOf.burst.push(ids);
          runsOf.sv.push(await burst.result);
        }
      }
    }
    const cells: IdDuringSvCell[] = [];
    for (const { design, store, key } of daemons) {
      const r = runs.get(key) ?? { idle: [], burst: [], sv: [] };
      const all = [...r.idle, ...r.burst, ...r.sv];
      cells.push({
        design,
        store,
        idle: { p50Ms: repeated(r.idle.map((x) => x.latency.p50)), p99Ms: repeated(r.idle.map((x) => x.latency.p99)), requests: sum(r.idle.map((x) => x.ok)) },
        burst: { p50Ms: repeated(r.burst.map((x) => x.latency.p50)), p99Ms: repeated(r.burst.map((x) => x.latency.p99)), requests: sum(r.burst.map((x) => x.ok)) },
        p50Ratio: repeated(r.burst.map((x, i) => x.latency.p50 / (r.idle[i]?.latency.p50 ?? Number.NaN))),
        p99Ratio: repeated(r.burst.map((x, i) => x.latency.p99 / (r.idle[i]?.latency.p99 ?? Number.NaN))),
        svPerSecond: repeated(r.sv.map((x) => x.perSecond)),
        svP50Ms: repeated(r.sv.map((x) => x.latency.p50)),
        failed: sum(all.map((x) => x.failed)),
        failures: [...new Set(all.flatMap((x) => x.failures))].slice(0, 5),
      });
    }
    return { ...base, cells };
  } finally {
    pipeline?.kill();
    for (const one of started.reverse()) await one.stop();
    await listener?.close();
  }
}

function sum(values: readonly number[]): number {
  return values.reduce((total, value) => total + value, 0);
}
