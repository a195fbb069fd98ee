/**
 * `npm run bench`: the measurements of issue 6 (paper section 5, Tables III to V, oidentd side
 * by side, the C floor, recursion), printed as Markdown and saved as JSON and Markdown under
 * bench/results/ (a timestamped pair plus latest.json and latest.md).
 *
 * Options (after `npm run bench --`):
 *   --quick          short runs, for trying the bench out (numbers indicative only)
 *   --only=LIST      comma-separated sections: id, structures, impact, recursion, burst, pipes, history, recorder, conntrack, answer, svscale
 *   --profile        also profile stopd with node --cpu-prof (ID and SV) and list hot functions
 *
 * Needs root (network and PID namespaces, every /proc/PID/fd), cc, python3, socat, taskset,
 * prlimit and ss; oidentd for the comparison (apt-get install oidentd), skipped without it.
 * Speed is only ever compared side by side within one run: the machine may be shared and noisy.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { checkTargets, formatReport, type BenchResults } from './report.js';
import { benchConntrack } from './sections/conntrack.js';
import { benchHistory } from './sections/history.js';
import { benchHistoryAnswer } from './sections/history-answer.js';
import { benchIdDuringSv } from './sections/id-during-sv.js';
import { benchIdVsOidentd } from './sections/id-vs-oidentd.js';
import { benchProfile } from './sections/profile.js';
import { benchRecorder } from './sections/recorder.js';
import { benchRecursion } from './sections/recursion.js';
import { benchSharedPipe } from './sections/shared-pipe.js';
import { benchSvScale } from './sections/sv-scale.js';
import { benchStructures } from './sections/structures.js';
import { benchSystemImpact } from './sections/system-impact.js';
import { hasProgram } from './lib/processes.js';

const SECTIONS = ['id', 'structures', 'impact', 'recursion', 'burst', 'pipes', 'history', 'recorder', 'conntrack', 'answer', 'svscale'] as const;
type Section = (typeof SECTIONS)[number];

/** The repository's bench/results (this file runs as dist/bench/run.js). */
const RESULTS_DIR = resolve(import.meta.dirname, '../../bench/results');

function log(message: string): void {
  process.stderr.write(`bench: ${message}\n`);
}

