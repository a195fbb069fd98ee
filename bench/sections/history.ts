/**
 * The history journal (issue 14): lookup latency at a million recorded connections, side by
 * side with a small journal in the same run; the daemon memory per recorded connection (the
 * index, measured as heap growth after a rebuild); disk per million connections; and how fast
 * the journal is written and rebuilt at start. The journals are real files on the store's
 * disk (the system temporary directory), written through `HistoryJournal` as the daemon does.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { HistoryConnection } from '../../src/evidence/history-entry.js';
import { HistoryJournal } from '../../src/evidence/history-journal.js';
import { Ledger } from '../../src/evidence/ledger.js';
import { repeated, summarize, type Repeated } from '../lib/stats.js';

/** What the section measured. */
export interface HistoryBenchResult {
  readonly sizes: readonly {
    readonly connections: number;
    /** Per-lookup latency of `findConnection` of a random recorded tuple, microseconds, over the rounds. */
    readonly p50Us: Repeated;
    readonly p99Us: Repeated;
  }[];
  /** Of the largest journal. */
  readonly largest: {
    readonly connections: number;
    /** The index's typed arrays, divided by the connections. */
    readonly indexBytesPerConnection: number;
    /** Heap and array buffers after the rebuild at open minus before, divided by the connections (what the daemon holds). */
    readonly memoryBytesPerConnection: number;
    /** Journal bytes on disk scaled to a million connections (each with its close, as recorded). */
    readonly diskBytesPerMillion: number;
    readonly appendPerSecond: number;
    readonly rebuildSeconds: number;
  };
}

/**
 * A million connections with their captures and closes pass both default bounds of the journal
 * (1 GiB, 2 000 000 entries): raised here, so that every connection written is still there to look up.
 */
const UNBOUNDED = { maxBytes: 64 * 1024 ** 3, maxEntries: 64_000_000, pruneIntervalMs: 0 } as const;

/** A realistic capture: an ssh client under a login shell under sshd, with the inbound connection behind it. */
function makeConnection(index: number): Omit<HistoryConnection, 'seq'> {
  const now = new Date(1_800_000_000_000 + index).toISOString();
  const process = (pid: number, ppid: number, name: string, cmdline: string[], uid: number): HistoryConnection['ancestry'][number] => ({
    pid,
    ppid,
    name,
    uid: { real: uid, effective: uid },
    startTime: now,
    tty: '/dev/pts/3',
    priority: 20,
    nice: 0,
    pgid: pid,
    sid: 4000,
    cmdline,
  });
  return {
    socket: `ffff8880${(index * 64).toString(16).padStart(8, '0')}`,
    netns: 4026531840,
    local: tupleOf(index).local,
    remote: tupleOf(index).remote,
    connectedAt: now,
    establishedAt: now,
    closedAt: null,
    tid: 10_000 + (index % 100_000),
    pid: 10_000 + (index % 100_000),
    uid: 1000 + (index % 50),
    gid: 1000,
    loginuid: 1000 + (index % 50),
    sessionid: 12,
    comm: 'ssh',
    capturedAt: now,
    ancestry: [
      process(10_000 + (index % 100_000), 4001, 'ssh', ['ssh', '-p', '22', 'alice@198.51.100.7'], 1000),
      process(4001, 4000, 'bash', ['-bash'], 1000),
      process(4000, 900, 'sshd', ['sshd: alice@pts/3'], 0),
    ],
    upstream: [{ local: { address: '192.0.2.1', port: 22 }, remote: { address: '203.0.113.50', port: 51_000 }, pid: 4000 }],
  };
}

/** A distinct 4-tuple per index (documentation addresses; nothing is sent anywhere). */
function tupleOf(index: number): Pick<HistoryConnection, 'local' | 'remote'> {
  return { local: { address: `192.0.2.${(index % 250) + 1}`, port: 1024 + (Math.floor(index / 250) % 60_000) }, remote: { address: '198.51.100.7', port: 22 } };
}

function collectGarbage(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}

function heldBytes(): number {
  collectGarbage();
  const usage = process.memoryUsage();
  return usage.heapUsed + usage.arrayBuffers;
}

