/**
 * Recursive traceback across real test hosts (paper 3.1.3, 3.1.4, 3.7, 6): each host is a
 * network + PID namespace running the real daemon on port 113.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { STOPCTL } from './support/daemon.js';
import { eventually, hopThrough, peerPort, queryFrom, SHELL_PORT, shellConnectionPort, startShellService } from './support/chain.js';
import { createTestNet, readLedger, type TestHost, type TestNet, type TestStopd } from './support/testnet.js';

const run = promisify(execFile);
const isRoot = process.getuid?.() === 0;
const skip = isRoot ? false : 'needs root: creates network and PID namespaces';
const TOKEN_REPLY = /^(\d+),(\d+):USERID:OTHER:([0-9a-f]{64})$/;

type Entry = Record<string, unknown>;

function replies(stopd: TestStopd): Entry[] {
  return readLedger(stopd.storeDir).filter((e) => e.kind === 'reply');
}

function upstreams(stopd: TestStopd, parentToken?: string): Entry[] {
  return readLedger(stopd.storeDir).filter((e) => e.kind === 'upstream' && (parentToken === undefined || e.parentToken === parentToken));
}

async function redeemJson(stopd: TestStopd, token: string): Promise<Record<string, unknown>> {
  const { stdout } = await run(process.execPath, [STOPCTL, 'redeem', token, '--store', stopd.storeDir, '--json']);
  return JSON.parse(stdout) as Record<string, unknown>;
}

interface RecordProcess {
  pid: number;
  name: string;
  role: string;
  sockets: { kind: string; local?: { address: string; port: number }; remote?: { address: string; port: number }; queried?: boolean }[];
}

describe('SV_REC walks a chain of four hosts back to the first', { skip }, () => {
  let net: TestNet;
  const stopd = new Map<string, TestStopd>();
  let h: TestHost[];

  before(async () => {
    net = await createTestNet({
      hosts: [1, 2, 3, 4].map((n) => ({ name: `h${n}`, address: `192.0.2.${10 + n}` })),
    });
    h = net.hosts.slice();
    for (const host of h) stopd.set(host.name, await host.startStopd());
    for (const host of h.slice(1)) await startShellService(host);
    await hopThrough(h[0] as TestHost, h.slice(1));
  });
  after(async () => {
    await net?.destroy();
  });

  test('each hop saves its processes, replies, and the chain of tokens reaches h1', async () => {
    const [h1, h2, h3, h4] = h as [TestHost, TestHost, TestHost, TestHost];
    const s = (host: TestHost): TestStopd => stopd.get(host.name) as TestStopd;
    // The investigator on h4 asks h3 about h4's inbound shell connection.
    const port = await shellConnectionPort(h4, h3.address);
    const sid = '2718281828';
    const { code, line } = await queryFrom(h4, h3.address, { client: port, server: SHELL_PORT }, { type: 'SV_REC', sid });
    assert.equal(code, 0, line);
    const h3Token = TOKEN_REPLY.exec(line)?.[3];
    assert.ok(h3Token, `h3 replied ${line}`);

    // h3 asks h2, h2 asks h1; each upstream outcome lands in the asking host's ledger.
    const h3Up = await eventually('h3 to record the answer of h2', () => upstreams(s(h3), h3Token).find((e) => e.outcome === 'token'));
    const h2Token = String(h3Up.token);
    assert.equal((h3Up.peer as { address: string }).address, h2.address);
    const h2Up = await eventually('h2 to record the answer of h1', () => upstreams(s(h2), h2Token).find((e) => e.outcome === 'token'));
    const h1Token = String(h2Up.token);
    assert.equal((h2Up.peer as { address: string }).address, h1.address);

    // The tokens each host recorded are the ones the previous host issued (and nobody else saw).
    assert.ok(replies(s(h2)).some((e) => e.token === h2Token && e.type === 'SV_REC' && e.sid === sid));
    assert.ok(replies(s(h1)).some((e) => e.token === h1Token && e.type === 'SV_REC' && e.sid === sid));
    // h1 is where the user sat: nothing inbound behind the session, the chain ends there.
    await eventually('h1 to finish', () => replies(s(h1)).length > 0);
    assert.deepEqual(upstreams(s(h1)), []);
    assert.deepEqual(upstreams(s(h4)), [], 'the investigator host asked directly, its daemon did nothing');

    // Redeeming at every hop shows the right processes and the right upstream link.
    for (const [host, token, previous] of [
      [h3, h3Token, h2],
      [h2, h2Token, h1],
    ] as const) {
      const record = await redeemJson(s(host), token);
      assert.equal(record.verdict, 'verified');
      const processes = record.processes as RecordProcess[];
      const queried = processes.find((p) => p.sockets.some((so) => so.queried === true));
      assert.equal(queried?.name, 'socat', `${host.name}: the hop's client holds the queried socket`);
      assert.equal(queried?.role, 'primary');
      const inbound = processes.find((p) =>
        p.sockets.some((so) => so.kind === 'tcp' && so.local?.port === SHELL_PORT && so.remote?.address === previous.address),
      );
      assert.ok(inbound, `${host.name}: the shell service process holding the connection from ${previous.name}`);
      assert.equal(inbound.role, 'primary', 'it is an ancestor of the hop client');
      const upstream = record.upstream as { remote: { address: string } }[];
      assert.deepEqual(
        upstream.map((u) => u.remote.address),
        [previous.address],
      );
    }
    const first = await redeemJson(s(h1), h1Token);
    assert.equal(first.verdict, 'verified');
    assert.deepEqual(first.upstream, []);
    assert.ok((first.processes as RecordProcess[]).some((p) => p.name === 'socat' && p.role === 'primary'));

    // stopctl trace on h3 shows the port pair asked and h2's token.
    const { stdout } = await run(process.execPath, [STOPCTL, 'trace', h3Token, '--store', s(h3).storeDir, '--json']);
    const trace = JSON.parse(stdout) as { upstream: { host: string; outcome: string; token: string; request: string }[] };
    assert.equal(trace.upstream.length, 1);
    assert.equal(trace.upstream[0]?.host, h2.address);
    assert.equal(trace.upstream[0]?.outcome, 'token');
    assert.equal(trace.upstream[0]?.token, h2Token);
    assert.match(trace.upstream[0]?.request ?? '', new RegExp(`^\\d+,${SHELL_PORT}:SV_REC:${sid}$`));

    // Community ID joins the hops: h3's inbound connection from h2 (in its record and its
    // trace) and h2's outbound connection to h3 (in h2's record) are one flow, seen from each end.
    const h3Record = (await redeemJson(s(h3), h3Token)) as { upstream: { communityId?: string }[]; connection: { communityId?: string } };
    const h2Record = (await redeemJson(s(h2), h2Token)) as { connection: { communityId?: string } };
    const joined = h2Record.connection.communityId;
    assert.match(joined ?? '', /^1:[A-Za-z0-9+/]{27}=$/);
    assert.equal(h3Record.upstream[0]?.communityId, joined);
    assert.equal((trace.upstream[0] as { connection?: { communityId?: string } } | undefined)?.connection?.communityId, joined);
    assert.notEqual(h3Record.connection.communityId, joined, "h3's own queried connection is another flow");
  });

  test('ID_REC follows the same chain without saving records', async () => {
    const [, h2, h3, h4] = h as [TestHost, TestHost, TestHost, TestHost];
    const s = (host: TestHost): TestStopd => stopd.get(host.name) as TestStopd;
    const port = await shellConnectionPort(h4, h3.address);
    const { line } = await queryFrom(h4, h3.address, { client: port, server: SHELL_PORT }, { type: 'ID_REC', sid: '99' });
    const token = TOKEN_REPLY.exec(line)?.[3];
    assert.ok(token, line);
    const up = await eventually('h3 to ask h2', () => upstreams(s(h3), token).find((e) => e.outcome === 'token'));
    assert.equal(up.type, 'ID_REC');
    const h2Entry = await eventually('h2 reply entry', () => replies(s(h2)).find((e) => e.token === up.token));
    assert.equal(h2Entry.record, undefined, 'ID_REC saves no record');
  });

  test('a requester that repeats a recursive request gets a token but no processing', async () => {
    const [, , h3, h4] = h as [TestHost, TestHost, TestHost, TestHost];
    const s = (host: TestHost): TestStopd => stopd.get(host.name) as TestStopd;
    const port = await shellConnectionPort(h4, h3.address);
    const first = await queryFrom(h4, h3.address, { client: port, server: SHELL_PORT }, { type: 'SV_REC', sid: '4242' });
    const second = await queryFrom(h4, h3.address, { client: port, server: SHELL_PORT }, { type: 'SV_REC', sid: '4242' });
    const firstToken = TOKEN_REPLY.exec(first.line)?.[3];
    const secondToken = TOKEN_REPLY.exec(second.line)?.[3];
    assert.ok(firstToken && secondToken && firstToken !== secondToken, 'both are fresh tokens of the same form');
    const repeat = replies(s(h3)).find((e) => e.token === secondToken);
    assert.equal(repeat?.processed, false);
    assert.equal(repeat?.reason, 'repeat');
    assert.deepEqual(upstreams(s(h3), secondToken), []);
  });
});

describe('partial deployment and CL_IP', { skip }, () => {
  let net: TestNet;
  const stopd = new Map<string, TestStopd>();

  before(async () => {
    net = await createTestNet({
      hosts: [
        { name: 'h1', address: '198.51.100.11' },
        { name: 'h2', address: '198.51.100.12' },
        { name: 'h3', address: '198.51.100.13' },
        { name: 'ids', address: '198.51.100.99' },
      ],
    });
    // h1 runs no stopd: partial deployment (paper 6.1).
    for (const name of ['h2', 'h3']) stopd.set(name, await net.host(name).startStopd());
    for (const name of ['h2', 'h3']) await startShellService(net.host(name));
    await hopThrough(net.host('h1'), [net.host('h2'), net.host('h3')]);
  });
  after(async () => {
    await net?.destroy();
  });

  test('an IDS off the chain asks with CL_IP, gets tokens only, and the trace proceeds and stops where stopd is missing', async () => {
    const h2 = net.host('h2');
    const h3 = net.host('h3');
    const ids = net.host('ids');
    const port = await shellConnectionPort(h3, h2.address);
    // The IDS asks h2 about h2's connection to h3 (CL_IP = h3): it is not an end of it.
    const { code, line } = await queryFrom(ids, h2.address, { client: port, server: SHELL_PORT }, { type: 'SV_REC', sid: '7', ip: h3.address });
    assert.equal(code, 0, line);
    const token = TOKEN_REPLY.exec(line)?.[3];
    assert.ok(token, line);
    const h2d = stopd.get('h2') as TestStopd;
    const up = await eventually('h2 to try h1', () => upstreams(h2d, token)[0]);
    assert.equal((up.peer as { address: string }).address, '198.51.100.11');
    assert.equal(up.outcome, 'refused');
    const { stdout } = await run(process.execPath, [STOPCTL, 'trace', token, '--store', h2d.storeDir]);
    assert.match(stdout, /refused: no STOP daemon listens there/);

    // CL_IP requests never produce errors, even about nothing.
    const nothing = await queryFrom(ids, h2.address, { client: 1, server: 2 }, { type: 'SV_REC', sid: '8', ip: h3.address });
    assert.match(nothing.line, TOKEN_REPLY);
    const malformed = await queryFrom(ids, h2.address, { client: 1, server: 2 }, { type: 'ID', ip: '203.0.113.7' });
    assert.match(malformed.line, TOKEN_REPLY);
  });
});

/**
 * The loop of paper figure 5: h2 listens on P1 and P3 and connects to h3:P2; h3 listens on P2,
 * connects back to h2:P3 and on to h4:P4. An SV_REC from h4 goes h3 -> h2 -> (h1, h3) -> h2,
 * where the repeat is detected.
 */
