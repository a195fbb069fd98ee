/**
 * `stopctl history` and `stopctl verify` on a store with a history journal (issue 14): the
 * real stopctl process lists the recorded connections with its filters while a real daemon
 * holds the store and after it stopped, rejects bad filters with one sentence and exit 2, and
 * verify reports a tampered journal line with exit 3.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { HistoryConnection } from '../src/evidence/history-entry.js';
import { listHistorySegments } from '../src/evidence/history-files.js';
import { HistoryJournal } from '../src/evidence/history-journal.js';
import { Ledger } from '../src/evidence/ledger.js';
import { STOPCTL, startDaemon, type DaemonHandle } from './support/daemon.js';

const root = mkdtempSync(join(tmpdir(), 'stopd-history-cli-'));
after(() => rmSync(root, { recursive: true, force: true }));

function runStopctl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [STOPCTL, ...args], { timeout: 30_000 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

function connection(port: number, overrides: Partial<Omit<HistoryConnection, 'seq'>>): Omit<HistoryConnection, 'seq'> {
  return {
    socket: `ffff8880${port.toString(16)}`,
    netns: 4026531840,
    local: { address: '192.0.2.30', port },
    remote: { address: '198.51.100.40', port: 22 },
    connectedAt: '2026-05-01T10:00:00.000Z',
    establishedAt: '2026-05-01T10:00:00.002Z',
    closedAt: null,
    tid: 4000 + port,
    pid: 4000 + port,
    uid: 1000,
    gid: 1000,
    loginuid: 1000,
    sessionid: 2,
    comm: 'ssh',
    capturedAt: '2026-05-01T10:00:00.003Z',
    ancestry: [],
    upstream: [],
    ...overrides,
  };
}

describe('stopctl history', () => {
  const store = join(root, 'store');
  before(async () => {
    mkdirSync(store, { mode: 0o700 });
    const ledger = await Ledger.open(join(store, 'ledger'), {});
    const journal = await HistoryJournal.open(store, { ledger, pruneIntervalMs: 0, now: () => Date.parse('2026-05-01T13:00:00Z') });
    await journal.append([
      { kind: 'open', connection: connection(40001, {}) },
      { kind: 'open', connection: connection(40002, { uid: 1001, loginuid: 1001, comm: 'curl', connectedAt: '2026-05-01T11:00:00.000Z', remote: { address: '203.0.113.8', port: 443 } }) },
      { kind: 'open', connection: connection(40003, { uid: 0, loginuid: 1000, comm: 'rsync', connectedAt: '2026-05-01T12:00:00.000Z' }) },
    ]);
    await journal.append([{ kind: 'close', socket: '', local: { address: '192.0.2.30', port: 40001 }, remote: { address: '198.51.100.40', port: 22 }, closedAt: Date.parse('2026-05-01T10:05:00Z') }]);
    await journal.close();
    await ledger.close();
  });

  test('lists every recorded connection with its close time, while the daemon holds the store and after it stopped', async () => {
    // The fixture's connections are months old: a retention that keeps them, or the daemon's
    // journal (history is on wherever BPF works) would rightly drop them at start.
    const daemon: DaemonHandle = await startDaemon(['--history-retention', '3650d'], { storeDir: store, keepStore: true });
    let running: Awaited<ReturnType<typeof runStopctl>>;
    try {
      running = await runStopctl(['history', '--store', store]);
    } finally {
      await daemon.stop();
    }
    const stopped = await runStopctl(['history', '--store', store]);
    for (const result of [running, stopped]) {
      assert.equal(result.code, 0, result.stderr);
      const lines = result.stdout.trim().split('\n');
      assert.equal(lines.length, 4);
      assert.match(lines[0] ?? '', /^seq 1 {2}2026-05-01T10:00:00\.000Z {2}192\.0\.2\.30:40001 -> 198\.51\.100\.40:22 {2}uid 1000 \(login uid 1000\) {2}pid 44001 ssh {2}closed 2026-05-01T10:05:00\.000Z$/);
      assert.match(lines[2] ?? '', /pid 44003 rsync {2}open or close not seen$/);
      assert.equal(lines[3], '3 connections');
    }
  });

  test('filters by uid, address, port and time, and prints JSON', async () => {
    const cases: [string[], number[]][] = [
      [['--uid', '0'], [40003]],
      [['--address', '203.0.113.8'], [40002]],
      [['--port', '443'], [40002]],
      [['--since', '2026-05-01T10:30:00Z', '--until', '2026-05-01T11:30:00Z'], [40002]],
      [['--since', '2026-05-01'], [40001, 40002, 40003]],
      [['--port', '40003', '--uid', '1000'], []],
    ];
    for (const [filter, ports] of cases) {
      const result = await runStopctl(['history', '--store', store, '--json', ...filter]);
      assert.equal(result.code, 0, result.stderr);
      const listed = JSON.parse(result.stdout) as HistoryConnection[];
      assert.deepEqual(listed.map((c) => c.local.port), ports, filter.join(' '));
    }
  });

  test('rejects a bad filter with one sentence and exit 2', async () => {
    const bad: [string[], RegExp][] = [
      [['--port', '70000'], /--port must be a whole number from 1 to 65535, not "70000"/],
      [['--uid', 'root'], /--uid must be a whole number/],
      [['--address', '192.0.2.300'], /--address must be an IPv4 or IPv6 address/],
      [['--since', 'yesterday'], /--since must be a time such as/],
      [['--since', '2h', '--until', '3h'], /--since .* is after --until/],
      [['--colour'], /Unknown option '--colour'/],
    ];
    for (const [args, message] of bad) {
      const result = await runStopctl(['history', '--store', store, ...args]);
      assert.equal(result.code, 2, args.join(' '));
      assert.equal(result.stdout, '');
      assert.match(result.stderr, message);
      assert.equal(result.stderr.trim().split('\n').length, 1, 'one sentence');
    }
  });

  test('a missing store is exit 1 with one sentence', async () => {
    const result = await runStopctl(['history', '--store', join(root, 'nothing-here')]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /^stopctl: Cannot read the store .*nothing-here: the directory does not exist/);
  });

  test('stopctl verify checks the journal and reports a tampered line (exit 3)', async () => {
    const clean = await runStopctl(['verify', '--store', store]);
    assert.equal(clean.code, 0, clean.stdout);
    // The five connections, and the `stop` entry the daemon of the first test wrote when it
    // stopped; anchors: the history-checkpoints of the fixture's close and of that daemon's.
    assert.match(clean.stdout, /^History {2}6 entries, seq 1\.\.6 in 1 segment files; 2 anchors in the ledger checked$/m);
    const segment = listHistorySegments(store)[0];
    assert.ok(segment !== undefined);
    const text = readFileSync(segment.path, 'utf8');
    writeFileSync(segment.path, text.replace('"comm":"curl"', '"comm":"wget"'));
    const tampered = await runStopctl(['verify', '--store', store]);
    assert.equal(tampered.code, 3);
    assert.match(tampered.stdout, /^ENTRY-ALTERED {2}history\/0000000000000001\.history line 2 \(seq 2\): its bytes no longer hash/m);
    writeFileSync(segment.path, text);
  });
});
