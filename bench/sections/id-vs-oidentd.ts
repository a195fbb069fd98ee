/**
 * Item 1 of issue 6: plain ID (RFC 1413) requests, stopd against Debian's oidentd, on the same
 * load generator in the same run, runs interleaved (ABAB, the order alternating per round),
 * idle and with 20 000 established background connections.
 *
 * Layout (all loopback): a holder process connects 127.0.0.1:C -> 127.0.0.1:S and keeps the
 * connection; the load generator asks from 127.0.0.1 about "C,S" (RFC 1413: the connection
 * between the daemon's port C and the requester's port S), so both daemons look up a real,
 * established, outbound connection. Background: 127.0.0.3 -> 127.0.0.4, more holders.
 *
 * The requester is 127.0.0.1 on purpose: oidentd resolves every requester's address (a PTR
 * lookup) before answering; /etc/hosts names 127.0.0.1, while any other address goes to DNS,
 * which on an offline machine costs up to its 5 s timeout per query and says nothing about
 * ident work.
 */
import type { LoadResult } from '../lib/load-client.js';
import { countSockets, cpuMs, hasProgram, LIFT_REQUESTER_LIMITS, readMemory, runIdLoad, runLoad, startBackground, startOidentd, startQueriedConnection, startStopd, type BenchStopd, type Stoppable } from '../lib/processes.js';
import { repeated, type Repeated } from '../lib/stats.js';

export interface IdCell {
  readonly daemon: 'stopd' | 'oidentd';
  readonly background: number;
  readonly concurrency: number;
  readonly perSecond: Repeated;
  readonly p50Ms: Repeated;
  readonly p99Ms: Repeated;
  /** The daemon's CPU time per successful request (ms; its reaped children included). */
  readonly cpuMsPerRequest: Repeated;
  readonly failed: number;
  readonly failures: readonly string[];
}

export interface IdVsOidentdResult {
  readonly skipped?: string;
  readonly durationMs: number;
  readonly rounds: number;
  readonly sampleReplies: Record<string, string>;
  readonly cells: readonly IdCell[];
  /** stopd / oidentd requests per second, median of the per-round ratios. */
  readonly ratios: readonly { background: number; concurrency: number; throughput: Repeated; p99: Repeated; cpu: Repeated }[];
  readonly timeWaitAfter: Record<string, number>;
  /** Established TCP sockets on the machine with the background connections in place (both ends count). */
  readonly establishedWithBackground: Record<string, number>;
  readonly stopdMemory: { vmHWMkB: number; vmRSSkB: number };
}

