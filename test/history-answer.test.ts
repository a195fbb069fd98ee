/**
 * Answering from history (issue 14) with the real daemon, the real eBPF recorder and real
 * processes on loopback: a process opens a connection, closes it and exits; only then is the
 * daemon asked, and it answers from the history journal. And the fallback: without BPF (or with
 * `--history off`) the daemon says so once at start and answers as before.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { exchange, startDaemon, STOPCTL, type DaemonHandle } from './support/daemon.js';
import { listen, spawnClient, type TestListener } from './support/peers.js';
import { possibleCpuCount } from '../src/host/connection-recorder.js';

const run = promisify(execFile);
const isRoot = process.getuid?.() === 0;
const TOKEN = /^(\d+),(\d+):USERID:OTHER:([0-9a-f]{64})$/;

interface HistoryRow {
  readonly local: { readonly port: number };
  readonly capturedAt: string | null;
  readonly closedAt: string | null;
}

/** The journal's rows about local port `port`, read with `stopctl history` (it works while the daemon runs). */
async function historyRows(storeDir: string, port: number): Promise<HistoryRow[]> {
  const { stdout } = await run(process.execPath, [STOPCTL, 'history', '--store', storeDir, '--port', String(port), '--json']);
  return (JSON.parse(stdout) as HistoryRow[]).filter((row) => row.local.port === port);
}

/**
 * Waits until the journal holds a row of `port` that passes `ready`: the recorder drains its ring
 * buffer on a timer, so the event's arrival is polled for (bounded), never assumed after a delay.
 */
