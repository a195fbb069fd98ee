/**
 * Where stopd's time goes (`npm run bench -- --profile`): a stopd under `node --cpu-prof`
 * serves a burst of ID requests (concurrency 8) and of SV requests about figure 9; the
 * profile's self time is summed per function. Not part of the measured tables: profiling
 * slows the daemon down.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createPreviousHost } from '../../test/support/previous-host.js';
import { LIFT_REQUESTER_LIMITS, runLoad, startQueriedConnection, startStopd, type Stoppable } from '../lib/processes.js';
import { buildFigure9 } from './structures.js';

export interface ProfileEntry {
  readonly function: string;
  readonly location: string;
  readonly selfPercent: number;
}

export interface ProfileResult {
  readonly skipped?: string;
  readonly id?: readonly ProfileEntry[];
  readonly sv?: readonly ProfileEntry[];
}

interface CpuProfile {
  readonly nodes: readonly { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; hitCount?: number }[];
}

/** Self time per function of a .cpuprofile, top `limit`, in percent of all samples. */
export function summarizeProfile(path: string, limit = 15): ProfileEntry[] {
  const profile = JSON.parse(readFileSync(path, 'utf8')) as CpuProfile;
  const totals = new Map<string, { function: string; location: string; hits: number }>();
  let all = 0;
  for (const node of profile.nodes) {
    const hits = node.hitCount ?? 0;
    all += hits;
    const url = node.callFrame.url.replace(/^file:\/\/.*?\/dist\//, 'dist/');
    const location = url === '' ? '(native)' : `${url}:${node.callFrame.lineNumber + 1}`;
    const name = node.callFrame.functionName || '(anonymous)';
    const key = `${name} ${location}`;
    const entry = totals.get(key) ?? { function: name, location, hits: 0 };
    entry.hits += hits;
    totals.set(key, entry);
  }
  return [...totals.values()]
    .sort((a, b) => b.hits - a.hits)
    .slice(0, limit)
    .map((entry) => ({ function: entry.function, location: entry.location, selfPercent: Math.round((1000 * entry.hits) / Math.max(1, all)) / 10 }));
}

async function profiled(work: (stopd: { host: string; port: number }) => Promise<void>): Promise<ProfileEntry[]> {
  const dir = mkdtempSync(join(tmpdir(), 'stopd-prof-'));
  try {
    const stopd = await startStopd({ nodeArgs: ['--cpu-prof', '--cpu-prof-dir', dir], args: ['--max-fanout', '0', ...LIFT_REQUESTER_LIMITS] });
    try {
      await work(stopd);
    } finally {
      await stopd.stop();
    }
    const file = readdirSync(dir).find((name) => name.endsWith('.cpuprofile'));
    if (file === undefined) throw new Error('stopd wrote no CPU profile');
    return summarizeProfile(join(dir, file));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function benchProfile(options: { durationMs: number; svCount: number }): Promise<ProfileResult> {
  if (process.getuid?.() !== 0) return { skipped: 'needs root' };
  const started: Stoppable[] = [];
  try {
    const idLine = await startQueriedConnection(started);
    const id = await profiled(async (stopd) => {
      await runLoad({ host: stopd.host, port: stopd.port, localAddress: '127.0.0.1', line: idLine, expect: ':USERID:', mode: 'closed', concurrency: 8, durationMs: options.durationMs });
    });
    const previous = await createPreviousHost();
    try {
      const figure9 = await buildFigure9(previous);
      try {
        const sv = await profiled(async (stopd) => {
          await runLoad({ host: stopd.host, port: stopd.port, localAddress: '127.0.0.2', line: `${figure9.cl},${figure9.sv}:SV`, expect: ':USERID:', mode: 'closed', concurrency: 1, count: options.svCount, timeoutMs: 30_000 });
        });
        return { id, sv };
      } finally {
        await figure9.stop();
      }
    } finally {
      await previous.close();
    }
  } finally {
    for (const one of started.reverse()) await one.stop();
  }
}
