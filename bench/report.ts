/**
 * Turns the results of `npm run bench` into the target checks of issue 6 and a Markdown report.
 */
import type { ConntrackBenchResult } from './sections/conntrack.js';
import type { HistoryBenchResult } from './sections/history.js';
import type { IdDuringSvResult } from './sections/id-during-sv.js';
import type { IdVsOidentdResult } from './sections/id-vs-oidentd.js';
import type { ProfileResult } from './sections/profile.js';
import type { RecorderResult } from './sections/recorder.js';
import type { HistoryAnswerResult } from './sections/history-answer.js';
import type { RecursionResult } from './sections/recursion.js';
import type { SvScaleResult } from './sections/sv-scale.js';
import type { SharedPipeResult } from './sections/shared-pipe.js';
import { p50Of, type StructureResult, type StructuresResult } from './sections/structures.js';
import type { SystemImpactResult } from './sections/system-impact.js';
import type { Repeated } from './lib/stats.js';

/** Everything one run measured (the JSON file). */
export interface BenchResults {
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly quick: boolean;
  readonly machine: {
    readonly cpus: number;
    readonly model: string;
    readonly kernel: string;
    readonly node: string;
    readonly memoryMB: number;
    readonly loadAverageAtStart: readonly number[];
  };
  readonly id?: IdVsOidentdResult | { skipped: string };
  readonly structures?: StructuresResult;
  readonly impact?: SystemImpactResult | { skipped: string };
  readonly recursion?: RecursionResult;
  readonly burst?: IdDuringSvResult;
  readonly pipes?: SharedPipeResult;
  readonly history?: HistoryBenchResult;
  readonly recorder?: RecorderResult;
  readonly conntrack?: ConntrackBenchResult;
  readonly historyAnswer?: HistoryAnswerResult;
  readonly svScale?: SvScaleResult;
  readonly profile?: ProfileResult;
  /** Peak resident memory (VmHWM) of the stopd of each section. */
  readonly memory: Record<string, number>;
  readonly targets: readonly TargetCheck[];
}

/** One row of the issue's target table. */
export interface TargetCheck {
  readonly measure: string;
  readonly target: string;
  readonly measured: string;
  /** undefined: not measured in this run. */
  readonly pass: boolean | undefined;
}

const fmt = (value: number, digits = 3): string => {
  if (!Number.isFinite(value)) return 'n/a';
  if (Math.abs(value) >= 10 ** digits) return value.toFixed(0);
  return Number(value.toPrecision(digits)).toString();
};

const spread = (value: Repeated | undefined, digits = 3): string =>
  value === undefined || !Number.isFinite(value.median)
    ? 'n/a'
    : value.runs.length > 1
      ? `${fmt(value.median, digits)} (${fmt(value.min, digits)}–${fmt(value.max, digits)})`
      : fmt(value.median, digits);

/** The BPF program's kernel time per connection as a percentage of the client's time per connection with the recorder off. */
function programShareOfConnection(recorder: RecorderResult): number {
  return (100 * recorder.kernelNsPerRun * recorder.runsPerConnection * recorder.off.median) / 1e9;
}

/** The median SV p50 of `daemon` under load number `load` (0: the baseline) of the SV scale section. */
function svScaleP50(scale: SvScaleResult | undefined, load: number, daemon: string): number {
  return scale?.loads[load]?.daemons.find((entry) => entry.daemon === daemon)?.svP50Ms.median ?? Number.NaN;
}

function check(measure: string, target: string, value: number, pass: (value: number) => boolean, unit = '×'): TargetCheck {
  const measured = Number.isFinite(value) ? `${fmt(value)}${unit === '×' ? '×' : ` ${unit}`}` : 'n/a';
  return { measure, target, measured, pass: Number.isFinite(value) ? pass(value) : undefined };
}