/** Writes `connections` connections and the close of each through the journal, in batches of 1000 as the recorder delivers them. */
async function fillJournal(storeDir: string, connections: number): Promise<{ appendPerSecond: number }> {
  const ledger = await Ledger.open(join(storeDir, 'ledger'));
  const journal = await HistoryJournal.open(storeDir, { ledger, ...UNBOUNDED });
  const batch = 1000;
  const started = process.hrtime.bigint();
  for (let first = 0; first < connections; first += batch) {
    const opens = [];
    for (let index = first; index < Math.min(connections, first + batch); index += 1) opens.push({ kind: 'open' as const, connection: makeConnection(index) });
    await journal.append(opens);
    // Every connection ends; its close comes in a later batch.
    await journal.append(opens.map(({ connection }) => ({ kind: 'close' as const, socket: connection.socket, local: connection.local, remote: connection.remote, closedAt: 1_800_000_100_000 })));
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  await journal.close();
  await ledger.close();
  return { appendPerSecond: connections / seconds };
}

/** Times `count` lookups of random recorded tuples; every one must find its own connection. */
function timeLookups(journal: HistoryJournal, connections: number, count: number): { p50Us: number; p99Us: number } {
  const times: number[] = [];
  for (let n = 0; n < count; n += 1) {
    const index = Math.floor(Math.random() * connections);
    const tuple = tupleOf(index);
    const started = process.hrtime.bigint();
    const found = journal.findConnection(tuple.local, tuple.remote);
    times.push(Number(process.hrtime.bigint() - started) / 1000);
    if (found?.local.port !== tuple.local.port || found.local.address !== tuple.local.address) {
      throw new Error(`history lookup of connection ${index} found ${JSON.stringify(found?.local)}`);
    }
  }
  const summary = summarize(times);
  return { p50Us: summary.p50, p99Us: summary.p99 };
}

/** Runs the section: journals of `sizes` connections (the last the largest), `rounds` interleaved rounds of `lookups` lookups each. */
export async function benchHistory(options: { sizes: readonly number[]; rounds: number; lookups: number }): Promise<HistoryBenchResult> {
  const root = mkdtempSync(join(tmpdir(), 'stopd-bench-history-'));
  try {
    const stores = options.sizes.map((connections, index) => ({ connections, dir: join(root, `store-${index}`) }));
    let appendPerSecond = Number.NaN;
    for (const store of stores) {
      mkdirSync(store.dir, { mode: 0o700 });
      appendPerSecond = (await fillJournal(store.dir, store.connections)).appendPerSecond;
    }
    // Open each journal as the daemon does at start (rebuilding the index), the largest last, measuring it.
    const journals: { connections: number; journal: HistoryJournal; ledger: Ledger }[] = [];
    let rebuildSeconds = Number.NaN;
    let memoryBytes = Number.NaN;
    for (const store of stores) {
      const ledger = await Ledger.open(join(store.dir, 'ledger'));
      const before = heldBytes();
      const started = process.hrtime.bigint();
      const journal = await HistoryJournal.open(store.dir, { ledger, ...UNBOUNDED });
      rebuildSeconds = Number(process.hrtime.bigint() - started) / 1e9;
      memoryBytes = heldBytes() - before;
      journals.push({ connections: store.connections, journal, ledger });
    }
    const samples = new Map<number, { p50: number[]; p99: number[] }>(options.sizes.map((size) => [size, { p50: [], p99: [] }]));
    for (let round = 0; round < options.rounds; round += 1) {
      // Alternate which journal goes first, so that neither always runs on a warmer cache.
      const order = round % 2 === 0 ? journals : [...journals].reverse();
      for (const { connections, journal } of order) {
        const timing = timeLookups(journal, connections, options.lookups);
        samples.get(connections)?.p50.push(timing.p50Us);
        samples.get(connections)?.p99.push(timing.p99Us);
      }
    }
    const largest = journals.at(-1);
    if (largest === undefined) throw new Error('no journal sizes given');
    const usage = largest.journal.usage;
    for (const { journal, ledger } of journals) {
      await journal.close();
      await ledger.close();
    }
    return {
      sizes: options.sizes.map((connections) => ({ connections, p50Us: repeated(samples.get(connections)?.p50 ?? []), p99Us: repeated(samples.get(connections)?.p99 ?? []) })),
      largest: {
        connections: largest.connections,
        indexBytesPerConnection: usage.indexBytes / largest.connections,
        memoryBytesPerConnection: memoryBytes / largest.connections,
        diskBytesPerMillion: (usage.bytes / largest.connections) * 1e6,
        appendPerSecond,
        rebuildSeconds,
      },
    };
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}
