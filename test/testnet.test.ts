/**
 * The multi-host test harness (support/testnet.ts): hosts are separate network and PID
 * namespaces on one bridge, reach each other and nothing else, run a real stopd each, and
 * leave nothing behind. Every connection here goes between test hosts or to loopback.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { after, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { STOPCTL } from './support/daemon.js';
import { checkTestAddress, cleanupStale, createTestNet, readLedger, startHopChain, type TestHost, type TestNet } from './support/testnet.js';

const run = promisify(execFile);
const isRoot = process.getuid?.() === 0;
const NEEDS_ROOT = 'needs root: test hosts are network and PID namespaces';

async function netnsNames(): Promise<string[]> {
  const { stdout } = await run('ip', ['netns', 'list']);
  return stdout.split('\n').map((line) => line.split(' ')[0] ?? '').filter((name) => name.length > 0);
}

/** The machine's links whose other end (a veth peer) lies in one of `netnses`. */
async function machineLinksInto(netnses: readonly string[]): Promise<string[]> {
  const { stdout: list } = await run('ip', ['netns', 'list']);
  const ids = new Set(
    list
      .split('\n')
      .map((line) => /^(\S+) \(id: (\d+)\)/.exec(line))
      .filter((match) => match !== null && netnses.includes(match[1] ?? ''))
      .map((match) => match?.[2]),
  );
  const { stdout } = await run('ip', ['-o', 'link', 'show']);
  return stdout
    .split('\n')
    .filter((line) => ids.has(/link-netnsid (\d+)/.exec(line)?.[1]))
    .map((line) => line.split(': ')[1] ?? '');
}

function isGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch {
    return true;
  }
}