/** The issue's targets, checked against what this run measured. */
export function checkTargets(results: Omit<BenchResults, 'targets'>): TargetCheck[] {
  const checks: TargetCheck[] = [];
  const id = results.id !== undefined && 'cells' in results.id ? results.id : undefined;
  const ratio = (background: number, concurrency: number): IdVsOidentdResult['ratios'][number] | undefined =>
    id?.ratios.find((r) => r.background === background && r.concurrency === concurrency);
  const bg = id === undefined ? 20_000 : Math.max(0, ...id.cells.map((c) => c.background));
  checks.push(check('ID requests/s at concurrency 8 vs oidentd, idle', '≥ 1.5×', ratio(0, 8)?.throughput.median ?? Number.NaN, (v) => v >= 1.5));
  checks.push(check(`ID requests/s at concurrency 8 vs oidentd, ${bg} background connections`, '≥ 1.5×', ratio(bg, 8)?.throughput.median ?? Number.NaN, (v) => v >= 1.5));
  for (const background of [0, bg]) {
    for (const concurrency of [1, 8]) {
      checks.push(
        check(
          `ID p99 latency vs oidentd's, concurrency ${concurrency}, ${background === 0 ? 'idle' : `${background} background`}`,
          '≤ 1×',
          ratio(background, concurrency)?.p99.median ?? Number.NaN,
          (v) => v <= 1,
        ),
      );
    }
  }
  const cell = (background: number, concurrency: number): IdVsOidentdResult['cells'][number] | undefined =>
    id?.cells.find((c) => c.daemon === 'stopd' && c.background === background && c.concurrency === concurrency);
  checks.push(
    check(
      `ID cost with ${bg} background connections vs idle (stopd req/s at concurrency 8, idle ÷ loaded)`,
      '≤ 1.2×',
      (cell(0, 8)?.perSecond.median ?? Number.NaN) / (cell(bg, 8)?.perSecond.median ?? Number.NaN),
      (v) => v <= 1.2,
    ),
  );
  checks.push(
    check(
      `ID cost with ${bg} background connections vs idle (stopd p50 at concurrency 1, loaded ÷ idle)`,
      '≤ 1.2×',
      (cell(bg, 1)?.p50Ms.median ?? Number.NaN) / (cell(0, 1)?.p50Ms.median ?? Number.NaN),
      (v) => v <= 1.2,
    ),
  );
  const structures = results.structures;
  const fig7 = structures?.figure7;
  const fig9 = structures?.figure9?.find((s) => s.name === 'figure 9');
  const crowd = (n: number): StructureResult | undefined => structures?.figure9?.find((s) => s.name === `figure 9 + ${n} processes`);
  checks.push(check('SV with record written vs ID, figure 7 (p50)', '≤ 3× (paper: 15×)', p50Of(fig7, 'SV') / p50Of(fig7, 'ID'), (v) => v <= 3));
  checks.push(check('figure 9 vs figure 7 (SV p50)', '≤ 3× (paper: 11×)', p50Of(fig9, 'SV') / p50Of(fig7, 'SV'), (v) => v <= 3));
  checks.push(check('figure 9 + 100 processes vs figure 9 (SV p50)', '≤ 1.3× (paper: 3.5×)', p50Of(crowd(100), 'SV') / p50Of(fig9, 'SV'), (v) => v <= 1.3));
  checks.push(check('figure 9 + 1000 processes vs figure 9 (SV p50)', '≤ 2×', p50Of(crowd(1000), 'SV') / p50Of(fig9, 'SV'), (v) => v <= 2));
  for (const structure of [fig7, structures?.figure7Loaded, ...(structures?.figure9 ?? [])]) {
    if (structure === undefined) continue;
    checks.push(
      check(
        `process/IPC resolution vs the C floor, ${structure.name} (p50, in-process, stopd as it runs: incremental index)`,
        '≤ 1.5×',
        structure.closure.ms.p50 / (structure.floor.medianUs / 1000),
        (v) => v <= 1.5,
      ),
    );
    checks.push(
      check(
        `process/IPC resolution vs the C floor, ${structure.name} (p50, in-process, stopd with a full scan per request, like the floor)`,
        '≤ 1.5×',
        structure.closureFullScan.ms.p50 / (structure.floor.medianUs / 1000),
        (v) => v <= 1.5,
      ),
    );
  }
  const impact = results.impact !== undefined && 'rows' in results.impact ? results.impact : undefined;
  const heaviest = impact?.rows.find((row) => row.perMinute === 6000);
  checks.push(check('system impact at 6000 SV per minute (percent of solo speed)', '≥ 95 % (paper: 64 %)', heaviest?.percentOfSolo.median ?? Number.NaN, (v) => v >= 95, '%'));
  for (const store of ['disk', 'tmpfs'] as const) {
    const worker = results.burst?.cells.find((cell) => cell.design === 'worker' && cell.store === store);
    const where = store === 'disk' ? 'store on disk' : 'store on tmpfs: no flush to wait for';
    checks.push(check(`ID p50 during back-to-back SV requests ÷ idle (analysis thread, ${where})`, '≤ 1.5×', worker?.p50Ratio.median ?? Number.NaN, (v) => v <= 1.5));
    checks.push(check(`ID p99 during back-to-back SV requests ÷ idle (analysis thread, ${where})`, '≤ 2×', worker?.p99Ratio.median ?? Number.NaN, (v) => v <= 2));
  }
  const pipeSv = (n: number): number => results.pipes?.sizes.find((size) => size.processes === n)?.svMs.median ?? Number.NaN;
  for (const n of [1000, 5000]) {
    checks.push(check(`SV with ${n} vs 100 processes sharing one pipe (p50)`, `≤ ${n / 100}× (linear)`, pipeSv(n) / pipeSv(100), (v) => v <= n / 100));
  }
  const history = results.history;
  const biggest = history?.sizes.at(-1);
  checks.push(
    check(
      `history lookup p99 at ${biggest?.connections ?? 1_000_000} recorded connections (findConnection, in-process)`,
      '< 1 ms',
      (biggest?.p99Us.median ?? Number.NaN) / 1000,
      (v) => v < 1,
      'ms',
    ),
  );
  checks.push(check('connect() rate with the eBPF connection recorder on vs off', '≥ 95 %', results.recorder?.percentOfOff.median ?? Number.NaN, (v) => v >= 95, '%'));
  const flows = results.conntrack?.sizes ?? [];
  const smallest = flows[0];
  const largest = flows.at(-1);
  checks.push(
    check(
      `NAT: conntrack lookup (GET by tuple) p50 at ${largest?.flows ?? 100_000} vs ${smallest?.flows ?? 100} tracked flows`,
      '≤ 2× (does not grow with the table)',
      (largest?.getP50Us ?? Number.NaN) / (smallest?.getP50Us ?? Number.NaN),
      (v) => v <= 2,
    ),
  );
  const svP50 = (load: number, daemon: string): number => svScaleP50(results.svScale, load, daemon);
  for (const [load, what] of [
    [1, '10 000 idle processes'],
    [2, '10 000 threads in 20 processes'],
  ] as const) {
    checks.push(check(`SV p50 with ${what} vs without (run tracker)`, '≤ 1.3×', svP50(load, 'run tracker') / svP50(0, 'run tracker'), (v) => v <= 1.3));
  }
  const peaks = Object.values(results.memory).filter((v) => Number.isFinite(v));
  const peak = peaks.length === 0 ? Number.NaN : Math.max(...peaks);
  checks.push(check('daemon resident memory, peak (VmHWM) over the runs above', '< 80 MB', peak / 1024, (v) => v < 80, 'MB'));
  return checks;
}

