/**
 * Issue 15: what a NAT gateway's conntrack lookup costs as the table grows. In a network
 * namespace the bench creates (`unshare --net`: a conntrack table of its own, nothing else on
 * the machine in it), `floor/ctfill.c` creates 100 to 100 000 masqueraded TCP flows by batched
 * netlink creates, and bench/lib/conntrack-worker.ts times, side by side in alternating rounds,
 * stopd's lookup (the addon's single GET by tuple, as the daemon calls it) and the table-dump
 * approach, both as a C floor (the whole table over netlink, parsed) and as `conntrack -L`
 * parsed as text. The target: the GET's cost at 100 000 flows within 2× its cost at 100.
 */
import { resolve } from 'node:path';
import type { ConntrackSizeResult, ConntrackWorkerResult } from '../lib/conntrack-worker.js';
import { compileC, hasProgram, runJson } from '../lib/processes.js';

export interface ConntrackBenchResult {
  readonly skipped?: string;
  readonly sizes: readonly ConntrackSizeResult[];
  /** Rounds per size (a dump-floor batch and, in the first `listRuns`, a `conntrack -L` each). */
  readonly rounds: number;
}

const WORKER = resolve(import.meta.dirname, '../lib/conntrack-worker.js');

export async function benchConntrack(options: { sizes: readonly number[]; gets: number; dumpKeys: number; rounds: number; listRuns: number }): Promise<ConntrackBenchResult> {
  const skippedWith = (reason: string): ConntrackBenchResult => ({ skipped: reason, sizes: [], rounds: 0 });
  if (process.getuid?.() !== 0) return skippedWith('needs root (a network namespace and CAP_NET_ADMIN in it)');
  for (const program of ['unshare', 'conntrack']) {
    if (!(await hasProgram(program))) return skippedWith(`${program} is missing (apt-get install ${program === 'unshare' ? 'util-linux' : 'conntrack'})`);
  }
  const ctfill = await compileC('ctfill');
  const result = await runJson<ConntrackWorkerResult>(
    [
      'unshare',
      '--net',
      process.execPath,
      WORKER,
      ctfill,
      options.sizes.join(','),
      String(options.gets),
      String(options.dumpKeys),
      String(options.rounds),
      String(options.listRuns),
    ],
    1_800_000,
  );
  return { sizes: result.sizes, rounds: options.rounds };
}
