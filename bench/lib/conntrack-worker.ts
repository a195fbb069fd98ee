/**
 * The measuring half of the conntrack benchmark (bench/sections/conntrack.ts), started by it
 * under `unshare --net`: this process and its children live in a network namespace of their
 * own, whose conntrack table holds only the flows `ctfill` creates here.
 *
 *   node conntrack-worker.js CTFILL SIZES GETS DUMP_KEYS DUMP_ROUNDS LIST_RUNS
 *
 * For each size (ascending, the table grown to it by `ctfill fill`), rounds alternate between
 * the three ways of finding a masqueraded flow by its reply tuple:
 * - stopd's: createConntrackTable().findByReply, the addon's single GET, as the daemon calls it;
 * - the C floor of the dump approach (`ctfill dump`: the whole table over netlink, parsed);
 * - `conntrack -L` run and its text parsed (what a dumping daemon scripted around the tool does).
 * Every lookup must find the flow it asked for: a wrong or missing answer fails the run.
 * Prints one JSON line: ConntrackWorkerResult.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createConntrackTable } from '../../src/host/conntrack.js';
import { round, summarize } from './stats.js';

const run = promisify(execFile);

/** One size's measurements (microseconds per lookup). */
export interface ConntrackSizeResult {
  readonly flows: number;
  readonly getP50Us: number;
  readonly getP99Us: number;
  /** GET of a flow the table does not hold (the kernel's miss path). */
  readonly missP50Us: number;
  readonly dumpP50Us: number;
  readonly listP50Us: number;
  readonly gets: number;
  readonly dumps: number;
  readonly lists: number;
  readonly fillSeconds: number;
}

export interface ConntrackWorkerResult {
  readonly sizes: readonly ConntrackSizeResult[];
}

/** Flow i's ends as ctfill.c creates it (see there). */
function flowOf(i: number): { port: number; remote: string } {
  return { port: 1024 + (i % 60000), remote: `203.0.113.${1 + Math.floor(i / 60000)}` };
}

function pickKeys(count: number, size: number): number[] {
  return Array.from({ length: count }, () => Math.floor(Math.random() * size));
}

async function runJsonLine<T>(file: string, args: readonly string[]): Promise<T> {
  const { stdout } = await run(file, args, { maxBuffer: 64 * 1024 * 1024, timeout: 600_000 });
  return JSON.parse(stdout.trim().split('\n').at(-1) ?? 'null') as T;
}

/** `conntrack -L` once, its text parsed, the flow with i's reply tuple picked; microseconds. */
async function timeListLookup(i: number): Promise<number> {
  const { port, remote } = flowOf(i);
  const started = process.hrtime.bigint();
  const { stdout } = await run('conntrack', ['-L', '-p', 'tcp'], { maxBuffer: 256 * 1024 * 1024 });
  let found = false;
  for (const line of stdout.split('\n')) {
    // The reply tuple is the second src=/dst=/sport=/dport= group of a line.
    const fields = [...line.matchAll(/(src|dst|sport|dport)=(\S+)/g)].map((m) => m[2]);
    if (fields[4] === remote && fields[5] === '192.0.2.1' && fields[6] === '443' && fields[7] === String(port)) {
      found = true;
      break;
    }
  }
  const us = Number(process.hrtime.bigint() - started) / 1000;
  if (!found) throw new Error(`conntrack -L did not list flow ${i}`);
  return us;
}

async function main(): Promise<void> {
  const [ctfill = '', sizesArg = '', getsArg = '', dumpKeysArg = '', dumpRoundsArg = '', listRunsArg = ''] = process.argv.slice(2);
  const sizes = sizesArg.split(',').map(Number);
  const gets = Number(getsArg);
  const dumpKeys = Number(dumpKeysArg);
  const rounds = Number(dumpRoundsArg);
  const listRuns = Number(listRunsArg);
  const table = createConntrackTable();
  const results: ConntrackSizeResult[] = [];
  let filled = 0;
  for (const size of sizes) {
    const fill = await runJsonLine<{ created: number; seconds: number }>(ctfill, ['fill', String(filled), String(size)]);
    filled = size;
    const getUs: number[] = [];
    const missUs: number[] = [];
    const dumpUs: number[] = [];
    const listUs: number[] = [];
    for (let r = 0; r < rounds; r++) {
      for (const i of pickKeys(Math.ceil(gets / rounds), size)) {
        const { port, remote } = flowOf(i);
        const started = process.hrtime.bigint();
        const flow = table.findByReply({ address: remote, port: 443 }, { address: '192.0.2.1', port });
        getUs.push(Number(process.hrtime.bigint() - started) / 1000);
        if (flow?.original.source.address !== '198.51.100.10' || flow.original.source.port !== port) {
          throw new Error(`the conntrack GET did not return flow ${i}: ${JSON.stringify(flow)}`);
        }
        const missStarted = process.hrtime.bigint();
        // Port 80 is never used by ctfill: the kernel tracks no such flow.
        const miss = table.findByReply({ address: remote, port: 80 }, { address: '192.0.2.1', port });
        missUs.push(Number(process.hrtime.bigint() - missStarted) / 1000);
        if (miss !== undefined) throw new Error(`the conntrack GET found a flow that was never created: ${JSON.stringify(miss)}`);
      }
      const dump = await runJsonLine<{ us: number[]; entries: number; found: number }>(ctfill, ['dump', '1', ...pickKeys(dumpKeys, size).map(String)]);
      if (dump.found !== dumpKeys || dump.entries !== size) {
        throw new Error(`the dump floor found ${dump.found} of ${dumpKeys} flows among ${dump.entries} entries (expected ${size})`);
      }
      dumpUs.push(...dump.us);
      if (r < listRuns) listUs.push(await timeListLookup(pickKeys(1, size)[0] ?? 0));
    }
    const get = summarize(getUs);
    results.push({
      flows: size,
      getP50Us: round(get.p50),
      getP99Us: round(get.p99),
      missP50Us: round(summarize(missUs).p50),
      dumpP50Us: round(summarize(dumpUs).p50),
      listP50Us: round(summarize(listUs).p50),
      gets: getUs.length,
      dumps: dumpUs.length,
      lists: listUs.length,
      fillSeconds: round(fill.seconds),
    });
  }
  process.stdout.write(`${JSON.stringify({ sizes: results } satisfies ConntrackWorkerResult)}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`conntrack-worker: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
