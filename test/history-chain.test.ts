/**
 * The closed chain of issue 14: a user (not root) on h1 logs in to h2 and from there to h3
 * (login-style socat relays, see support/chain.ts), runs something on h3 and logs out, so that
 * every connection of the chain is closed and every process of it has exited. Only then does
 * an IDS host ask h2, with CL_IP, about h2's connection to h3: h2 answers from its history and
 * recurses to h1, which answers from its own history with the user's relay client. Each host is
 * a network + PID namespace whose daemon records only its own network namespace.
 */
import assert from 'node:assert/strict';
import { execFile, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { STOPCTL } from './support/daemon.js';
import { eventually, peerPort, queryFrom, SHELL_PORT } from './support/chain.js';
import { createTestNet, readLedger, type TestHost, type TestNet, type TestStopd } from './support/testnet.js';

const run = promisify(execFile);
const isRoot = process.getuid?.() === 0;
const TOKEN_REPLY = /^(\d+),(\d+):USERID:OTHER:([0-9a-f]{64})$/;
const NOBODY = 65534;
const MARKER = 'chain-ran-on-h3';

type Entry = Record<string, unknown>;

interface HistoryRow {
  readonly local: { readonly address: string; readonly port: number };
  readonly remote: { readonly address: string; readonly port: number };
  readonly pid: number;
  readonly uid: number;
  readonly comm: string;
  readonly capturedAt: string | null;
  readonly closedAt: string | null;
}

/** The rows of `stopd`'s history journal (read on the machine: the store is a machine directory). */
async function historyRows(stopd: TestStopd): Promise<HistoryRow[]> {
  const { stdout } = await run(process.execPath, [STOPCTL, 'history', '--store', stopd.storeDir, '--json']);
  return JSON.parse(stdout) as HistoryRow[];
}

/** Polls (bounded) for the journal row of the connection from local port `port` to `remote`:`remotePort` that passes `ready`. */
async function waitForRow(stopd: TestStopd, connection: { port: number; remote: string; remotePort: number }, ready: (row: HistoryRow) => boolean): Promise<HistoryRow> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const row = (await historyRows(stopd)).find(
      (r) => r.local.port === connection.port && r.remote.address === connection.remote && r.remote.port === connection.remotePort && ready(r),
    );
    if (row !== undefined) return row;
    if (Date.now() > deadline) throw new Error(`No matching history row for local port ${connection.port} in ${stopd.storeDir}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function upstreams(stopd: TestStopd, parentToken: string): Entry[] {
  return readLedger(stopd.storeDir).filter((e) => e.kind === 'upstream' && e.parentToken === parentToken);
}

function replies(stopd: TestStopd): Entry[] {
  return readLedger(stopd.storeDir).filter((e) => e.kind === 'reply');
}

async function redeemJson(stopd: TestStopd, token: string): Promise<Record<string, unknown>> {
  const { stdout } = await run(process.execPath, [STOPCTL, 'redeem', token, '--store', stopd.storeDir, '--json']);
  return JSON.parse(stdout) as Record<string, unknown>;
}

/** TCP sockets of `host` on the shell port in any state but LISTEN and TIME-WAIT (the kernel's, held by no process). */
async function chainSockets(host: TestHost): Promise<string[]> {
  const { stdout } = await host.exec(['ss', '-Htna', 'exclude', 'listening', 'exclude', 'time-wait', `( sport = :${SHELL_PORT} or dport = :${SHELL_PORT} )`]);
  return stdout.split('\n').filter((line) => line.trim() !== '');
}

/** Names (comm) of every process of `host` but its pid 1 and its stopd. */
function otherProcesses(host: TestHost, stopd: TestStopd): string[] {
  const names: string[] = [];
  for (const pid of host.machinePids()) {
    if (pid === host.initPid || pid === stopd.pid) continue;
    try {
      names.push(`${pid} ${readComm(pid)}`);
    } catch {
      // Exited between the listing and the read: gone, as wanted.
    }
  }
  return names;
}

function readComm(pid: number): string {
  return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
}

/** Polls (bounded) until `host` holds no chain socket; returns what is left then. */
async function chainSocketsAfterClose(host: TestHost): Promise<string[]> {
  // The last FIN/ACK exchange may still be on its way when the processes are gone.
  const deadline = Date.now() + 10_000;
  for (;;) {
    const left = await chainSockets(host);
    if (left.length === 0 || Date.now() > deadline) return left;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function waitForExit(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((resolve) => child.once('exit', () => resolve()));
}

describe('the closed chain: answered from history after every hop closed', { skip: isRoot ? false : 'needs root: creates test hosts and loads the eBPF recorder' }, () => {
  let net: TestNet;
  const stopd = new Map<string, TestStopd>();
  const s = (host: TestHost): TestStopd => stopd.get(host.name) as TestStopd;
  let historyOn = true;
  /** h2's connection to h3 (asked about by the IDS) and h1's connection to h2 (asked about by h2). */
  let h2ToH3 = 0;
  let h1ToH2 = 0;

  before(async () => {
    net = await createTestNet({
      hosts: [
        { name: 'h1', address: '192.0.2.21' },
        { name: 'h2', address: '192.0.2.22' },
        { name: 'h3', address: '192.0.2.23' },
        { name: 'ids', address: '192.0.2.29' },
      ],
    });
    for (const name of ['h1', 'h2', 'h3']) stopd.set(name, await net.host(name).startStopd());
    historyOn = [...stopd.values()].every((d) => d.stderr().includes('History is on'));
    if (!historyOn) return;
    const [h1, h2, h3] = ['h1', 'h2', 'h3'].map((name) => net.host(name)) as [TestHost, TestHost, TestHost];

    // Login services on h2 and h3, run by nobody as well: a user's session, not root's.
    const services = [h2, h3].map((host) =>
      host.spawn(['socat', `TCP-LISTEN:${SHELL_PORT},bind=${host.address},reuseaddr,fork`, 'EXEC:/bin/sh,stderr'], { stdio: 'ignore', uid: NOBODY }),
    );
    for (const host of [h2, h3]) await host.waitForListener(SHELL_PORT);
    const user = h1.spawn(['socat', '-', `TCP:${h2.address}:${SHELL_PORT}`], { stdio: ['pipe', 'pipe', 'ignore'], uid: NOBODY });
    let output = '';
    user.stdout?.setEncoding('utf8');
    user.stdout?.on('data', (chunk: string) => (output += chunk));
    h1ToH2 = await peerPort(h2, SHELL_PORT, { fromAddress: h1.address });
    // On h2, the user hops on to h3 (no `exec`: the shell waits for it, as after `ssh h3`).
    user.stdin?.write(`socat - TCP:${h3.address}:${SHELL_PORT}\n`);
    h2ToH3 = await peerPort(h3, SHELL_PORT, { fromAddress: h2.address });
    // On h3, something runs and answers back through the chain.
    user.stdin?.write(`echo ${MARKER} $(id -u)\n`);
    await eventually('the command on h3 to answer', () => output.includes(`${MARKER} ${NOBODY}`));

    // Each daemon must have read the processes while they existed (its rings are drained
    // on a timer): wait for the captures, never for a fixed time.
    await waitForRow(s(h1), { port: h1ToH2, remote: h2.address, remotePort: SHELL_PORT }, (r) => r.capturedAt !== null);
    await waitForRow(s(h2), { port: h2ToH3, remote: h3.address, remotePort: SHELL_PORT }, (r) => r.capturedAt !== null);

    // Logout: the user's input ends, each shell and relay exits in turn, then the services stop.
    user.stdin?.end();
    await waitForExit(user);
    for (const service of services) service.kill('SIGTERM');
    await Promise.all(services.map(waitForExit));
    await waitForRow(s(h1), { port: h1ToH2, remote: h2.address, remotePort: SHELL_PORT }, (r) => r.closedAt !== null);
    await waitForRow(s(h2), { port: h2ToH3, remote: h3.address, remotePort: SHELL_PORT }, (r) => r.closedAt !== null);
  });
  after(async () => {
    await net?.destroy();
  });

  test('after logout no connection of the chain is open and no process of it is left', async (t) => {
    if (!historyOn) return t.skip('the kernel refused the recorder on this machine');
    for (const name of ['h1', 'h2', 'h3']) {
      const host = net.host(name);
      assert.deepEqual(await chainSocketsAfterClose(host), [], `${name} still holds chain sockets`);
      assert.deepEqual(otherProcesses(host, s(host)), [], `${name}: only pid 1 and stopd are left`);
    }
  });

  for (const type of ['SV_REC', 'ID_REC'] as const) {
    test(`an IDS asks h2 with CL_IP and ${type} about its closed connection to h3: h2 and h1 answer from history`, async (t) => {
      if (!historyOn) return t.skip('the kernel refused the recorder on this machine');
      const [h1, h2, h3, ids] = ['h1', 'h2', 'h3', 'ids'].map((name) => net.host(name)) as [TestHost, TestHost, TestHost, TestHost];
      assert.deepEqual(await chainSockets(h2), [], 'the connection is closed before the question');
      const sid = type === 'SV_REC' ? '1413' : '1414';
      const { code, line } = await queryFrom(ids, h2.address, { client: h2ToH3, server: SHELL_PORT }, { type, sid, ip: h3.address });
      assert.equal(code, 0, line);
      const h2Token = TOKEN_REPLY.exec(line)?.[3];
      assert.ok(h2Token, `h2 replied ${line}`);

      // h2 recursed to h1 about h1's (closed) connection to it, and h1 gave a token.
      const up = await eventually('h2 to record the answer of h1', () => upstreams(s(h2), h2Token).find((e) => e.outcome !== undefined));
      assert.equal(up.outcome, 'token', JSON.stringify(up));
      assert.equal((up.peer as { address: string }).address, h1.address);
      assert.match(String(up.request), new RegExp(`^${h1ToH2},${SHELL_PORT}:${type}:${sid}$`));
      const h1Token = String(up.token);
      const h1Reply = await eventually("h1's reply entry", () => replies(s(h1)).find((e) => e.token === h1Token));
      assert.equal(h1Reply.source, 'history');
      assert.equal(h1Reply.sid, sid);
      const h2Reply = replies(s(h2)).find((e) => e.token === h2Token);
      assert.equal(h2Reply?.source, 'history');

      if (type === 'ID_REC') {
        assert.equal(h1Reply.record, undefined, 'ID_REC saves no record');
        assert.equal(h1Reply.uid, NOBODY);
        return;
      }
      // h1's record names the user's relay client, its user and its command line, from history.
      const record = await redeemJson(s(h1), h1Token);
      assert.equal(record.verdict, 'verified');
      assert.equal(record.source, 'history');
      const history = record.history as { uid: number; comm: string; closedAt: string | null; capturedAt: string | null };
      assert.equal(history.uid, NOBODY);
      assert.equal(history.comm, 'socat');
      assert.notEqual(history.closedAt, null);
      const processes = record.processes as { name: string; user: string | null; cmdline?: string[] }[];
      assert.equal(processes[0]?.name, 'socat');
      assert.equal(processes[0]?.user, 'nobody');
      assert.deepEqual(processes[0]?.cmdline, ['socat', '-', `TCP:${h2.address}:${SHELL_PORT}`]);
      assert.deepEqual(record.upstream, [], 'h1 is where the user sat');
      // h2's record: the relay client on h2, and h1 as its upstream.
      const h2Record = await redeemJson(s(h2), h2Token);
      assert.equal(h2Record.source, 'history');
      const h2Processes = h2Record.processes as { name: string; user: string | null; cmdline?: string[] }[];
      assert.deepEqual(h2Processes[0]?.cmdline, ['socat', '-', `TCP:${h3.address}:${SHELL_PORT}`]);
      assert.equal(h2Processes[0]?.user, 'nobody');
      assert.deepEqual(
        (h2Record.upstream as { remote: { address: string; port: number } }[]).map((u) => u.remote),
        [{ address: h1.address, port: h1ToH2 }],
      );
    });
  }

  test('each daemon journals only its own network namespace', async (t) => {
    if (!historyOn) return t.skip('the kernel refused the recorder on this machine');
    const addresses = new Map(['h1', 'h2', 'h3'].map((name) => [name, net.host(name).address]));
    for (const [name, address] of addresses) {
      const rows = await historyRows(s(net.host(name)));
      if (name !== 'h3') assert.ok(rows.length > 0, `${name} journaled its hop`);
      const foreign = rows.filter((row) => row.local.address !== address);
      assert.deepEqual(foreign, [], `${name} journaled another host's connections`);
    }
    // h3 made no outbound connection of the chain: none of h1's or h2's is in its journal.
    assert.ok(!(await historyRows(s(net.host('h3')))).some((row) => row.remote.port === SHELL_PORT));
  });
});