function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  return [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`, ...rows.map((row) => `| ${row.join(' | ')} |`)].join('\n');
}

/** The Markdown report of one run. */
export function formatReport(results: BenchResults): string {
  const out: string[] = [];
  const m = results.machine;
  out.push(`# stopd benchmark — ${results.startedAt}${results.quick ? ' (quick run: short, indicative only)' : ''}`);
  out.push('');
  out.push(
    `Machine: ${m.cpus} × ${m.model}, ${m.memoryMB} MB, Linux ${m.kernel}, Node ${m.node}; load average at start ${m.loadAverageAtStart.map((v) => v.toFixed(2)).join(' ')}. ` +
      'Values are medians over interleaved runs, with (min–max) of the runs where there are several.',
  );
  out.push('');
  out.push('## Targets (issue 6)');
  out.push('');
  out.push(
    table(
      ['measure', 'target', 'measured', 'result'],
      results.targets.map((t) => [t.measure, t.target, t.measured, t.pass === undefined ? 'not measured' : t.pass ? 'pass' : '**FAIL**']),
    ),
  );

  const id = results.id;
  out.push('');
  out.push('## ID requests: stopd and oidentd, same load generator, interleaved');
  out.push('');
  if (id !== undefined && 'cells' in id) {
    if (id.skipped !== undefined) out.push(`${id.skipped}.\n`);
    const rows: string[][] = [];
    for (const background of [...new Set(id.cells.map((c) => c.background))]) {
      for (const concurrency of [1, 8]) {
        const ours = id.cells.find((c) => c.daemon === 'stopd' && c.background === background && c.concurrency === concurrency);
        const theirs = id.cells.find((c) => c.daemon === 'oidentd' && c.background === background && c.concurrency === concurrency);
        const ratio = id.ratios.find((r) => r.background === background && r.concurrency === concurrency);
        rows.push([
          String(background),
          String(concurrency),
          spread(ours?.perSecond),
          spread(theirs?.perSecond),
          spread(ratio?.throughput),
          `${fmt(ours?.p50Ms.median ?? Number.NaN)} / ${fmt(ours?.p99Ms.median ?? Number.NaN)}`,
          `${fmt(theirs?.p50Ms.median ?? Number.NaN)} / ${fmt(theirs?.p99Ms.median ?? Number.NaN)}`,
          `${fmt(ours?.cpuMsPerRequest.median ?? Number.NaN)} / ${fmt(theirs?.cpuMsPerRequest.median ?? Number.NaN)}`,
          spread(ratio?.cpu),
        ]);
      }
    }
    out.push(
      table(
        [
          'background connections',
          'concurrency',
          'stopd req/s',
          'oidentd req/s',
          'ratio',
          'stopd p50 / p99 ms',
          'oidentd p50 / p99 ms',
          'daemon CPU ms per request, stopd / oidentd',
          'CPU ratio (stopd ÷ oidentd)',
        ],
        rows,
      ),
    );
    out.push('');
    out.push(
      `${id.rounds} rounds of ${id.durationMs / 1000} s per cell, daemon order alternating; one new connection per query. ` +
        `TIME_WAIT sockets on the machine after each block: ${Object.entries(id.timeWaitAfter)
          .map(([k, v]) => `${k.replace('/', ' bg, c=')}: ${v}`)
          .join('; ')}. ` +
        'Daemon CPU is user + system time from /proc/PID/stat over each run (oidentd\'s forked children included once reaped), ' +
        'divided by the queries answered: it tells the daemons apart even when the load generator, sharing the CPUs, caps the request rate.',
    );
    const failed = id.cells.filter((c) => c.failed > 0);
    if (failed.length > 0) out.push(`Failed queries: ${failed.map((c) => `${c.daemon} ${c.background}/${c.concurrency}: ${c.failed} (${c.failures.join('; ')})`).join('; ')}.`);
  } else {
    out.push(id === undefined ? 'Not run.' : `Skipped: ${id.skipped}.`);
  }

  const structures = results.structures;
  out.push('');
  out.push('## Table III and IV: request latency on real structures (ms, one connection per request, sequential)');
  out.push('');
  if (structures?.figure7 !== undefined || structures?.figure9 !== undefined) {
    const rows = [structures.figure7, structures.figure7Loaded, ...(structures.figure9 ?? [])]
      .filter((s): s is StructureResult => s !== undefined)
      .map((s) => {
        const cellOf = (type: 'ID' | 'ID_REC' | 'SV'): string => {
          const c = s.cells.find((x) => x.type === type);
          return c === undefined ? '—' : `${spread(c.p50Ms)} / ${fmt(c.p99Ms.median)}`;
        };
        return [
          s.name,
          String(s.processes),
          cellOf('ID'),
          cellOf('ID_REC'),
          cellOf('SV'),
          `${fmt(s.closure.ms.p50)} / ${fmt(s.closure.ms.p90)}`,
          `${fmt(s.closureFullScan.ms.p50)} / ${fmt(s.closureFullScan.ms.p90)}`,
          `${fmt(s.floor.medianUs / 1000)} / ${fmt(s.floor.p90Us / 1000)}`,
          `${fmt(s.closure.ms.p50 / (s.floor.medianUs / 1000))} / ${fmt(s.closureFullScan.ms.p50 / (s.floor.medianUs / 1000))}`,
          fmt(p50Of(s, 'SV') / (s.floor.medianUs / 1000)),
          `${fmt(s.floor.scanMedianUs / 1000)} + ${fmt(s.floor.lookupMedianUs / 1000)}`,
        ];
      });
    out.push(
      table(
        [
          'structure',
          'processes',
          'ID p50 / p99',
          'ID_REC (closure, no record) p50 / p99',
          'SV (record written) p50 / p99',
          'stopd closure in-process, incremental index, p50 / p90',
          'stopd closure in-process, full scan, p50 / p90',
          'C floor (full scan) p50 / p90',
          'closure ÷ floor: incremental / full scan',
          'SV p50 ÷ floor',
          'floor: /proc scan + socket lookups',
        ],
        rows,
      ),
    );
    out.push('');
    out.push(
      `Sockets on the machine while measuring: ${[structures.figure7, structures.figure7Loaded, ...(structures.figure9 ?? [])]
        .filter((s): s is StructureResult => s !== undefined)
        .map((s) => `${s.name}: ${s.sockets.established} established, ${s.sockets.timeWait} TIME_WAIT`)
        .join('; ')}.`,
    );
    out.push('');
    out.push(
      'ID_REC stands in for "SV without the record": the daemon resolves the same closure but writes no record (the bench runs it with ' +
        '`--max-fanout 0`, so nothing is sent upstream). SV cannot be asked without writing its record: the protocol has no such request.',
    );
  } else {
    out.push(structures?.skipped !== undefined ? `Skipped: ${structures.skipped}.` : 'Not run.');
  }

  const impact = results.impact;
  out.push('');
  out.push('## Table V: system impact (percent of the solo speed of a random-access float program)');
  out.push('');
  if (impact !== undefined && 'rows' in impact) {
    out.push(
      table(
        ['SV requests per minute', ...impact.rows.map((r) => String(r.perMinute))],
        [
          ['percent of solo speed', ...impact.rows.map((r) => spread(r.percentOfSolo))],
          ['SV requests served', ...impact.rows.map((r) => `${r.requestsServed}${r.failed > 0 ? ` (${r.failed} failed)` : ''}`)],
          ['SV latency p50 / p99 ms', ...impact.rows.map((r) => `${fmt(r.p50Ms.median)} / ${fmt(r.p99Ms.median)}`)],
        ],
      ),
    );
    out.push('');
    out.push(`${impact.pinned}; solo run ${spread(impact.soloSeconds)} s; ${impact.rounds} rounds.`);
    const failing = impact.rows.filter((r) => r.failed > 0);
    if (failing.length > 0) out.push(`Failed requests: ${failing.map((r) => `${r.perMinute}/min: ${r.failures.join('; ')}`).join(' — ')}.`);
  } else {
    out.push(impact === undefined ? 'Not run.' : `Skipped: ${impact.skipped}.`);
  }

  const recursion = results.recursion;
  out.push('');
  out.push('## Recursion: SV_REC at the end of a 4-host chain');
  out.push('');
  if (recursion?.chainMs !== undefined) {
    out.push(
      table(
        ['measure (ms from the request written on h4)', `median (min–max), ${recursion.runs} runs`],
        [
          ['h3 replies to h4', spread(recursion.firstReplyMs)],
          ["h2's token in h3's ledger", spread(recursion.hopsMs?.h3)],
          ["h1's token in h2's ledger (the last upstream token)", spread(recursion.chainMs)],
        ],
      ),
    );
  } else {
    out.push(recursion?.skipped !== undefined ? `Skipped: ${recursion.skipped}.` : 'Not run.');
  }

  const burst = results.burst;
  out.push('');
  out.push('## ID latency while SV requests arrive back to back (analyses in a worker thread vs on the event loop)');
  out.push('');
  if (burst !== undefined && burst.cells.length > 0) {
    const cells = burst.cells;
    const row = (label: string, value: (cell: IdDuringSvResult['cells'][number]) => string): string[] => [label, ...cells.map(value)];
    const name = (cell: IdDuringSvResult['cells'][number]): string =>
      `${cell.design === 'worker' ? 'worker thread (default)' : 'event loop (`--inline-analyses`)'}, store on ${cell.store === 'disk' ? 'the root file system' : 'tmpfs'}`;
    out.push(
      table(
        ['measure (median of the rounds, min–max)', ...cells.map(name)],
        [
          row('ID p50 ms, idle', (c) => spread(c.idle.p50Ms)),
          row('ID p50 ms, during the SV burst', (c) => spread(c.burst.p50Ms)),
          row('ID p50 burst ÷ idle', (c) => `${spread(c.p50Ratio)}×`),
          row('ID p99 ms, idle', (c) => spread(c.idle.p99Ms)),
          row('ID p99 ms, during the SV burst', (c) => spread(c.burst.p99Ms)),
          row('ID p99 burst ÷ idle', (c) => `${spread(c.p99Ratio)}×`),
          row('SV answered per second during the burst', (c) => spread(c.svPerSecond)),
          row('SV latency p50 ms during the burst', (c) => spread(c.svP50Ms)),
          row('ID requests measured idle / during the burst', (c) => `${c.idle.requests} / ${c.burst.requests}${c.failed > 0 ? ` (${c.failed} failed: ${c.failures.join('; ')})` : ''}`),
        ],
      ),
    );
    out.push('');
    out.push(
      `Each SV closure: a pipeline of ${burst.processes} processes. ID at concurrency 1 for ${burst.durationMs / 1000} s per phase, ` +
        `${burst.rounds} rounds; both daemons run side by side, designs and phases alternating per round.`,
    );
  } else {
    out.push(burst?.skipped !== undefined ? `Skipped: ${burst.skipped}.` : 'Not run.');
  }

  out.push('');
  out.push('## SV with N processes sharing one pipe with the holder (issue 13)');
  out.push('');
  const pipes = results.pipes;
  if (pipes !== undefined && pipes.sizes.length > 0) {
    out.push(
      table(
        ['processes sharing the pipe', `SV ms, median (min–max), ${pipes.rounds} rounds`, 'vs 100'],
        pipes.sizes.map((size) => {
          const base = pipes.sizes[0]?.svMs.median ?? Number.NaN;
          return [String(size.processes), spread(size.svMs), `${fmt(size.svMs.median / base)}×`];
        }),
      ),
    );
  } else {
    out.push(pipes?.skipped !== undefined ? `Skipped: ${pipes.skipped}.` : 'Not run.');
  }
  out.push('');
  out.push('## History journal (issue 14): lookups, memory and disk per recorded connection');
  out.push('');
  const history = results.history;
  if (history !== undefined) {
    const base = history.sizes[0]?.p99Us.median ?? Number.NaN;
    out.push(
      table(
        ['recorded connections', 'lookup p50 µs', 'lookup p99 µs', 'p99 vs smallest'],
        history.sizes.map((size) => [String(size.connections), spread(size.p50Us), spread(size.p99Us), `${fmt(size.p99Us.median / base)}×`]),
      ),
    );
    const big = history.largest;
    out.push('');
    out.push(
      `At ${big.connections} connections (each with its close): daemon memory ${fmt(big.memoryBytesPerConnection)} bytes per recorded connection ` +
        `(heap and array buffers grown by the rebuild at open; the index's arrays alone ${fmt(big.indexBytesPerConnection)}), ` +
        `disk ${fmt(big.diskBytesPerMillion / 1024 ** 2)} MiB per million connections (an ssh client with three ancestors and one inbound connection captured), ` +
        `written at ${fmt(big.appendPerSecond)} connections/s (batches of 1000, one fdatasync each), index rebuilt at open in ${fmt(big.rebuildSeconds)} s. ` +
        'Lookups of random recorded tuples, rounds alternating between the journals; each lookup reads its entry from the file (page cache).',
    );
  } else {
    out.push('Not run.');
  }
  out.push('');
  out.push('## connect() rate with the eBPF connection recorder on vs off (issue 14)');
  out.push('');
  const recorder = results.recorder;
  if (recorder !== undefined && recorder.skipped === undefined) {
    out.push(
      table(
        ['recorder', `connect()/s, median (min–max), ${recorder.rounds} rounds of ${recorder.durationMs} ms`, 'vs off'],
        [
          ['off', spread(recorder.off), '100 %'],
          ['on', spread(recorder.on), `${spread(recorder.percentOfOff)} %`],
        ],
      ),
    );
    out.push('');
    out.push(
      `Off and on alternate within each round. The recorder delivered ${recorder.events} events and counted ${recorder.lost} lost. ` +
        `Measured directly: the BPF program ran ${fmt(recorder.runsPerConnection)} times per connection (both ends' state changes), ` +
        `${fmt(recorder.kernelNsPerRun)} ns a run in the kernel (kernel.bpf_stats_enabled, on only for one extra run after the rounds: ` +
        `it reads the clock twice a run), so ${fmt(programShareOfConnection(recorder))} % of the client's time per connection (off) is the program's, ` +
        `spent in the client's own context; reading and decoding cost the reader ` +
        `${fmt(recorder.readerUsPerEvent)} µs of CPU per event (its CPU time while recording less its CPU time in the off runs; ` +
        `the addon merges the per-CPU rings, every 200 ms and when one is half full, into one kept buffer, decoded with cached address, command and socket strings). ` +
        `Starting the recorder (BTF, verifier, maps) costs ${spread(recorder.startCpuMs)} ms of CPU once, before the client starts. ` +
        `Where the program's time goes: bench/README.md.`,
    );
  } else {
    out.push(recorder?.skipped !== undefined ? `Skipped: ${recorder.skipped}` : 'Not run.');
  }
  out.push('');
  out.push('## NAT gateways (issue 15): conntrack lookup by tuple vs dumping the table');
  out.push('');
  const conntrack = results.conntrack;
  if (conntrack !== undefined && conntrack.skipped === undefined && conntrack.sizes.length > 0) {
    out.push(
      table(
        ['tracked flows', 'stopd GET p50 / p99 µs', 'GET of an absent flow p50 µs', 'dump floor (C, netlink) p50 µs', '`conntrack -L` parsed p50 µs', 'dump floor ÷ GET', '`conntrack -L` ÷ GET'],
        conntrack.sizes.map((s) => [
          String(s.flows),
          `${fmt(s.getP50Us)} / ${fmt(s.getP99Us)}`,
          fmt(s.missP50Us),
          fmt(s.dumpP50Us),
          fmt(s.listP50Us),
          `${fmt(s.dumpP50Us / s.getP50Us)}×`,
          `${fmt(s.listP50Us / s.getP50Us)}×`,
        ]),
      ),
    );
    out.push('');
    out.push(
      `In a network namespace of the bench's own; flows created by batched netlink creates (${conntrack.sizes.map((s) => `${s.flows}: ${fmt(s.fillSeconds)} s`).join(', ')} to grow the table). ` +
        `Per size: ${conntrack.sizes[0]?.gets ?? 0} GETs of random flows (each also checked to return that flow) and as many of absent flows, ` +
        `${conntrack.sizes[0]?.dumps ?? 0} dump-floor lookups and ${conntrack.sizes[0]?.lists ?? 0} \`conntrack -L\` runs, in ${conntrack.rounds} alternating rounds. ` +
        'The GET opens a netlink socket per lookup, as the daemon does.',
    );
  } else {
    out.push(conntrack?.skipped !== undefined ? `Skipped: ${conntrack.skipped}.` : 'Not run.');
  }
  out.push('');
  out.push('## SV_REC answered from history vs live (issue 14)');
  out.push('');
  const answer = results.historyAnswer;
  if (answer?.live !== undefined && answer.history !== undefined) {
    const row = (name: string, s: { p50: number; p90: number; min: number; max: number }): string[] => [name, fmt(s.p50), fmt(s.p90), `${fmt(s.min)}–${fmt(s.max)}`];
    out.push(table(['answered', 'p50 ms', 'p90 ms', 'min–max ms'], [row('live (connection open)', answer.live), row('from history (closed, process gone)', answer.history)]));
    out.push('');
    out.push(
      `${answer.samples} samples of each, alternating, one daemon: history ÷ live ${fmt(answer.ratio ?? Number.NaN)}× at p50 ` +
        `(per neighbouring pair: ${spread(answer.pairRatios)}×), ${answer.machineProcesses ?? '?'} processes on the machine. Each request is about a fresh loopback ` +
        'connection of a process of nobody (in its own session, to a listener in another); both records are written to the store; the time is from the ' +
        "request's connect to its reply. A live SV reads the host's process table (its cost grows with the processes, see issue 14's SV rows); " +
        'one from history builds the record from the capture made at connect time and reads only the host and utmp facts.',
    );
  } else {
    out.push(answer?.skipped !== undefined ? `Skipped: ${answer.skipped}` : 'Not run.');
  }
  out.push('');
  out.push('## SV as the host grows: the run tracker vs schedstat files (issue 14)');
  out.push('');
  const scale = results.svScale;
  if (scale !== undefined && scale.loads.length > 0) {
    const base = (daemon: string): number => svScaleP50(scale, 0, daemon);
    out.push(
      table(
        ['load', ...(scale.loads[0]?.daemons ?? []).flatMap((entry) => [`${entry.daemon}: SV p50 ms, median (min–max)`, 'vs baseline'])],
        scale.loads.map((load) => [
          load.name,
          ...load.daemons.flatMap((entry) => [spread(entry.svP50Ms), `${fmt(entry.svP50Ms.median / base(entry.daemon))}×`]),
        ]),
      ),
    );
    out.push('');
    out.push(
      `${scale.rounds} rounds; in each, ${scale.perRound} SV requests to one daemon, a pause, then ${scale.perRound} to the other (the p50 of each block, then the median of the rounds), about one holder sharing a pipe with one child; ` +
        `the baseline is the machine's own ${scale.baselineProcesses} processes, measured before, between and after the two loads (its rounds pooled), so that a drift of the shared machine's speed over the section does not pass for growth. Both daemons run side by side with \`--history off\`; "schedstat" is \`--process-index schedstat\`, whose index reads a schedstat file per thread ` +
        `(at most 4 096 kept, the rest rescanned at every refresh). Run tracker in use: ${scale.runTrackerActive ? 'yes' : 'NO (its start-up log says why)'}.`,
    );
  } else {
    out.push(scale?.skipped !== undefined ? `Skipped: ${scale.skipped}.` : 'Not run.');
  }
  out.push('');
  out.push('## Daemon memory');
  out.push('');
  out.push(
    Object.entries(results.memory)
      .map(([where, kB]) => `- ${where}: peak resident ${fmt(kB / 1024)} MB`)
      .join('\n') || 'Not measured.',
  );

  const profile = results.profile;
  if (profile?.id !== undefined || profile?.sv !== undefined) {
    out.push('');
    out.push('## Where stopd spends its CPU time (node --cpu-prof, self time)');
    for (const [name, entries] of [
      ['ID at concurrency 8', profile.id],
      ['SV on figure 9', profile.sv],
    ] as const) {
      if (entries === undefined) continue;
      out.push('');
      out.push(`${name}:`);
      out.push('');
      out.push(table(['self %', 'function', 'location'], entries.map((e) => [String(e.selfPercent), e.function, e.location])));
    }
  }
  out.push('');
  return out.join('\n');
}
