/**
 * NAT gateway mode (issue 15, paper 6.3): test hosts IN -- GW -- OUT, GW masquerading the
 * inside network with nftables and running `stopd --nat` (test/support/nat-net.ts).
 */
import assert from 'node:assert/strict';
import { execFile, spawnSync, type ChildProcess } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { STOPCTL } from './support/daemon.js';
import { eventually, peerPort, queryFrom, SHELL_PORT, startShellService } from './support/chain.js';
import { addPortForward, INSIDE_GATEWAY, makeNatGateway } from './support/nat-net.js';
import { createTestNet, readLedger, type TestHost, type TestNet, type TestStopd } from './support/testnet.js';

const run = promisify(execFile);
const isRoot = process.getuid?.() === 0;
const skip = isRoot ? false : 'needs root: creates network and PID namespaces';
const TOKEN_REPLY = /^(\d+),(\d+):USERID:OTHER:([0-9a-f]{64})$/;
const SERVER_PORT = 8080;
const NOBODY = 65534;

type Entry = Record<string, unknown>;

function entries(stopd: TestStopd, kind: string): Entry[] {
  return readLedger(stopd.storeDir).filter((e) => e.kind === kind);
}

async function stopctl(args: readonly string[]): Promise<string> {
  const { stdout } = await run(process.execPath, [STOPCTL, ...args]);
  return stdout;
}

interface HistoryRow {
  readonly local: { readonly port: number };
  readonly capturedAt: string | null;
  readonly closedAt: string | null;
}

/**
 * Waits until `stopd`'s history journal holds a row of local port `port` that passes `ready`:
 * the recorder drains its rings on a timer, so the row's arrival is polled for (bounded).
 */