async function waitForRow(storeDir: string, port: number, ready: (row: HistoryRow) => boolean): Promise<HistoryRow> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const row = (await historyRows(storeDir, port)).find(ready);
    if (row !== undefined) return row;
    if (Date.now() > deadline) throw new Error(`The history journal holds no matching entry for local port ${port}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function tokenOf(line: string | undefined): string {
  const token = TOKEN.exec(line ?? '')?.[3];
  assert.ok(token, `expected a token reply, got ${line}`);
  return token;
}

async function redeemJson(storeDir: string, token: string): Promise<Record<string, unknown>> {
  const { stdout } = await run(process.execPath, [STOPCTL, 'redeem', token, '--store', storeDir, '--json']);
  return JSON.parse(stdout) as Record<string, unknown>;
}

describe('answering from history', { skip: isRoot ? false : 'needs root: loads the eBPF recorder' }, () => {
  let daemon: DaemonHandle;
  let service: TestListener;
  let historyOn = false;

  before(async () => {
    daemon = await startDaemon();
    historyOn = daemon.stderr().includes('History is on');
    service = await listen('127.0.0.1');
  });
  after(async () => {
    await service.close();
    await daemon.stop();
  });

  /** A connection from a process of `nobody` that is closed, and whose process exited, before the question. */
  async function closedConnection(): Promise<{ port: number; pid: number }> {
    const client = await spawnClient('127.0.0.1', service.port, { uid: 65534, gid: 65534 });
    // The process must still exist when the daemon reads it: wait for the capture first.
    await waitForRow(daemon.storeDir, client.localPort, (row) => row.capturedAt !== null);
    await client.stop();
    await waitForRow(daemon.storeDir, client.localPort, (row) => row.closedAt !== null);
    return { port: client.localPort, pid: client.pid };
  }

  test('the start-up log says once whether history is on', () => {
    const lines = daemon.stderr().split('\n').filter((line) => line.includes('History is'));
    assert.equal(lines.length, 1, daemon.stderr());
  });

  test('SV with CL_IP about a closed connection of an exited process gets a token whose record comes from history', async (t) => {
    if (!historyOn) return t.skip(`this host cannot record: ${daemon.stderr()}`);
    const { port, pid } = await closedConnection();
    const { lines } = await exchange(daemon, `${port},${service.port}:SV:127.0.0.1\r\n`);
    const token = tokenOf(lines[0]);
    const redeemed = await redeemJson(daemon.storeDir, token);
    assert.equal(redeemed.verdict, 'verified');
    assert.equal(redeemed.source, 'history');
    const history = redeemed.history as { pid: number; uid: number; user: string | null; closedAt: string | null; capturedAt: string | null };
    assert.equal(history.pid, pid);
    assert.equal(history.uid, 65534);
    assert.equal(history.user, 'nobody');
    assert.notEqual(history.closedAt, null);
    assert.notEqual(history.capturedAt, null);
    const processes = redeemed.processes as { pid: number; user: string | null; cmdline?: string[] }[];
    assert.equal(processes[0]?.pid, pid);
    assert.equal(processes[0]?.user, 'nobody');
    assert.equal(processes[0]?.cmdline?.[0], '/usr/bin/python3');
    assert.ok(processes[0]?.cmdline?.some((arg) => arg.includes('create_connection')), JSON.stringify(processes[0]));
    const { stdout: text } = await run(process.execPath, [STOPCTL, 'redeem', token, '--store', daemon.storeDir]);
    assert.match(text, /Source {6}HISTORY/);
    assert.match(text, /Captured {4}\d{4}-/);
  });

  test('ID about a closed connection gets a token that redeems to the user, from history', async (t) => {
    if (!historyOn) return t.skip(`this host cannot record: ${daemon.stderr()}`);
    const { port, pid } = await closedConnection();
    // Asked from the connection's remote address, as RFC 1413 requires.
    const { lines } = await exchange(daemon, `${port},${service.port}\r\n`);
    const token = tokenOf(lines[0]);
    assert.ok(!(lines[0] ?? '').includes('nobody'), 'the reply must not name the user');
    const redeemed = await redeemJson(daemon.storeDir, token);
    assert.equal(redeemed.verdict, 'verified');
    assert.equal(redeemed.source, 'history');
    assert.equal(redeemed.uid, 65534);
    assert.equal(redeemed.user, 'nobody');
    assert.equal((redeemed.history as { pid: number }).pid, pid);
  });

  test('a connection history never saw still gets NO-USER without CL_IP', async () => {
    const { lines } = await exchange(daemon, `1,${service.port}\r\n`);
    assert.equal(lines[0], `1,${service.port}:ERROR:NO-USER`);
  });
});

describe('history unavailable', { skip: isRoot ? false : 'needs root: drops capabilities with setpriv' }, () => {
  let service: TestListener;
  before(async () => {
    service = await listen('127.0.0.1');
  });
  after(async () => {
    await service.close();
  });

  for (const setup of [
    { name: 'BPF refused (CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN dropped)', args: [], wrap: ['setpriv', '--bounding-set=-bpf,-perfmon,-sys_admin', '--'], says: /History is off: the kernel refused BPF/ },
    { name: 'the setting off', args: ['--history', 'off'], wrap: [], says: /History is off \(history = off/ },
  ]) {
    test(`with ${setup.name} the daemon says why once and answers as before`, async () => {
      const daemon = await startDaemon(setup.args, { wrap: setup.wrap });
      try {
        const lines = daemon.stderr().split('\n').filter((line) => line.includes('History is'));
        assert.equal(lines.length, 1, daemon.stderr());
        assert.match(lines[0] ?? '', setup.says);
        // Today's behaviour: an open connection gets a token, a closed one NO-USER.
        const client = await spawnClient('127.0.0.1', service.port);
        const { lines: open } = await exchange(daemon, `${client.localPort},${service.port}\r\n`);
        tokenOf(open[0]);
        await client.stop();
        const { lines: closed } = await exchange(daemon, `${client.localPort},${service.port}\r\n`);
        assert.equal(closed[0], `${client.localPort},${service.port}:ERROR:NO-USER`);
      } finally {
        await daemon.stop();
      }
    });
  }
});

describe('the recorder ring size', { skip: isRoot ? false : 'needs root: loads the eBPF recorder' }, () => {
  test('--history-ring-records sizes the rings the kernel holds (records a CPU times the possible CPUs)', async () => {
    const perCpu = 256;
    const daemon = await startDaemon(['--history-ring-records', String(perCpu)]);
    try {
      assert.match(daemon.stderr(), /History is on/);
      const maps = JSON.parse((await run('bpftool', ['map', 'show', '--json'])).stdout) as { name?: string; max_entries?: number }[];
      const sizes = maps.filter((map) => map.name === 'records').map((map) => map.max_entries);
      // The default (4 096 a CPU) would give another size: this one is the daemon's.
      assert.ok(sizes.includes(possibleCpuCount() * perCpu), `a records map of ${possibleCpuCount()} × ${perCpu} entries among ${sizes.join(', ')}`);
    } finally {
      await daemon.stop();
    }
  });
});
