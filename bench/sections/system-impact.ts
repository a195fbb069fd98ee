/**
 * Item 4 of issue 6 (paper 5.2, Table V): how much a CPU- and memory-bound program slows down
 * while stopd serves SV requests about the figure 7 structure at a steady rate.
 *
 * The paper's machine had one CPU. To ask the same question on a multi-core machine, the
 * program and stopd (every thread) are pinned to the same CPU; the load generator runs on
 * another one, so its own cost (a client's) is not charged to the daemon. Runs alternate solo
 * and loaded, each loaded run against the median of the solo runs of the same round.
 */
import { cpus } from 'node:os';
import { createPreviousHost } from '../../test/support/previous-host.js';
import { listen } from '../../test/support/peers.js';
import { freeFixedPort } from '../../test/support/structures.js';
import { startFigure7 } from '../lib/figure7.js';
import { compileC, LIFT_REQUESTER_LIMITS, pin, readMemory, runJson, startLoad, startStopd } from '../lib/processes.js';
import { repeated, type Repeated } from '../lib/stats.js';

export interface ImpactRow {
  readonly perMinute: number;
  /** Solo time / loaded time, percent. */
  readonly percentOfSolo: Repeated;
  readonly requestsServed: number;
  readonly failed: number;
  readonly failures: readonly string[];
  /** SV latency under this load (ms, median of the rounds' p50 and p99). */
  readonly p50Ms: Repeated;
  readonly p99Ms: Repeated;
}

export interface SystemImpactResult {
  readonly skipped?: string;
  readonly pinned: string;
  readonly rounds: number;
  readonly soloSeconds: Repeated;
  readonly rows: readonly ImpactRow[];
  readonly stopdMemory: { vmHWMkB: number; vmRSSkB: number };
}

export async function benchSystemImpact(options: { rates: readonly number[]; rounds: number; targetSeconds: number }): Promise<SystemImpactResult | { skipped: string }> {
  if (process.getuid?.() !== 0) return { skipped: 'needs root: the figure 7 structure has a network-namespace previous hop' };
  if (cpus().length < 2) return { skipped: 'needs two CPUs: one shared by the program and stopd, one for the load generator' };
  const membench = await compileC('membench');
  const previous = await createPreviousHost();
  const next = await listen('127.0.0.2');
  const stopd = await startStopd({ args: LIFT_REQUESTER_LIMITS });
  const port = await freeFixedPort();
  const structure = await startFigure7({ bind: previous.hostAddress, port, next: { host: '127.0.0.2', port: next.port } });
  try {
    await pin(stopd.pid, '0');
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        await previous.connect(port);
        break;
      } catch (error) {
        if (Date.now() > deadline) throw error;
      }
    }
    const accepted = await next.nextAccepted(10_000);
    const line = `${accepted.remotePort ?? 0},${next.port}:SV`;

    const runProgram = async (rounds: number): Promise<number> =>
      (await runJson<{ seconds: number }>(['taskset', '-c', '0', membench, String(rounds)])).seconds;
    // Calibrate: rounds for about `targetSeconds` solo (from a probe of about a second).
    const probe = await runProgram(200);
    const rounds = Math.max(20, Math.round((200 * options.targetSeconds) / probe));

    const solos: number[] = [];
    const perRate = new Map<number, { ratios: number[]; served: number; failed: number; failures: string[]; p50: number[]; p99: number[] }>();
    for (let round = 0; round < options.rounds; round += 1) {
      const roundSolos = [await runProgram(rounds)];
      const loaded = new Map<number, number>();
      for (const perMinute of options.rates) {
        const loadRun = startLoad(
          {
            host: stopd.host,
            port: stopd.port,
            localAddress: '127.0.0.2',
            line,
            expect: '^\\d+,\\d+:USERID:OTHER:[0-9a-f]{64}$',
            mode: 'open',
            ratePerSec: perMinute / 60,
            // The load outlasts the program even if it halves its speed.
            durationMs: options.targetSeconds * 2500,
            timeoutMs: 30_000,
          },
          { cpus: '1' },
        );
        const seconds = await runProgram(rounds);
        loadRun.stop();
        const load = await loadRun.result;
        loaded.set(perMinute, seconds);
        const entry = perRate.get(perMinute) ?? { ratios: [], served: 0, failed: 0, failures: [], p50: [], p99: [] };
        entry.served += load.ok;
        entry.failed += load.failed;
        entry.failures.push(...load.failures);
        if (load.ok > 0) {
          entry.p50.push(load.latency.p50);
          entry.p99.push(load.latency.p99);
        }
        perRate.set(perMinute, entry);
        roundSolos.push(await runProgram(rounds));
      }
      solos.push(...roundSolos);
      const solo = repeated(roundSolos).median;
      for (const [perMinute, seconds] of loaded) perRate.get(perMinute)?.ratios.push((100 * solo) / seconds);
    }
    return {
      pinned: 'program and stopd on CPU 0, load generator on CPU 1',
      rounds: options.rounds,
      soloSeconds: repeated(solos),
      rows: options.rates.map((perMinute) => {
        const entry = perRate.get(perMinute) ?? { ratios: [], served: 0, failed: 0, failures: [], p50: [], p99: [] };
        return {
          perMinute,
          percentOfSolo: repeated(entry.ratios),
          requestsServed: entry.served,
          failed: entry.failed,
          failures: [...new Set(entry.failures)].slice(0, 5),
          p50Ms: repeated(entry.p50),
          p99Ms: repeated(entry.p99),
        };
      }),
      stopdMemory: readMemory(stopd.pid),
    };
  } finally {
    structure.kill();
    await stopd.stop();
    await next.close();
    await previous.close();
  }
}