async function historyRow(stopd: TestStopd, port: number, ready: (row: HistoryRow) => boolean): Promise<HistoryRow> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const rows = JSON.parse(await stopctl(['history', '--store', stopd.storeDir, '--port', String(port), '--json'])) as HistoryRow[];
    const row = rows.find((r) => r.local.port === port && ready(r));
    if (row !== undefined) return row;
    if (Date.now() > deadline) throw new Error(`The history journal of ${stopd.storeDir} holds no matching row of local port ${port}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

interface RecordProcess {
  pid: number;
  name: string;
  role: string;
  uid: { real: number; effective: number };
  sockets: { kind: string; local?: { address: string; port: number }; remote?: { address: string; port: number }; queried?: boolean }[];
}

describe('stopd --nat on a masquerading gateway', { skip }, () => {
  let net: TestNet;
  let inside: TestHost;
  let gateway: TestHost;
  let outside: TestHost;
  let inStopd: TestStopd;
  let gwStopd: TestStopd;
  let user: ChildProcess;
  /** The user's connection as IN sees it, and as OUT sees it (GW's translated port). */
  let insidePort: number;
  let translatedPort: number;

  before(async () => {
    net = await createTestNet({
      hosts: [
        { name: 'in', address: '198.51.100.10' },
        { name: 'gw', address: '192.0.2.1' },
        { name: 'out', address: '192.0.2.20' },
      ],
    });
    [inside, gateway, outside] = [net.host('in'), net.host('gw'), net.host('out')];
    await makeNatGateway(gateway, [inside]);
    inStopd = await inside.startStopd();
    gwStopd = await gateway.startStopd(['--nat']);
    outside.spawn(['socat', `TCP-LISTEN:${SERVER_PORT},reuseaddr,fork`, 'EXEC:cat'], { stdio: 'ignore' });
    await outside.waitForListener(SERVER_PORT);
    // A user without privileges on IN opens a connection to OUT's server through the masquerade.
    user = inside.spawn(['socat', '-', `TCP:${outside.address}:${SERVER_PORT}`], { uid: NOBODY, stdio: ['pipe', 'ignore', 'ignore'] });
    translatedPort = await peerPort(outside, SERVER_PORT, { fromAddress: gateway.address });
    const { stdout } = await inside.exec(['ss', '-Htn', 'state', 'established', `( dport = :${SERVER_PORT} )`]);
    insidePort = Number(/:(\d+)\s+\S+:\d+\s*$/m.exec(stdout)?.[1]);
    assert.ok(insidePort > 0, `IN's side of the connection: ${stdout}`);
  });
  after(async () => {
    user?.stdin?.end();
    await net?.destroy();
  });

  test('OUT asks GW with SV_REC: GW replies its own token and links IN\'s, whose record names the user\'s process', async () => {
    const sid = '1593';
    const { code, line } = await queryFrom(outside, gateway.address, { client: translatedPort, server: SERVER_PORT }, { type: 'SV_REC', sid });
    assert.equal(code, 0, line);
    const gwToken = TOKEN_REPLY.exec(line)?.[3];
    assert.ok(gwToken, `GW replied ${line}`);

    // GW's ledger: the reply names the translation, then the upstream link to IN.
    const reply = entries(gwStopd, 'reply').find((e) => e.token === gwToken);
    assert.equal(reply?.finding, 'translated');
    assert.equal(reply?.reason, 'nat');
    const translation = reply?.translation as { original: { source: { address: string; port: number } }; sourceNat: boolean };
    assert.deepEqual(translation.original.source, { address: inside.address, port: insidePort });
    assert.equal(translation.sourceNat, true);
    const link = await eventually('GW to record the answer of IN', () => entries(gwStopd, 'upstream').find((e) => e.parentToken === gwToken && e.outcome !== undefined));
    assert.equal(link.outcome, 'token', JSON.stringify(link));
    assert.equal((link.peer as { address: string }).address, inside.address);
    assert.equal(link.direction, 'translated');
    assert.equal(link.request, `${insidePort},${SERVER_PORT}:SV_REC:${sid}:${outside.address}`);
    const inToken = String(link.token);
    assert.notEqual(inToken, gwToken, 'the inside host issued a token of its own');
    assert.ok(!line.includes(inToken), 'the requester never sees the inside host\'s token');

    // IN's record of that token names the user's process and its uid.
    const record = JSON.parse(await stopctl(['redeem', inToken, '--store', inStopd.storeDir, '--json'])) as { verdict: string; processes: RecordProcess[]; request: { line: string } };
    assert.equal(record.verdict, 'verified');
    const holder = record.processes.find((p) => p.sockets.some((s) => s.queried === true));
    assert.equal(holder?.name, 'socat');
    assert.equal(holder?.uid.real, NOBODY);
    assert.equal(holder?.role, 'primary');
    const inReply = entries(inStopd, 'reply').find((e) => e.token === inToken);
    assert.equal((inReply?.requester as { address: string }).address, '198.51.100.1', 'GW asked from its inside address');
    assert.equal(inReply?.clientIp, outside.address);

    // stopctl trace on GW shows the link.
    const trace = JSON.parse(await stopctl(['trace', gwToken, '--store', gwStopd.storeDir, '--json'])) as { upstream: { host: string; outcome: string; token: string; direction: string }[] };
    assert.deepEqual(
      trace.upstream.map((u) => [u.host, u.outcome, u.token, u.direction]),
      [[inside.address, 'token', inToken, 'translated']],
    );
    const text = await stopctl(['trace', gwToken, '--store', gwStopd.storeDir]);
    assert.match(text, new RegExp(`${inside.address.replaceAll('.', '\\.')}:113\\s+asked "${insidePort},${SERVER_PORT}:SV_REC:${sid}:`));
  });

  test('a plain RFC 1413 query gets a token, and GW asks IN with ID', async () => {
    const { code, line } = await queryFrom(outside, gateway.address, { client: translatedPort, server: SERVER_PORT });
    assert.equal(code, 0, line);
    const gwToken = TOKEN_REPLY.exec(line)?.[3];
    assert.ok(gwToken, line);
    const link = await eventually('GW to ask IN', () => entries(gwStopd, 'upstream').find((e) => e.parentToken === gwToken && e.outcome !== undefined));
    assert.equal(link.outcome, 'token', JSON.stringify(link));
    assert.equal(link.type, 'ID');
    assert.equal(link.sid, undefined);
    const inReply = entries(inStopd, 'reply').find((e) => e.token === link.token);
    assert.equal(inReply?.uid, NOBODY, 'IN\'s ID token stands for the user');
  });

  test('a connection GW did not translate still gets NO-USER', async () => {
    const { line } = await queryFrom(outside, gateway.address, { client: translatedPort + 1 > 65535 ? 1 : translatedPort + 1, server: SERVER_PORT });
    assert.match(line, /:ERROR:NO-USER$/);
  });
  test('closed through NAT: after the user\'s process exited and conntrack dropped the flow, GW answers from its NAT journal and IN from its history', async (t) => {
    // Runs last in this suite: it ends the user's connection.
    const historyOn = inStopd.stderr().includes('History is on');
    if (historyOn) {
      // The process must still exist when IN's daemon captures it: wait for the capture first.
      await historyRow(inStopd, insidePort, (row) => row.capturedAt !== null);
    }
    const closed = new Promise<void>((resolve) => user.once('exit', () => resolve()));
    user.stdin?.end();
    await closed;
    if (historyOn) await historyRow(inStopd, insidePort, (row) => row.closedAt !== null);
    const deleted = await gateway.exec(['conntrack', '-D', '-p', 'tcp', '--orig-src', inside.address, '--orig-port-src', String(insidePort)]);
    assert.equal(deleted.code, 0, deleted.stderr);
    const listed = await gateway.exec(['conntrack', '-L', '-p', 'tcp', '--orig-src', inside.address, '--orig-port-src', String(insidePort)]);
    assert.doesNotMatch(listed.stdout, new RegExp(`sport=${insidePort}\\b`), 'conntrack has forgotten the flow');
    const socketsLeft = await inside.exec(['ss', '-Htn', `( sport = :${insidePort} )`]);
    assert.equal(socketsLeft.stdout.trim(), '', 'IN holds no socket of the connection any more');
    const sid = '2653';
    const { code, line } = await queryFrom(outside, gateway.address, { client: translatedPort, server: SERVER_PORT }, { type: 'SV_REC', sid });
    assert.equal(code, 0, line);
    const gwToken = TOKEN_REPLY.exec(line)?.[3];
    assert.ok(gwToken, line);
    const reply = entries(gwStopd, 'reply').find((e) => e.token === gwToken);
    const translation = reply?.translation as { source: string; closed?: string; original: { source: { address: string; port: number } } } | undefined;
    assert.equal(translation?.source, 'journal', JSON.stringify(reply));
    assert.ok(translation.closed !== undefined && !Number.isNaN(Date.parse(translation.closed)), 'the journal knows when it closed');
    assert.deepEqual(translation.original.source, { address: inside.address, port: insidePort });
    // GW still asks IN about the original port pair, with CL_IP: a token whatever IN finds.
    const link = await eventually('GW to ask IN', () => entries(gwStopd, 'upstream').find((e) => e.parentToken === gwToken && e.outcome !== undefined));
    assert.equal(link.request, `${insidePort},${SERVER_PORT}:SV_REC:${sid}:${outside.address}`);
    assert.equal(link.outcome, 'token');
    const inToken = String(link.token);
    const trace = JSON.parse(await stopctl(['trace', gwToken, '--store', gwStopd.storeDir, '--json'])) as { upstream: { host: string; outcome: string; token: string }[] };
    assert.deepEqual(trace.upstream.map((u) => [u.host, u.outcome, u.token]), [[inside.address, 'token', inToken]]);

    // IN answered from its history: its record names the user's process, which no longer exists.
    if (!historyOn) return t.skip(`IN cannot record connections (no eBPF history here): ${inStopd.stderr()}`);
    const record = JSON.parse(await stopctl(['redeem', inToken, '--store', inStopd.storeDir, '--json'])) as {
      verdict: string;
      source?: string;
      history?: { uid: number; closedAt: string | null; capturedAt: string | null };
      processes: RecordProcess[];
    };
    assert.equal(record.verdict, 'verified');
    assert.equal(record.source, 'history', JSON.stringify(record));
    assert.equal(record.history?.uid, NOBODY);
    assert.notEqual(record.history?.closedAt, null);
    assert.equal(record.processes[0]?.name, 'socat', JSON.stringify(record.processes));
    assert.equal(record.processes[0]?.uid.real, NOBODY);
  });

});

