/**
 * Issue 14: what the eBPF connection recorder costs the host. A connect-heavy client in C
 * (`floor/connload.c`: connect, accept, reset, in a loop) runs for a fixed time with the
 * recorder off and on, alternating within each round; the recorder runs in this process with
 * the daemon's defaults and drains its rings as the daemon would (events decoded and handed to
 * a consumer). The ratio of connect rates, on ÷ off, is the target (≥ 95 %).
 *
 * On a shared two-CPU machine that ratio is noisy, so two costs are also measured directly: the kernel's time per run of the BPF program
 * (kernel.bpf_stats_enabled, read from this process's fdinfo of the program) and this
 * process's CPU time per event delivered: its CPU
 * time while recording, less its CPU time over the "off" run of the same round (starting the
 * client and waiting for it), divided by the events. Starting the recorder (libbpf reads the
 * kernel's BTF, the kernel verifies the program, the maps are allocated) is a one-time cost,
 * paid before the client starts: reported on its own, not spread over the events.
 *
 * The kernel's run statistics are an instrument with a cost of its own: every run of every
 * BPF program then reads the clock twice (two clock reads a run, six runs a connection, on a
 * paravirtualised clock). So the rate rounds run with them off, as a deployment does, and
 * one extra recording run after the rounds, its rate not counted, turns them on (and
 * restores the setting) to measure the time per run.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import type { ConnectionEvent } from '../../src/host/connection-events.js';
import { createConnectionRecorderStarter, probeConnectionRecorder } from '../../src/host/connection-recorder.js';
import { compileC, runJson } from '../lib/processes.js';
import { repeated, type Repeated } from '../lib/stats.js';

export interface RecorderResult {
  readonly skipped?: string;
  readonly rounds: number;
  readonly durationMs: number;
  /** connect() per second, per round. */
  readonly off: Repeated;
  readonly on: Repeated;
  /** on ÷ off, per round (percent). */
  readonly percentOfOff: Repeated;
  /** Events the recorder delivered and losses it counted over all the "on" runs. */
  readonly events: number;
  readonly lost: number;
  /** Kernel time per run of the BPF program (one run per TCP state change), ns; NaN when unmeasured. */
  readonly kernelNsPerRun: number;
  /** Program runs per connection of the client (both ends' state changes). */
  readonly runsPerConnection: number;
  /** This process's CPU time (reading, decoding, delivering) per event, microseconds, beyond its CPU time in the "off" runs. */
  readonly readerUsPerEvent: number;
  /** This process's CPU time to start the recorder (load, verify, attach), milliseconds, per start. */
  readonly startCpuMs: Repeated;
}

/** What `floor/connload.c` prints. */
interface ClientRun {
  readonly connections: number;
  readonly seconds: number;
}

const BPF_STATS = '/proc/sys/kernel/bpf_stats_enabled';

/** run_time_ns and run_cnt of the BPF programs this process holds (fdinfo), summed. */
function programStats(): { ns: number; runs: number } {
  let ns = 0;
  let runs = 0;
  for (const fd of readdirSync('/proc/self/fdinfo')) {
    let text: string;
    try {
      text = readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
    } catch {
      continue;
    }
    if (!text.includes('prog_tag')) continue;
    ns += Number(/^run_time_ns:\s*(\d+)/m.exec(text)?.[1] ?? 0);
    runs += Number(/^run_cnt:\s*(\d+)/m.exec(text)?.[1] ?? 0);
  }
  return { ns, runs };
}

/**
 * One recording run of the client with the kernel's run statistics on (restored after): the
 * program's kernel time per run and its runs per connection. NaN where the setting cannot be
 * written.
 */
async function kernelTimePerRun(client: () => Promise<ClientRun>): Promise<{ ns: number; runsPerConnection: number }> {
  let before: string;
  try {
    before = readFileSync(BPF_STATS, 'utf8').trim();
    writeFileSync(BPF_STATS, '1');
  } catch {
    return { ns: Number.NaN, runsPerConnection: Number.NaN };
  }
  const recorder = createConnectionRecorderStarter()(() => {});
  try {
    const { connections } = await client();
    const stats = programStats();
    return { ns: stats.runs === 0 ? Number.NaN : stats.ns / stats.runs, runsPerConnection: connections === 0 ? Number.NaN : stats.runs / connections };
  } finally {
    await recorder.close();
    writeFileSync(BPF_STATS, before);
  }
}

export async function benchRecorder(options: { rounds: number; durationMs: number }): Promise<RecorderResult> {
  const empty = repeated([]);
  const skippedWith = (reason: string): RecorderResult => ({
    skipped: reason,
    rounds: 0,
    durationMs: options.durationMs,
    off: empty,
    on: empty,
    percentOfOff: empty,
    events: 0,
    lost: 0,
    kernelNsPerRun: Number.NaN,
    runsPerConnection: Number.NaN,
    readerUsPerEvent: Number.NaN,
    startCpuMs: empty,
  });
  const availability = probeConnectionRecorder();
  if (!availability.available) return skippedWith(availability.reason);
  const binary = await compileC('connload');
  const client = (): Promise<ClientRun> => runJson<ClientRun>([binary, String(options.durationMs)]);
  const rate = async (): Promise<number> => {
    const out = await client();
    return out.connections / out.seconds;
  };
  let readerUs = 0;
  const startCpuMs: number[] = [];
  const cpuUs = (since: NodeJS.CpuUsage): number => {
    const used = process.cpuUsage(since);
    return used.user + used.system;
  };
  const off: number[] = [];
  const on: number[] = [];
  let events = 0;
  let lost = 0;
  const consume = (batch: readonly ConnectionEvent[]): void => {
    for (const event of batch) {
      if (event.kind === 'loss') lost += event.count;
      else events++;
    }
  };
  for (let round = 0; round < options.rounds; round++) {
    // Alternate which goes first, so a drift in the machine's load favours neither.
    for (const recording of round % 2 === 0 ? [false, true] : [true, false]) {
      if (!recording) {
        const cpu = process.cpuUsage();
        off.push(await rate());
        readerUs -= cpuUs(cpu);
        continue;
      }
      const starting = process.cpuUsage();
      const recorder = createConnectionRecorderStarter()(consume);
      startCpuMs.push(cpuUs(starting) / 1000);
      const cpu = process.cpuUsage();
      try {
        on.push(await rate());
      } finally {
        await recorder.close();
        readerUs += cpuUs(cpu);
      }
    }
  }
  const perRun = await kernelTimePerRun(client);
  return {
    rounds: options.rounds,
    durationMs: options.durationMs,
    off: repeated(off),
    on: repeated(on),
    percentOfOff: repeated(on.map((value, i) => (100 * value) / (off[i] ?? Number.NaN))),
    events,
    lost,
    kernelNsPerRun: perRun.ns,
    runsPerConnection: perRun.runsPerConnection,
    readerUsPerEvent: events === 0 ? Number.NaN : readerUs / events,
    startCpuMs: repeated(startCpuMs),
  };
}