/** Runs item 1; `quick` shortens every run. */
export async function benchIdVsOidentd(options: { durationMs: number; rounds: number; background: number }): Promise<IdVsOidentdResult> {
  const haveOidentd = await hasProgram('oidentd');
  const started: Stoppable[] = [];
  try {
    const line = await startQueriedConnection(started);
    const stopd: BenchStopd = await startStopd({ args: LIFT_REQUESTER_LIMITS });
    started.push(stopd);
    const daemons: { name: 'stopd' | 'oidentd'; pid: number; host: string; port: number; expect: string }[] = [
      { name: 'stopd', pid: stopd.pid, host: stopd.host, port: stopd.port, expect: '^\\d+,\\d+:USERID:OTHER:[0-9a-f]{64}$' },
    ];
    if (haveOidentd) {
      const oidentd = await startOidentd();
      started.push(oidentd);
      daemons.push({ name: 'oidentd', pid: oidentd.pid, host: oidentd.host, port: oidentd.port, expect: '^\\s*\\d+\\s*,\\s*\\d+\\s*:\\s*USERID\\s*:' });
    }
    const sampleReplies: Record<string, string> = {};
    for (const daemon of daemons) {
      const probe = await runLoad({ host: daemon.host, port: daemon.port, localAddress: '127.0.0.1', line, expect: '.', mode: 'closed', count: 1 });
      if (probe.ok !== 1) throw new Error(`${daemon.name} does not answer ${line}: ${probe.failures.join('; ')}`);
      const check = await runLoad({ host: daemon.host, port: daemon.port, localAddress: '127.0.0.1', line, expect: daemon.expect, mode: 'closed', count: 1 });
      sampleReplies[daemon.name] = check.ok === 1 ? 'matches the expected USERID reply' : `unexpected: ${check.failures.join('; ')}`;
      if (check.ok !== 1) throw new Error(`${daemon.name} gives an unexpected reply to ${line}: ${check.failures.join('; ')}`);
    }

    const raw = new Map<string, LoadResult[]>();
    const cpu = new Map<string, number[]>();
    const timeWaitAfter: Record<string, number> = {};
    const backgroundSeen: Record<string, number> = {};
    // Rounds outermost: idle and loaded blocks alternate too (their order flips each round),
    // so a change in the machine's own load hits both instead of passing for a scaling cost.
    for (let round = 0; round < options.rounds; round += 1) {
      const backgrounds = round % 2 === 0 ? [0, options.background] : [options.background, 0];
      for (const background of backgrounds) {
        const holders = background > 0 ? await startBackground(background) : [];
        try {
          if (background > 0) backgroundSeen[background] = await countSockets('established');
          for (const concurrency of [1, 8]) {
            // ABAB: the first daemon alternates too.
            const order = round % 2 === 0 ? daemons : [...daemons].reverse();
            for (const daemon of order) {
              const cpuBefore = cpuMs(daemon.pid);
              const result = await runIdLoad({
                host: daemon.host,
                port: daemon.port,
                localAddress: '127.0.0.1',
                line,
                expect: daemon.expect,
                concurrency,
                durationMs: options.durationMs,
                warmup: 20,
              });
              const key = `${daemon.name}/${background}/${concurrency}`;
              raw.set(key, [...(raw.get(key) ?? []), result]);
              // Includes the warm-up queries: counted in, since their CPU is in the difference too.
              const served = result.ok + 20;
              cpu.set(key, [...(cpu.get(key) ?? []), (cpuMs(daemon.pid) - cpuBefore) / served]);
            }
            timeWaitAfter[`${background}/${concurrency}`] = await countSockets('time-wait');
          }
        } finally {
          for (const holder of holders.reverse()) await holder.stop();
        }
      }
    }
    const stopdMemory = readMemory(stopd.pid);

    const cells: IdCell[] = [];
    for (const [key, results] of raw) {
      const [daemon = 'stopd', background = '0', concurrency = '1'] = key.split('/');
      cells.push({
        daemon: daemon as 'stopd' | 'oidentd',
        background: Number(background),
        concurrency: Number(concurrency),
        perSecond: repeated(results.map((result) => result.perSecond)),
        p50Ms: repeated(results.map((result) => result.latency.p50)),
        p99Ms: repeated(results.map((result) => result.latency.p99)),
        cpuMsPerRequest: repeated(cpu.get(key) ?? []),
        failed: results.reduce((total, result) => total + result.failed, 0),
        failures: [...new Set(results.flatMap((result) => result.failures))].slice(0, 5),
      });
    }
    const ratios: IdVsOidentdResult['ratios'][number][] = [];
    if (haveOidentd) {
      for (const background of [0, options.background]) {
        for (const concurrency of [1, 8]) {
          const ours = raw.get(`stopd/${background}/${concurrency}`) ?? [];
          const theirs = raw.get(`oidentd/${background}/${concurrency}`) ?? [];
          ratios.push({
            background,
            concurrency,
            throughput: repeated(ours.map((result, i) => result.perSecond / (theirs[i]?.perSecond ?? Number.NaN))),
            p99: repeated(ours.map((result, i) => result.latency.p99 / (theirs[i]?.latency.p99 ?? Number.NaN))),
            cpu: repeated(
              (cpu.get(`stopd/${background}/${concurrency}`) ?? []).map(
                (ms, i) => ms / (cpu.get(`oidentd/${background}/${concurrency}`)?.[i] ?? Number.NaN),
              ),
            ),
          });
        }
      }
    }
    return {
      ...(haveOidentd ? {} : { skipped: 'oidentd is not installed (apt-get install oidentd): only stopd was measured' }),
      durationMs: options.durationMs,
      rounds: options.rounds,
      sampleReplies,
      cells,
      ratios,
      timeWaitAfter,
      establishedWithBackground: backgroundSeen,
      stopdMemory,
    };
  } finally {
    for (const one of started.reverse()) await one.stop();
  }
}
