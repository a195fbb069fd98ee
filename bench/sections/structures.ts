/**
 * Items 2, 3 and 5 of issue 6 (paper 5.1, Tables III and IV, and the floor): request latency
 * on real process structures, with stopd answering over TCP, stopd's own closure code timed
 * in-process, and the C floor, all on the same live structure at the same moment.
 *
 * The structures run detached (parent init). Their previous hop is a network namespace (a
 * loopback client would be host-local IPC, followed into the client instead of being named
 * upstream); the next hop is a listener of this process on 127.0.0.2, and queries come from
 * 127.0.0.2 so the daemon asks about 127.0.0.1:C -> 127.0.0.2:S (RFC 1413).
 *
 * The daemon runs with --max-fanout 0: ID_REC then resolves the closure without writing a
 * record, and sends nothing upstream (the namespace runs no daemon).
 */
import type { Socket } from 'node:net';
import { startFigure9 } from '../../test/support/figure9.js';
import { listen, type TestListener } from '../../test/support/peers.js';
import { createPreviousHost, type PreviousHost } from '../../test/support/previous-host.js';
import { freeFixedPort } from '../../test/support/structures.js';
import { timeClosure, type ClosureTiming } from '../lib/closure-timing.js';
import { startFigure7 } from '../lib/figure7.js';
import { compileC, countSockets, LIFT_REQUESTER_LIMITS, runJson, runLoad, startBackground, startReadyProgram, startStopd, type BenchStopd, type Stoppable } from '../lib/processes.js';
import { repeated, type Repeated, type Summary } from '../lib/stats.js';

const TOKEN = '^\\d+,\\d+:USERID:OTHER:[0-9a-f]{64}$';

/** The C floor's output (bench/floor/floor.c). */
export interface FloorResult {
  readonly iterations: number;
  readonly medianUs: number;
  readonly p90Us: number;
  readonly minUs: number;
  readonly scanMedianUs: number;
  readonly lookupMedianUs: number;
  readonly processes: number;
  readonly upstream: number;
  readonly procsScanned: number;
  readonly fdLinksRead: number;
}

/** One request type on one structure: p50 and p99 per round, and their medians. */
export interface LatencyCell {
  readonly type: 'ID' | 'ID_REC' | 'SV';
  readonly p50Ms: Repeated;
  readonly p99Ms: Repeated;
  readonly requests: number;
  readonly failed: number;
  readonly failures: readonly string[];
}

/** Everything measured on one structure (figure 7, figure 9, figure 9 with a crowd). */
export interface StructureResult {
  readonly name: string;
  /** TCP sockets on the machine when measured (SV looks up only the closure's own sockets; the count shows that it does not matter). */
  readonly sockets: { readonly established: number; readonly timeWait: number };
  readonly processes: number;
  readonly cells: readonly LatencyCell[];
  /** stopd's closure code timed in-process (ms), as the daemon runs it: over its incremental descriptor index. */
  readonly closure: ClosureTiming;
  /** The same with a full `/proc/PID/fd` scan per resolution, the work the C floor does. */
  readonly closureFullScan: ClosureTiming;
  readonly floor: FloorResult;
}

export interface StructuresResult {
  readonly skipped?: string;
  readonly figure7?: StructureResult;
  /** Figure 7 again with background connections established on the machine. */
  readonly figure7Loaded?: StructureResult;
  readonly figure9?: readonly StructureResult[];
}

/** A live structure and the ports of its outbound connection. */
export interface LiveStructure {
  readonly cl: number;
  readonly sv: number;
  stop(): Promise<void>;
}

function portsOf(accepted: Socket, next: TestListener): { cl: number; sv: number } {
  if (accepted.remoteAddress !== '127.0.0.1') throw new Error(`The structure connected from ${accepted.remoteAddress ?? '?'}, not 127.0.0.1`);
  return { cl: accepted.remotePort ?? 0, sv: next.port };
}

async function buildFigure7(previous: PreviousHost): Promise<LiveStructure> {
  const next = await listen('127.0.0.2');
  const port = await freeFixedPort();
  const structure = await startFigure7({ bind: previous.hostAddress, port, next: { host: '127.0.0.2', port: next.port } });
  try {
    // The "sshd" accepts the previous hop before it forks the session that dials out.
    const deadline = Date.now() + 10_000;
    let client: Awaited<ReturnType<PreviousHost['connect']>> | undefined;
    while (client === undefined) {
      try {
        client = await previous.connect(port);
      } catch (error) {
        if (Date.now() > deadline) throw error;
      }
    }
    const accepted = await next.nextAccepted(10_000);
    const ports = portsOf(accepted, next);
    const hop = client;
    return {
      ...ports,
      async stop() {
        structure.kill();
        await hop.stop();
        await next.close();
      },
    };
  } catch (error) {
    structure.kill();
    await next.close();
    throw error;
  }
}

export async function buildFigure9(previous: PreviousHost): Promise<LiveStructure> {
  const next = await listen('127.0.0.2');
  const ports: [number, number, number] = [await freeFixedPort(), await freeFixedPort(), await freeFixedPort()];
  const structure = await startFigure9({ bind: previous.hostAddress, ports, next: { host: '127.0.0.2', port: next.port } });
  try {
    const client = await previous.connect(ports[0]);
    await structure.ready();
    const accepted = await next.nextAccepted(10_000);
    return {
      ...portsOf(accepted, next),
      async stop() {
        structure.kill();
        await client.stop();
        await next.close();
      },
    };
  } catch (error) {
    structure.kill();
    await next.close();
    throw error;
  }
}

