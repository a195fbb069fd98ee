/**
 * NAT gateway mode (issue 15, paper 6.3): test hosts IN -- GW -- OUT, GW masquerading the
 * inside network with nftables and running `stopd --nat` (test/support/nat-net.ts).
 */
import assert from 'node:assert/strict';
import { execFile, type ChildProcess } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { STOPCTL } from './support/daemon.js';
import { eventually, peerPort, queryFrom } from './support/chain.js';
import { makeNatGateway } from './support/nat-net.js';
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
});