async function timed<T>(name: string, work: () => Promise<T>): Promise<T | undefined> {
  const started = Date.now();
  log(`${name}...`);
  try {
    const result = await work();
    log(`${name} done in ${((Date.now() - started) / 1000).toFixed(0)} s`);
    return result;
  } catch (error) {
    log(`${name} failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    return undefined;
  }
}

/** A mistake on the command line: reported in one sentence, exit status 2. */
class UsageError extends Error {}

function parseOptions(): { quick: boolean; profile: boolean; only: Set<Section> } {
  let values;
  try {
    ({ values } = parseArgs({ options: { quick: { type: 'boolean' }, only: { type: 'string' }, profile: { type: 'boolean' } } }));
  } catch (error) {
    throw new UsageError(`${(error as Error).message}; the options are --quick, --only=LIST and --profile`);
  }
  const only = new Set<Section>(
    (values.only?.split(',') ?? [...SECTIONS]).map((name) => {
      if (!(SECTIONS as readonly string[]).includes(name)) {
        throw new UsageError(`Unknown section "${name}" in --only: use a comma-separated list of ${SECTIONS.join(', ')}`);
      }
      return name as Section;
    }),
  );
  return { quick: values.quick === true, profile: values.profile === true, only };
}

async function main(): Promise<void> {
  const { quick, profile: profiling, only } = parseOptions();
  if (process.getuid?.() !== 0) log('not root: the structure, impact and recursion sections will be skipped');
  for (const program of ['cc', 'python3', 'socat', 'taskset', 'prlimit', 'ss']) {
    if (!(await hasProgram(program))) log(`${program} is missing: sections that need it will fail`);
  }
  if (only.has('id') && !(await hasProgram('oidentd'))) log('oidentd is not installed (apt-get install oidentd): the ID comparison measures stopd alone');

  const startedAt = new Date().toISOString();
  const machine = {
    cpus: cpus().length,
    model: cpus()[0]?.model ?? 'unknown',
    kernel: release(),
    node: process.version,
    memoryMB: Math.round(totalmem() / 2 ** 20),
    loadAverageAtStart: loadavg(),
  };
  const memory: Record<string, number> = {};

  const structures = only.has('structures')
    ? await timed('Tables III and IV, the floor', () =>
        benchStructures({
          count: quick ? 20 : 100,
          rounds: quick ? 1 : 3,
          crowds: [100, 1000],
          background: quick ? 2000 : 20_000,
          floorIterations: quick ? 10 : 50,
        }),
      )
    : undefined;

  const id = only.has('id')
    ? await timed('ID: stopd vs oidentd', () => benchIdVsOidentd({ durationMs: quick ? 1000 : 3000, rounds: quick ? 1 : 4, background: quick ? 2000 : 20_000 }))
    : undefined;
  if (id !== undefined && 'stopdMemory' in id) memory['ID bench (concurrency 8, background connections)'] = id.stopdMemory.vmHWMkB;

  const impact = only.has('impact')
    ? await timed('Table V: system impact', () => benchSystemImpact({ rates: [6, 60, 600, 3000, 6000], rounds: quick ? 1 : 2, targetSeconds: quick ? 3 : 5 }))
    : undefined;
  if (impact !== undefined && 'stopdMemory' in impact) memory['Table V (6000 SV per minute)'] = impact.stopdMemory.vmHWMkB;

  const recursion = only.has('recursion') ? await timed('recursion over 4 hosts', () => benchRecursion({ runs: quick ? 3 : 10 })) : undefined;
  const burst = only.has('burst')
    ? await timed('ID during an SV burst', () =>
        benchIdDuringSv({ durationMs: quick ? 2000 : 5000, rounds: quick ? 1 : 4, processes: 100, stores: ['disk', 'tmpfs'] }),
      )
    : undefined;
  const pipes = only.has('pipes')
    ? await timed('SV with 100 / 1000 / 5000 processes sharing a pipe', () => benchSharedPipe({ sizes: [100, 1000, 5000], rounds: quick ? 3 : 10 }))
    : undefined;
  if (pipes?.stopdMemory !== undefined) memory['SV with 100 / 1000 / 5000 processes sharing a pipe'] = pipes.stopdMemory.vmHWMkB;
  const history = only.has('history')
    ? await timed('history journal: lookups at 1 000 and 1 000 000 connections', () =>
        benchHistory({ sizes: quick ? [1000, 100_000] : [1000, 1_000_000], rounds: quick ? 2 : 4, lookups: quick ? 2000 : 10_000 }),
      )
    : undefined;
  const recorder = only.has('recorder')
    ? await timed('connect() rate with the connection recorder on vs off', () => benchRecorder({ rounds: quick ? 2 : 12, durationMs: quick ? 1000 : 1500 }))
    : undefined;
  const conntrack = only.has('conntrack')
    ? await timed('conntrack lookup with 100 to 100 000 tracked flows: GET by tuple vs table dump', () =>
        benchConntrack({ sizes: [100, 1000, 10_000, 100_000], gets: quick ? 200 : 2000, dumpKeys: quick ? 2 : 5, rounds: quick ? 2 : 4, listRuns: quick ? 1 : 3 }),
      )
    : undefined;
  const historyAnswer = only.has('answer')
    ? await timed('SV_REC answered from history vs live', () => benchHistoryAnswer({ samples: quick ? 6 : 20 }))
    : undefined;
  const svScale = only.has('svscale')
    ? await timed('SV with 10 000 idle processes / threads vs without, run tracker vs schedstat', () =>
        benchSvScale({ rounds: quick ? 2 : 5, perRound: quick ? 5 : 10, processes: 10_000, threadProcesses: 20, threadsEach: 500 }),
      )
    : undefined;
  const profile = profiling ? await timed('profile', () => benchProfile({ durationMs: quick ? 2000 : 5000, svCount: quick ? 20 : 100 })) : undefined;

  const partial = {
    startedAt,
    finishedAt: new Date().toISOString(),
    quick,
    machine,
    ...(id === undefined ? {} : { id }),
    ...(structures === undefined ? {} : { structures }),
    ...(impact === undefined ? {} : { impact }),
    ...(recursion === undefined ? {} : { recursion }),
    ...(burst === undefined ? {} : { burst }),
    ...(pipes === undefined ? {} : { pipes }),
    ...(history === undefined ? {} : { history }),
    ...(recorder === undefined ? {} : { recorder }),
    ...(conntrack === undefined ? {} : { conntrack }),
    ...(historyAnswer === undefined ? {} : { historyAnswer }),
    ...(svScale === undefined ? {} : { svScale }),
    ...(profile === undefined ? {} : { profile }),
    memory,
  };
  const results: BenchResults = { ...partial, targets: checkTargets(partial) };
  const markdown = formatReport(results);
  mkdirSync(RESULTS_DIR, { recursive: true });
  const stamp = startedAt.replace(/[:.]/g, '-');
  const json = `${JSON.stringify(results, null, 2)}\n`;
  writeFileSync(join(RESULTS_DIR, `${stamp}.json`), json);
  writeFileSync(join(RESULTS_DIR, `${stamp}.md`), markdown);
  writeFileSync(join(RESULTS_DIR, 'latest.json'), json);
  writeFileSync(join(RESULTS_DIR, 'latest.md'), markdown);
  process.stdout.write(markdown);
  log(`results in ${join(RESULTS_DIR, `${stamp}.json`)} and latest.json / latest.md`);
}

main().catch((error: unknown) => {
  if (error instanceof UsageError) {
    process.stderr.write(`bench: ${error.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`bench: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
