/**
 * Records say what they could not see (issue 13, item 4): a connection of a test host's
 * network namespace held by a process outside the host's PID namespace (started with `ip
 * netns exec` from the machine). The daemon inside the host sees the socket and its owner but
 * no process holding it; the SV record must say so, with the reason, and redeem must show it.
 */
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { STOPCTL } from './support/daemon.js';
import { queryFrom, SHELL_PORT, startShellService } from './support/chain.js';
import { readFirstLine } from './support/peers.js';
import { createTestNet, type TestHost, type TestNet, type TestStopd } from './support/testnet.js';

const run = promisify(execFile);
const isRoot = process.getuid?.() === 0;
const skip = isRoot ? false : 'needs root: creates network and PID namespaces';
const TOKEN_REPLY = /^(\d+),(\d+):USERID:OTHER:([0-9a-f]{64})$/;

describe('a socket held only outside the daemon\'s PID namespace', { skip }, () => {
  let net: TestNet;
  let srv: TestHost;
  let peer: TestHost;
  let daemon: TestStopd;
  let outsider: ChildProcess | undefined;
  let localPort: number;

  before(async () => {
    net = await createTestNet({
      hosts: [
        { name: 'srv', address: '198.51.100.40' },
        { name: 'peer', address: '198.51.100.41' },
      ],
    });
    [srv, peer] = [net.host('srv'), net.host('peer')];
    daemon = await srv.startStopd();
    await startShellService(peer);
    // In srv's network namespace, but in the machine's PID namespace: srv's daemon (whose
    // /proc is its own host's) can see the socket, not the process.
    const script = [
      'import socket, sys',
      `s = socket.create_connection((${JSON.stringify(peer.address)}, ${SHELL_PORT}))`,
      'print(s.getsockname()[1], flush=True)',
      'sys.stdin.read()',
    ].join('\n');
    outsider = spawn('ip', ['netns', 'exec', srv.netns, '/usr/bin/python3', '-c', script], { stdio: ['pipe', 'pipe', 'inherit'] });
    localPort = Number(await readFirstLine(outsider, { what: 'the outside holder', timeoutMs: 12_000 }));
  });
  after(async () => {
    if (outsider !== undefined && outsider.exitCode === null && outsider.signalCode === null) {
      const exited = once(outsider, 'exit');
      outsider.kill('SIGKILL');
      await exited;
    }
    await net?.destroy();
  });

  test('gets a token, and a record whose problems name the other PID namespace, shown by redeem and trace', async () => {
    const { code, line } = await queryFrom(peer, srv.address, { client: localPort, server: SHELL_PORT }, { type: 'SV' });
    // Reply policy: the connection and its owner uid exist, so this is a token like any other.
    assert.equal(code, 0, line);
    const token = TOKEN_REPLY.exec(line)?.[3];
    assert.ok(token, `srv replied ${line}`);

    const { stdout: json } = await run(process.execPath, [STOPCTL, 'redeem', token, '--store', daemon.storeDir, '--json']);
    const record = JSON.parse(json) as { verdict: string; processes: unknown[]; problems: string[]; analysisProblems: { code: string; reason?: string; message: string }[]; connection: { uid: number } };
    assert.equal(record.verdict, 'verified');
    assert.deepEqual(record.processes, []);
    assert.deepEqual(record.problems, [], 'no integrity problem');
    assert.equal(record.analysisProblems.length, 1, json);
    const [problem] = record.analysisProblems;
    assert.equal(problem?.code, 'no-visible-holder');
    assert.equal(problem?.reason, 'other-pid-namespace');
    assert.match(problem?.message ?? '', new RegExp(`owner uid ${record.connection.uid}\\): stopd runs in a PID namespace other than the host's first one`));

    const { stdout: text } = await run(process.execPath, [STOPCTL, 'redeem', token, '--store', daemon.storeDir]);
    const lines = text.split('\n');
    const problemLine = lines.findIndex((each) => /^PROBLEM {5}No process visible to stopd holds the queried socket .* \(no-visible-holder: other-pid-namespace\)$/.test(each));
    assert.ok(problemLine > 0, text);
    assert.ok(problemLine < lines.indexOf('Primary Processes'), 'the problem comes before the (empty) process list');
    assert.ok(lines.includes('  (none visible to stopd: see PROBLEM above)'), text);

    const { stdout: trace } = await run(process.execPath, [STOPCTL, 'trace', token, '--store', daemon.storeDir]);
    assert.match(trace, /\nProcesses {3}0 \(see stopctl redeem for the record\)\nPROBLEM {5}No process visible to stopd .* \(no-visible-holder: other-pid-namespace\)\n/);
  });
});