const LOOP_H2 = `
import socket, sys, time
p1 = socket.socket(); p1.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); p1.bind(('0.0.0.0', 7001)); p1.listen()
p3 = socket.socket(); p3.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); p3.bind(('0.0.0.0', 7003)); p3.listen()
print('listening', flush=True)
a, _ = p1.accept()
out = socket.create_connection((sys.argv[1], 7002))
b, _ = p3.accept()
print('ready', flush=True)
time.sleep(600)
`;
const LOOP_H3 = `
import socket, sys, time
p2 = socket.socket(); p2.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); p2.bind(('0.0.0.0', 7002)); p2.listen()
print('listening', flush=True)
a, _ = p2.accept()
back = socket.create_connection((sys.argv[1], 7003))
fwd = socket.create_connection((sys.argv[2], 7004))
print('ready', flush=True)
time.sleep(600)
`;

describe('loop and storm control', { skip }, () => {
  let net: TestNet;
  const stopd = new Map<string, TestStopd>();

  before(async () => {
    net = await createTestNet({ hosts: [1, 2, 3, 4].map((n) => ({ name: `h${n}`, address: `203.0.113.${10 + n}` })) });
    for (const host of net.hosts) stopd.set(host.name, await host.startStopd(['--max-fanout', '4']));
  });
  after(async () => {
    await net?.destroy();
  });

  test('the loop of figure 5 terminates and each host processes each (SID, connection) once', async () => {
    const [h1, h2, h3, h4] = net.hosts as [TestHost, TestHost, TestHost, TestHost];
    h4.spawn(['socat', 'TCP-LISTEN:7004,reuseaddr', 'EXEC:sleep 600'], { stdio: 'ignore' });
    await h4.waitForListener(7004);
    h2.spawn(['python3', '-c', LOOP_H2, h3.address], { stdio: 'ignore' });
    h3.spawn(['python3', '-c', LOOP_H3, h2.address, h4.address], { stdio: 'ignore' });
    await h2.waitForListener(7001);
    await h3.waitForListener(7002);
    h1.spawn(['socat', '-', `TCP:${h2.address}:7001`], { stdio: ['pipe', 'ignore', 'ignore'] });
    const port = await peerPort(h4, 7004, { fromAddress: h3.address });
    const sid = '5555';
    const { line } = await queryFrom(h4, h3.address, { client: port, server: 7004 }, { type: 'SV_REC', sid });
    assert.match(line, TOKEN_REPLY);

    const s = (host: TestHost): TestStopd => stopd.get(host.name) as TestStopd;
    // h2 is asked twice: by h3 about h2->h3:7002, and (through the loop) by h3 about the same
    // connection again, which it refuses to process.
    await eventually('h2 to see the repeat', () => replies(s(h2)).some((e) => e.sid === sid && e.processed === false));
    // Quiescence: every upstream request sent has its outcome recorded everywhere.
    await eventually('all upstream outcomes recorded', () =>
      net.hosts.every((host) => {
        const recorded = replies(s(host)).filter((e) => e.sid === sid);
        const expected = recorded.reduce((sum, e) => sum + (typeof e.upstream === 'number' ? e.upstream : 0), 0);
        return upstreams(s(host)).filter((e) => e.sid === sid).length === expected;
      }),
    );
    for (const host of net.hosts) {
      const processed = replies(s(host)).filter((e) => e.sid === sid && e.processed !== false);
      const keys = processed.map((e) => `${JSON.stringify(e.requester && (e.requester as { address: string }).address)} ${e.request as string}`);
      assert.equal(new Set(keys).size, keys.length, `${host.name} processed a (SID, connection) twice: ${keys.join('; ')}`);
    }
    // h1 was asked by h2 (about the 7001 connection) and had no STOP work of its own upstream.
    assert.ok(replies(s(h1)).some((e) => e.sid === sid));
    assert.deepEqual(upstreams(s(h1)), []);
  });

  test('a hub with many inbound connections asks at most --max-fanout upstream hosts', async () => {
    const [h1, h2, h3, h4] = net.hosts as [TestHost, TestHost, TestHost, TestHost];
    // A hub on h3: one process accepts 12 connections (from h1 and h2) and connects on to h4.
    const HUB = `
import socket, sys, time
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); l.bind(('0.0.0.0', 7100)); l.listen(64)
print('listening', flush=True)
conns = [l.accept()[0] for _ in range(12)]
out = socket.create_connection((sys.argv[1], 7104))
time.sleep(600)
`;
    h4.spawn(['socat', 'TCP-LISTEN:7104,reuseaddr', 'EXEC:sleep 600'], { stdio: 'ignore' });
    await h4.waitForListener(7104);
    h3.spawn(['python3', '-c', HUB, h4.address], { stdio: 'ignore' });
    await h3.waitForListener(7100);
    for (let i = 0; i < 6; i++) {
      h1.spawn(['socat', '-', `TCP:${h3.address}:7100`], { stdio: ['pipe', 'ignore', 'ignore'] });
      h2.spawn(['socat', '-', `TCP:${h3.address}:7100`], { stdio: ['pipe', 'ignore', 'ignore'] });
    }
    const port = await peerPort(h4, 7104, { fromAddress: h3.address });
    const sid = '6666';
    const { line } = await queryFrom(h4, h3.address, { client: port, server: 7104 }, { type: 'SV_REC', sid });
    const token = TOKEN_REPLY.exec(line)?.[3];
    assert.ok(token, line);
    const s3 = stopd.get('h3') as TestStopd;
    const entry = await eventually('h3 reply', () => replies(s3).find((e) => e.token === token));
    assert.equal(entry.upstream, 12, 'the closure found every inbound connection of the hub');
    const outcomes = await eventually('h3 to record 12 outcomes', () => {
      const list = upstreams(s3, token);
      return list.length === 12 ? list : undefined;
    });
    const asked = outcomes.filter((e) => e.outcome !== 'skipped');
    assert.equal(asked.length, 4, 'at most --max-fanout asked');
    assert.equal(outcomes.filter((e) => e.outcome === 'skipped').length, 8);
  });

  test('the connection closed before the recursive request arrives: upstream answers from its history, or says so without one', async () => {
    const [, h2, h3, h4] = net.hosts as [TestHost, TestHost, TestHost, TestHost];
    // h3 holds a connection from h2 that h2 has already closed (CLOSE_WAIT on h3), and an
    // outbound connection to h4. By the time h2 is asked, its end is gone.
    const HOLDER = `
import socket, sys, time
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); l.bind(('0.0.0.0', 7200)); l.listen()
print('listening', flush=True)
a, _ = l.accept()
out = socket.create_connection((sys.argv[1], 7204))
time.sleep(600)
`;
    h4.spawn(['socat', 'TCP-LISTEN:7204,reuseaddr', 'EXEC:sleep 600'], { stdio: 'ignore' });
    await h4.waitForListener(7204);
    h3.spawn(['python3', '-c', HOLDER, h4.address], { stdio: 'ignore' });
    await h3.waitForListener(7200);
    // h2 connects and closes at once.
    const closed = await h2.exec(['python3', '-c', `import socket; s = socket.create_connection(('${h3.address}', 7200)); s.close()`]);
    assert.equal(closed.code, 0, closed.stderr);
    const port = await peerPort(h4, 7204, { fromAddress: h3.address });
    const { line } = await queryFrom(h4, h3.address, { client: port, server: 7204 }, { type: 'SV_REC', sid: '7777' });
    const token = TOKEN_REPLY.exec(line)?.[3];
    assert.ok(token, line);
    const s3 = stopd.get('h3') as TestStopd;
    const up = await eventually('h3 to record h2 answer', () => upstreams(s3, token)[0]);
    assert.equal((up.peer as { address: string }).address, h2.address);
    const s2 = stopd.get('h2') as TestStopd;
    if (/History is on/.test(s2.stderr())) {
      // h2 recorded the connection (issue 14): it answers for it from its history journal.
      assert.equal(up.outcome, 'token', JSON.stringify(up));
      const answered = await eventually('h2 reply', () => replies(s2).find((e) => e.token === up.token));
      assert.equal(answered.source, 'history');
    } else {
      // Without history, a closed connection is nobody's any more.
      assert.equal(up.outcome, 'error');
      assert.equal(up.error, 'NO-USER');
    }
  });
});