/** A process's start time (clock ticks since boot), to tell it from a later one with its pid. */
function startTimeOf(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/** The pids a host sees in its own /proc, read inside it. */
async function pidsSeenIn(host: TestHost): Promise<number[]> {
  const { stdout, code } = await host.exec(['ls', '/proc']);
  assert.equal(code, 0);
  return stdout.split(/\s+/).filter((word) => /^\d+$/.test(word)).map(Number);
}

/** Sends `text` from `from` to a listener on `to`, and returns what the listener received. */
async function sendOver(from: TestHost, to: TestHost, port: number, text: string): Promise<string> {
  const listener = to.spawn(['socat', '-u', `TCP-LISTEN:${port},bind=${to.address},reuseaddr`, '-'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let received = '';
  listener.stdout?.setEncoding('utf8');
  listener.stdout?.on('data', (chunk: string) => (received += chunk));
  const exited = once(listener, 'exit');
  await to.waitForListener(port);
  const sent = await from.exec(['socat', '-u', '-', `TCP:${to.address}:${port}`], { stdin: text, timeoutMs: 10_000 });
  assert.equal(sent.code, 0, sent.stderr);
  await exited;
  return received;
}

describe('createTestNet', { skip: isRoot ? false : NEEDS_ROOT }, () => {
  const nets = new Set<TestNet>();
  const make = async (hosts: { name: string; address: string; isolated?: boolean }[]): Promise<TestNet> => {
    const net = await createTestNet({ hosts });
    nets.add(net);
    return net;
  };
  after(async () => {
    for (const net of nets) await net.destroy();
  });

  test('createTestNet refuses addresses outside the documentation networks before creating anything', async () => {
    const before = await netnsNames();
    for (const address of ['10.0.0.1', '192.168.1.5', '127.0.0.2', '192.0.3.1', '198.51.100.7/23', '203.0.113.0', 'h1', '192.0.2.300']) {
      await assert.rejects(
        createTestNet({ hosts: [{ name: 'ok', address: '192.0.2.1' }, { name: 'bad', address }] }),
        /Cannot use test host address/,
        address,
      );
    }
    await assert.rejects(createTestNet({ hosts: [{ name: 'Bad_Name', address: '192.0.2.1' }] }), /names are/);
    await assert.rejects(
      createTestNet({ hosts: [{ name: 'a', address: '192.0.2.1' }, { name: 'b', address: '192.0.2.1' }] }),
      /used twice/,
    );
    assert.deepEqual(await netnsNames(), before);
    assert.deepEqual(checkTestAddress('198.51.100.7/28'), { address: '198.51.100.7', prefix: 28 });
  });

  test('createTestNet gives two hosts their own PID namespace, /proc and host name', async () => {
    const net = await make([
      { name: 'h1', address: '192.0.2.11' },
      { name: 'h2', address: '192.0.2.12' },
    ]);
    for (const host of net.hosts) {
      assert.equal(host.pidInHost(host.initPid), 1);
      const seen = await pidsSeenIn(host);
      assert.ok(seen.includes(1), `${host.name} sees its pid 1`);
      // pid 1, the ls and nothing of the machine (a fresh host has a handful of pids at most).
      assert.ok(seen.length <= 4, `${host.name} sees only its own processes: ${seen.join(' ')}`);
      const init = await host.exec(['cat', '/proc/1/comm']);
      assert.equal(init.stdout.trim(), 'perl');
      const name = await host.exec(['hostname']);
      assert.equal(name.stdout.trim(), host.name);
    }
    // The machine's view: the host's processes are ours to see, theirs are not ours.
    const sleeper = net.host('h1').spawn(['sleep', '30'], { stdio: 'ignore' });
    const machinePid = await net.host('h1').machinePidOf(sleeper);
    assert.ok(net.host('h1').machinePids().includes(machinePid));
    assert.ok(!net.host('h2').machinePids().includes(machinePid));
    assert.ok((await pidsSeenIn(net.host('h1'))).includes(net.host('h1').pidInHost(machinePid)));
    assert.ok(sleeper.kill('SIGTERM'));
    const [code, signalName] = (await once(sleeper, 'exit')) as [number | null, string | null];
    // nsenter re-raises the command's signal on itself.
    assert.ok(code !== 0 || signalName === 'SIGTERM', `sleep was stopped (${code}, ${signalName})`);
    assert.ok(isGone(machinePid) || !net.host('h1').machinePids().includes(machinePid));
  });

  test('TestHost.exec runs as another uid with extra environment and stdin', async () => {
    const net = await make([{ name: 'solo', address: '198.51.100.20' }]);
    const result = await net.host('solo').exec(['sh', '-c', 'id -u; echo "$GREETING"; cat'], {
      uid: 65534,
      env: { GREETING: 'hello' },
      stdin: 'from stdin\n',
    });
    assert.deepEqual(result, { code: 0, signal: null, stdout: '65534\nhello\nfrom stdin\n', stderr: '' });
    await assert.rejects(net.host('solo').exec(['sleep', '30'], { timeoutMs: 200 }), /did not finish within 200 ms/);
  });

  test('createTestNet hosts reach each other over TCP and nothing of the machine', async () => {
    const net = await make([
      { name: 'h1', address: '192.0.2.11' },
      { name: 'h2', address: '192.0.2.12' },
    ]);
    const h1 = net.host('h1');
    const h2 = net.host('h2');
    assert.equal(await sendOver(h1, h2, 7000, 'one\n'), 'one\n');
    assert.equal(await sendOver(h2, h1, 7000, 'two\n'), 'two\n');

    // A listener of the machine on loopback: h1's 127.0.0.1 is its own loopback, so refused.
    const server = createServer((socket) => socket.destroy());
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const { port } = server.address() as AddressInfo;
      const attempt = await h1.exec(['socat', '-u', '/dev/null', `TCP:127.0.0.1:${port}`], { timeoutMs: 10_000 });
      assert.notEqual(attempt.code, 0);
      assert.match(attempt.stderr, /Connection refused/);
    } finally {
      server.close();
    }

    // The machine's own addresses, on a listener of the machine: unreachable from h1. Outside
    // h1's subnet there is no route (nothing is sent); inside it (this machine's uplink may be
    // in 192.0.2.0/24 itself) h1's ARP stays in the switch, where the machine has no port.
    const { stdout } = await run('ip', ['-4', '-o', 'addr', 'show', 'scope', 'global']);
    const machineAddresses = [...stdout.matchAll(/inet (\d+\.\d+\.\d+\.\d+)\//g)].map((match) => match[1] ?? '');
    const accepted: string[] = [];
    const machine = createServer((socket) => {
      accepted.push(socket.remoteAddress ?? '');
      socket.destroy();
    });
    machine.listen(0, '0.0.0.0');
    await once(machine, 'listening');
    try {
      const { port } = machine.address() as AddressInfo;
      for (const address of machineAddresses) {
        const attempt = await h1.exec(['socat', '-u', '/dev/null', `TCP:${address}:${port},connect-timeout=2`], { timeoutMs: 10_000 });
        assert.notEqual(attempt.code, 0, `h1 cannot connect to the machine's ${address}`);
      }
    } finally {
      machine.close();
    }
    assert.deepEqual(accepted, []);
    const routes = await h1.exec(['ip', '-4', 'route', 'show']);
    assert.equal(routes.stdout.trim(), '192.0.2.0/24 dev eth0 proto kernel scope link src 192.0.2.11');

    // Nothing of the test network on the machine: no link into a host or the switch, no address.
    assert.deepEqual(await machineLinksInto([...net.hosts.map((host) => host.netns), net.switchNetns]), []);
    const machineAddressText = (await run('ip', ['-o', 'addr', 'show'])).stdout;
    for (const host of net.hosts) assert.ok(!machineAddressText.includes(`inet ${host.address}/`), `the machine has no ${host.address}`);
  });

  test('createTestNet connects four hosts in any direction and keeps an isolated host apart', async () => {
    const net = await make([
      { name: 'a', address: '203.0.113.1' },
      { name: 'b', address: '203.0.113.2' },
      { name: 'c', address: '203.0.113.3' },
      { name: 'd', address: '203.0.113.4' },
      { name: 'alone', address: '203.0.113.9', isolated: true },
    ]);
    const linked = net.hosts.filter((host) => !host.isolated);
    assert.equal(linked.length, 4);
    for (const [index, from] of linked.entries()) {
      const to: TestHost | undefined = linked[(index + 1) % linked.length];
      assert.ok(to !== undefined);
      assert.equal(await sendOver(from, to, 7100 + index, `${from.name} to ${to.name}\n`), `${from.name} to ${to.name}\n`);
      assert.ok((await pidsSeenIn(from)).length <= 4);
    }
    const alone = net.host('alone');
    const out = await alone.exec(['socat', '-u', '/dev/null', 'TCP:203.0.113.1:7100'], { timeoutMs: 10_000 });
    assert.notEqual(out.code, 0);
    assert.match(out.stderr, /Network is unreachable/);
    const into = await net.host('a').exec(['socat', '-u', '/dev/null', `TCP:${alone.address}:7100,connect-timeout=2`], { timeoutMs: 10_000 });
    assert.notEqual(into.code, 0);
  });

  test('TestHost.startStopd answers an SV query from another host about its connection', async () => {
    const net = await make([
      { name: 'h1', address: '192.0.2.11' },
      { name: 'h2', address: '192.0.2.12' },
    ]);
    const h1 = net.host('h1');
    const h2 = net.host('h2');
    const stopd = await h1.startStopd();
    h2.spawn(['socat', `TCP-LISTEN:7001,bind=${h2.address},reuseaddr`, 'EXEC:cat'], { stdio: 'ignore' });
    await h2.waitForListener(7001);
    // A client on h1 that holds its connection open until its stdin closes.
    const client = h1.spawn(['socat', '-', `TCP:${h2.address}:7001`], { stdio: ['pipe', 'ignore', 'pipe'] });
    let clientPort = 0;
    for (const deadline = Date.now() + 10_000; clientPort === 0; ) {
      const ss = await h1.exec(['ss', '-Htn', 'state', 'established', `dport = :7001`]);
      clientPort = Number(/192\.0\.2\.11:(\d+)\s/.exec(ss.stdout)?.[1] ?? 0);
      assert.ok(Date.now() < deadline, 'the client connects within 10 s');
    }
    const query = await h2.exec([process.execPath, STOPCTL, 'query', h1.address, String(clientPort), '7001', '--type', 'SV']);
    assert.equal(query.code, 0, query.stderr);
    const reply = query.stdout.trim();
    assert.match(reply, new RegExp(`^${clientPort},7001:USERID:OTHER:[0-9a-f]{64}$`));
    const token = reply.slice(reply.lastIndexOf(':') + 1);

    // The store is written inside h1 and read here: the same file system.
    assert.ok(readLedger(stopd.storeDir).some((entry) => entry.token === token));
    const redeemed = await run(process.execPath, [STOPCTL, 'redeem', token, '--store', stopd.storeDir, '--json']);
    const record = JSON.parse(redeemed.stdout) as {
      host?: { hostname?: string };
      processes?: { pid: number; name: string }[];
      connection?: { remote?: { address?: string; port?: number } };
    };
    assert.equal(record.host?.hostname, 'h1');
    assert.deepEqual(record.connection?.remote, { address: h2.address, port: 7001 });
    // The record names the client by its pid inside h1, which the harness can map.
    const clientPid = h1.pidInHost(await h1.machinePidOf(client));
    assert.ok(
      record.processes?.some((entry) => entry.pid === clientPid && entry.name === 'socat'),
      `the record holds socat [${clientPid}]: ${JSON.stringify(record.processes)}`,
    );
    client.stdin?.end();
    assert.equal(await stopd.stop(), 0);
  });

  test('startHopChain relays a login-like session through four hosts, and H3 names the relays behind its hop', async () => {
    const net = await make([1, 2, 3, 4].map((n) => ({ name: `hop${n}`, address: `203.0.113.${20 + n}` })));
    const [h1, h2, h3, h4] = net.hosts;
    assert.ok(h1 !== undefined && h2 !== undefined && h3 !== undefined && h4 !== undefined);
    const stopd = await h3.startStopd();
    const chain = await startHopChain(net.hosts);
    assert.deepEqual(
      chain.hops.map((hop) => `${hop.from.name}->${hop.to.name}:${hop.serverPort}`),
      ['hop1->hop2:2222', 'hop2->hop3:2222', 'hop3->hop4:2222'],
    );
    // What the user types runs on the last host.
    chain.type('echo "at $(hostname)"');
    for (const deadline = Date.now() + 10_000; !chain.output().includes('at hop4'); ) {
      assert.ok(Date.now() < deadline, `the session reaches hop4: ${JSON.stringify(chain.output())}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }

    // hop4 asks hop3 about hop3's outbound connection (paper 3.1.2: the server side asks).
    const last = chain.hops[2];
    const before = chain.hops[1];
    assert.ok(last !== undefined && before !== undefined);
    const query = await h4.exec([process.execPath, STOPCTL, 'query', h3.address, String(last.clientPort), '2222', '--type', 'SV']);
    assert.equal(query.code, 0, query.stderr);
    const token = query.stdout.trim().split(':').at(-1) ?? '';
    const redeemed = await run(process.execPath, [STOPCTL, 'redeem', token, '--store', stopd.storeDir, '--json']);
    const record = JSON.parse(redeemed.stdout) as {
      processes: { pid: number; name: string; tty: string | null; role: string }[];
      upstream: { local: { address: string; port: number }; remote: { address: string; port: number } }[];
    };
    const names = record.processes.map((entry) => entry.name).sort();
    // The outbound socat, its shell, the relay that accepted hop2 (and the listener it forked from).
    assert.deepEqual([...new Set(names)], ['sh', 'socat']);
    assert.ok(names.filter((name) => name === 'socat').length >= 2, names.join(' '));
    assert.ok(record.processes.some((entry) => entry.name === 'sh' && entry.tty?.startsWith('/dev/pts/') === true), 'the shell runs on a terminal');
    assert.deepEqual(
      record.upstream.map((candidate) => [candidate.local, candidate.remote]),
      [[{ address: h3.address, port: 2222 }, { address: h2.address, port: before.clientPort }]],
    );
    await chain.close();
  });

  test('TestNet.destroy leaves no namespace, link or process behind, even after a failing test', async () => {
    const net = await createTestNet({
      hosts: [
        { name: 'x1', address: '192.0.2.31' },
        { name: 'x2', address: '192.0.2.32' },
      ],
    });
    const netnses = [...net.hosts.map((host) => host.netns), net.switchNetns];
    let storeDir = '';
    const started = new Map<number, string | undefined>();
    try {
      const stopd = await net.host('x1').startStopd();
      storeDir = stopd.storeDir;
      // A process that ignores SIGTERM: destroy must still get rid of it.
      const stubborn = net.host('x2').spawn(['sh', '-c', 'trap "" TERM; while :; do sleep 1; done'], { stdio: 'ignore' });
      await net.host('x2').machinePidOf(stubborn);
      const machinePids = [...net.host('x1').machinePids(), ...net.host('x2').machinePids()];
      assert.ok(machinePids.includes(stopd.pid));
      for (const pid of [...machinePids, stopd.process.pid ?? 0, stubborn.pid ?? 0]) started.set(pid, startTimeOf(pid));
      throw new Error('the test fails here');
    } catch (error: unknown) {
      assert.equal((error as Error).message, 'the test fails here');
    } finally {
      await net.destroy({ graceMs: 500 });
    }
    await net.destroy(); // idempotent
    const remaining = await netnsNames();
    for (const netns of netnses) assert.ok(!remaining.includes(netns), `${netns} is gone`);
    assert.ok(!existsSync(storeDir), 'the store made by startStopd is gone');
    // Other programs on this machine may have been given one of these pids since.
    for (const [pid, time] of started) assert.ok(startTimeOf(pid) !== time, `process ${pid} is gone: ${describePid(pid)}`);
  });

  test('cleanupStale deletes namespaces and links of dead runs only', async () => {
    const live = await make([{ name: 'keep', address: '192.0.2.41' }]);
    // A pid that surely belonged to a process that is gone now.
    const child = spawn('true');
    await once(child, 'exit');
    const deadPid = child.pid ?? 0;
    assert.ok(isGone(deadPid));
    const staleHost = `stopd-${deadPid}-1-old`;
    const staleSwitch = `stopd-${deadPid}-1_sw`;
    await run('ip', ['netns', 'add', staleHost]);
    await run('ip', ['netns', 'add', staleSwitch]);
    await run('ip', ['-n', staleSwitch, 'link', 'add', 'br0', 'type', 'bridge']);
    await run('ip', ['-n', staleSwitch, 'link', 'add', 'p0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', staleHost]);
    try {
      const removed = await cleanupStale();
      assert.deepEqual(removed.netnses.sort(), [staleHost, staleSwitch].sort());
      const remaining = await netnsNames();
      assert.ok(!remaining.includes(staleHost) && !remaining.includes(staleSwitch));
      assert.ok(remaining.includes(live.host('keep').netns), 'the live net is kept');
      assert.ok(remaining.includes(live.switchNetns));
    } finally {
      await run('ip', ['netns', 'del', staleHost]).catch(() => undefined);
      await run('ip', ['netns', 'del', staleSwitch]).catch(() => undefined);
    }
  });
});

function describePid(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return 'no /proc entry';
  }
}