describe('recursion through a NAT gateway: a chain through masquerade, and a port forward', { skip }, () => {
  let net: TestNet;
  const stopd = new Map<string, TestStopd>();
  const s = (host: TestHost): TestStopd => stopd.get(host.name) as TestStopd;
  const children: ChildProcess[] = [];

  before(async () => {
    net = await createTestNet({
      hosts: [
        { name: 'h1', address: '198.51.100.10' },
        { name: 'inner', address: '198.51.100.30' },
        { name: 'gw', address: '192.0.2.1' },
        { name: 'h2', address: '192.0.2.20' },
        { name: 'h3', address: '192.0.2.30' },
      ],
    });
    const [h1, inner, gw] = [net.host('h1'), net.host('inner'), net.host('gw')];
    await makeNatGateway(gw, [h1, inner]);
    await addPortForward(gw, { port: SHELL_PORT, target: h1.address, targetPort: SHELL_PORT });
    for (const host of net.hosts) {
      if (host.name === 'inner' || host.name === 'h3') continue;
      stopd.set(host.name, await host.startStopd(host === gw ? ['--nat'] : []));
    }
    for (const host of [net.host('h1'), net.host('h2'), net.host('h3')]) await startShellService(host);
  });
  after(async () => {
    for (const child of children) child.stdin?.end();
    await net?.destroy();
  });

  /** The test host with `address` (the gateway has two). */
  const hostAt = (address: string): TestHost | undefined => (address === INSIDE_GATEWAY ? net.host('gw') : net.hosts.find((h) => h.address === address));

  /** The SV_REC chain from the investigator's query: [asked host, its token] for every hop that answered. */
  async function followChain(first: { host: TestHost; token: string }): Promise<{ host: string; token: string; link?: Entry }[]> {
    const hops: { host: string; token: string; link?: Entry }[] = [];
    let current: { host: TestHost; token: string } | undefined = first;
    while (current !== undefined) {
      const { host, token }: { host: TestHost; token: string } = current;
      const done: { links: Entry[] } = await eventually(`${host.name} to finish ${token}`, () => {
        const reply = entries(s(host), 'reply').find((e) => e.token === token);
        if (reply === undefined) return undefined;
        const links = entries(s(host), 'upstream').filter((e) => e.parentToken === token);
        return links.length >= Number(reply.upstream ?? 0) ? { links } : undefined;
      });
      const link: Entry | undefined = done.links.find((e) => e.outcome === 'token');
      hops.push({ host: host.name, token, ...(link === undefined ? {} : { link }) });
      const next: TestHost | undefined = link === undefined ? undefined : hostAt((link.peer as { address: string }).address);
      current = next === undefined || link === undefined ? undefined : { host: next, token: String(link.token) };
    }
    return hops;
  }

  test('H1 -> (masquerade) -> H2 -> H3: H3 asks H2 and the trace reaches H1\'s process through the gateway', async () => {
    const [h1, gw, h2, h3] = [net.host('h1'), net.host('gw'), net.host('h2'), net.host('h3')];
    const session = h1.spawn(['socat', '-', `TCP:${h2.address}:${SHELL_PORT}`], { uid: NOBODY, stdio: ['pipe', 'ignore', 'ignore'] });
    children.push(session);
    await peerPort(h2, SHELL_PORT, { fromAddress: gw.address });
    session.stdin?.write(`exec socat - TCP:${h3.address}:${SHELL_PORT}\n`);
    const port = await peerPort(h3, SHELL_PORT, { fromAddress: h2.address });
    const sid = '31415';
    const { line } = await queryFrom(h3, h2.address, { client: port, server: SHELL_PORT }, { type: 'SV_REC', sid });
    const h2Token = TOKEN_REPLY.exec(line)?.[3];
    assert.ok(h2Token, line);
    const hops = await followChain({ host: h2, token: h2Token });
    assert.deepEqual(hops.map((hop) => hop.host), ['h2', 'gw', 'h1']);
    assert.equal(hops[1]?.link?.direction, 'translated');
    const first = JSON.parse(await stopctl(['redeem', hops[2]?.token ?? '', '--store', s(h1).storeDir, '--json'])) as { verdict: string; processes: RecordProcess[] };
    assert.equal(first.verdict, 'verified');
    const holder = first.processes.find((p) => p.sockets.some((so) => so.queried === true));
    assert.equal(holder?.name, 'socat');
    assert.equal(holder?.uid.real, NOBODY, 'the user who started the chain on H1');
  });

  test('port forward: OUT -> GW:2222 (DNAT + SNAT) -> relay on IN -> a third host; the trace runs IN -> GW -> OUT', async () => {
    const [h1, inner, gw, h2] = [net.host('h1'), net.host('inner'), net.host('gw'), net.host('h2')];
    // inner plays the third host: a listener the relay on h1 connects on to.
    inner.spawn(['socat', `TCP-LISTEN:${SHELL_PORT + 1},reuseaddr,fork`, 'EXEC:cat'], { stdio: 'ignore' });
    await inner.waitForListener(SHELL_PORT + 1);
    // The user on OUT (h2) connects to the gateway's forwarded port and lands in h1's shell.
    const session = h2.spawn(['socat', '-', `TCP:${gw.address}:${SHELL_PORT}`], { uid: NOBODY, stdio: ['pipe', 'ignore', 'ignore'] });
    children.push(session);
    await peerPort(h1, SHELL_PORT, { fromAddress: INSIDE_GATEWAY });
    session.stdin?.write(`exec socat - TCP:${inner.address}:${SHELL_PORT + 1}\n`);
    const port = await peerPort(inner, SHELL_PORT + 1, { fromAddress: h1.address });
    const sid = '2718';
    const { line } = await queryFrom(inner, h1.address, { client: port, server: SHELL_PORT + 1 }, { type: 'SV_REC', sid });
    const h1Token = TOKEN_REPLY.exec(line)?.[3];
    assert.ok(h1Token, line);
    const hops = await followChain({ host: h1, token: h1Token });
    assert.deepEqual(hops.map((hop) => hop.host), ['h1', 'gw', 'h2'], JSON.stringify([...entries(s(h1), 'upstream'), ...entries(s(gw), 'reply')]));
    const gwReply = entries(s(gw), 'reply').find((e) => e.token === hops[1]?.token);
    assert.equal((gwReply?.translation as { destinationNat: boolean }).destinationNat, true);
    const last = JSON.parse(await stopctl(['redeem', hops[2]?.token ?? '', '--store', s(h2).storeDir, '--json'])) as { verdict: string; processes: RecordProcess[] };
    assert.equal(last.verdict, 'verified');
    const holder = last.processes.find((p) => p.sockets.some((so) => so.queried === true));
    assert.equal(holder?.name, 'socat');
    assert.equal(holder?.uid.real, NOBODY, 'the user on OUT who came in through the forward');
  });
});