/** Sequential requests (one connection each, concurrency 1), `rounds` rounds interleaving the types. */
async function measureTypes(
  stopd: BenchStopd,
  live: LiveStructure,
  options: { types: readonly LatencyCell['type'][]; count: number; rounds: number },
): Promise<LatencyCell[]> {
  const lines: Record<LatencyCell['type'], string> = {
    ID: `${live.cl},${live.sv}`,
    ID_REC: `${live.cl},${live.sv}:ID_REC:{sid}`,
    SV: `${live.cl},${live.sv}:SV`,
  };
  const results = new Map<LatencyCell['type'], Awaited<ReturnType<typeof runLoad>>[]>();
  for (let round = 0; round < options.rounds; round += 1) {
    for (const type of options.types) {
      const result = await runLoad({
        host: stopd.host,
        port: stopd.port,
        localAddress: '127.0.0.2',
        line: lines[type],
        expect: TOKEN,
        mode: 'closed',
        concurrency: 1,
        count: options.count,
        warmup: 3,
        timeoutMs: 30_000,
      });
      results.set(type, [...(results.get(type) ?? []), result]);
    }
  }
  return options.types.map((type) => {
    const runs = results.get(type) ?? [];
    return {
      type,
      p50Ms: repeated(runs.map((run) => run.latency.p50)),
      p99Ms: repeated(runs.map((run) => run.latency.p99)),
      requests: runs.reduce((total, run) => total + run.ok, 0),
      failed: runs.reduce((total, run) => total + run.failed, 0),
      failures: [...new Set(runs.flatMap((run) => run.failures))].slice(0, 5),
    };
  });
}

async function measureStructure(
  name: string,
  stopd: BenchStopd,
  live: LiveStructure,
  options: { types: readonly LatencyCell['type'][]; count: number; rounds: number; floorIterations: number },
): Promise<StructureResult> {
  const sockets = { established: await countSockets('established'), timeWait: await countSockets('time-wait') };
  const cells = await measureTypes(stopd, live, options);
  const local = { address: '127.0.0.1', port: live.cl };
  const remote = { address: '127.0.0.2', port: live.sv };
  const closure = timeClosure(local, remote, options.floorIterations, 'incremental');
  const closureFullScan = timeClosure(local, remote, options.floorIterations, 'full');
  const floorBinary = await compileC('floor');
  const floor = await runJson<FloorResult>([floorBinary, '127.0.0.1', String(live.cl), '127.0.0.2', String(live.sv), String(options.floorIterations)]);
  return { name, sockets, processes: closure.processes, cells, closure, closureFullScan, floor };
}

/** Tables III and IV and the floor. Needs root (network namespace, every /proc/PID/fd). */
export async function benchStructures(options: {
  count: number;
  rounds: number;
  crowds: readonly number[];
  background: number;
  floorIterations: number;
}): Promise<StructuresResult> {
  if (process.getuid?.() !== 0) return { skipped: 'needs root: the previous host is a network namespace and every /proc/PID/fd must be readable' };
  const previous = await createPreviousHost();
  const started: Stoppable[] = [];
  try {
    const stopd = await startStopd({ args: ['--max-fanout', '0', ...LIFT_REQUESTER_LIMITS] });
    started.push(stopd);

    const figure7 = await buildFigure7(previous);
    let figure7Result: StructureResult;
    let figure7Loaded: StructureResult | undefined;
    const figure9Results: StructureResult[] = [];
    try {
      figure7Result = await measureStructure('figure 7', stopd, figure7, { ...options, types: ['ID', 'ID_REC', 'SV'] });
      const figure9 = await buildFigure9(previous);
      try {
        const crowdBinary = await compileC('crowd');
        for (const crowd of [0, ...options.crowds]) {
          let crowdProcess: Stoppable | undefined;
          if (crowd > 0) crowdProcess = await startReadyProgram([crowdBinary, String(crowd), '/etc/hostname'], `crowd of ${crowd}`);
          try {
            const name = crowd === 0 ? 'figure 9' : `figure 9 + ${crowd} processes`;
            figure9Results.push(await measureStructure(name, stopd, figure9, { ...options, types: crowd === 0 ? ['ID', 'ID_REC', 'SV'] : ['ID_REC', 'SV'] }));
          } finally {
            await crowdProcess?.stop();
          }
        }
      } finally {
        await figure9.stop();
      }

      // Last: tearing down many connections (even with resets) disturbs what follows.
      if (options.background > 0) {
        // The same structure on a host with many connections: lookups must not grow with the table.
        const holders = await startBackground(options.background);
        try {
          // Requests are slow here (every SV walks all of them): fewer of them.
          figure7Loaded = await measureStructure(`figure 7 + ${options.background} connections`, stopd, figure7, {
            ...options,
            count: Math.max(5, Math.round(options.count / 10)),
            floorIterations: Math.max(5, Math.round(options.floorIterations / 5)),
            types: ['ID', 'ID_REC', 'SV'],
          });
        } finally {
          for (const holder of holders.reverse()) await holder.stop();
        }
      }
    } finally {
      await figure7.stop();
    }

    return {
      figure7: figure7Result,
      ...(figure7Loaded === undefined ? {} : { figure7Loaded }),
      figure9: figure9Results,
    };
  } finally {
    for (const one of started.reverse()) await one.stop();
    await previous.close();
  }
}

/** The p50 of `type` in `result`, for ratios. */
export function p50Of(result: StructureResult | undefined, type: LatencyCell['type']): number {
  return result?.cells.find((cell) => cell.type === type)?.p50Ms.median ?? Number.NaN;
}

export type { Summary };