// Compatibility (issue 15): the inside host runs Debian's oidentd (a plain IDENT daemon) instead
// of stopd. It runs inside the test host only: its own network namespace, port 113 there.
const hasOidentd = spawnSync('oidentd', ['--version'], { stdio: 'ignore' }).status === 0;

describe('an inside host running oidentd instead of stopd', { skip: skip !== false ? skip : hasOidentd ? false : 'needs oidentd (Debian package oidentd)' }, () => {
  let net: TestNet;
  let user: ChildProcess;
  let gwStopd: TestStopd;
  let insidePort: number;
  let translatedPort: number;

  before(async () => {
    net = await createTestNet({
      hosts: [
        { name: 'in', address: '198.51.100.10' },
        { name: 'gw', address: '192.0.2.1' },
        { name: 'out', address: '192.0.2.20' },
      ],
    });
    const [inside, gateway, outside] = [net.host('in'), net.host('gw'), net.host('out')];
    await makeNatGateway(gateway, [inside]);
    inside.spawn(['oidentd', '--foreground', '--nosyslog', '--address', inside.address, '--port', '113'], { stdio: 'ignore' });
    await inside.waitForListener(113);
    gwStopd = await gateway.startStopd(['--nat']);
    outside.spawn(['socat', `TCP-LISTEN:${SERVER_PORT},reuseaddr,fork`, 'EXEC:cat'], { stdio: 'ignore' });
    await outside.waitForListener(SERVER_PORT);
    user = inside.spawn(['socat', '-', `TCP:${outside.address}:${SERVER_PORT}`], { uid: NOBODY, stdio: ['pipe', 'ignore', 'ignore'] });
    translatedPort = await peerPort(outside, SERVER_PORT, { fromAddress: gateway.address });
    const { stdout } = await inside.exec(['ss', '-Htn', 'state', 'established', `( dport = :${SERVER_PORT} )`]);
    insidePort = Number(/:(\d+)\s+\S+:\d+\s*$/m.exec(stdout)?.[1]);
  });
  after(async () => {
    user?.stdin?.end();
    await net?.destroy();
  });

  for (const type of ['SV_REC', undefined] as const) {
    test(`${type ?? 'a plain RFC 1413 query'}: GW replies its token and records what oidentd answered`, async () => {
      const [inside, gateway, outside] = [net.host('in'), net.host('gw'), net.host('out')];
      const { line } = await queryFrom(outside, gateway.address, { client: translatedPort, server: SERVER_PORT }, type === undefined ? {} : { type, sid: '77' });
      const gwToken = TOKEN_REPLY.exec(line)?.[3];
      assert.ok(gwToken, line);
      const link = await eventually('GW to record oidentd\'s answer', () => entries(gwStopd, 'upstream').find((e) => e.parentToken === gwToken && e.outcome !== undefined));
      assert.equal((link.peer as { address: string }).address, inside.address);
      assert.ok(String(link.request).startsWith(`${insidePort},${SERVER_PORT}:`), String(link.request));
      // What oidentd says to that very question, asked directly from the gateway.
      const asked = String(link.request);
      const direct = await queryFrom(gateway, inside.address, { client: insidePort, server: SERVER_PORT }, { type: type ?? 'ID', ...(type === undefined ? {} : { sid: '77' }), ip: outside.address });
      const said = direct.line;
      assert.ok(said.length > 0, `oidentd answered ${JSON.stringify(asked)} directly: ${direct.stderr}`);
      assert.equal(link.reply, said, 'the ledger keeps the reply line as oidentd sent it');
      assert.ok(['user', 'error'].includes(String(link.outcome)), `outcome ${String(link.outcome)}`);
      if (link.outcome === 'error') assert.equal(link.error, /:ERROR:(.*)$/.exec(said)?.[1]?.trim());
      else assert.equal(link.user, /:USERID:[^:]*:(.*)$/.exec(said)?.[1]);
    });
  }
});
