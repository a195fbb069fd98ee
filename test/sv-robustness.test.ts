/**
 * SV requests (paper 3.1.2, 4.1) under conditions that break naive process tracing: a socket
 * held by two processes, processes that exit during the analysis, a non-root owner, a host
 * busy with unrelated pipes, and evidence altered after the fact.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startDaemon, type DaemonHandle } from './support/daemon.js';
import { listen, type TestListener } from './support/peers.js';
import { childrenNamed, descendantsOf, readFdLinks, startDetached, waitFor, type DetachedProcess } from './support/structures.js';
import { describePids, hasLink, pidsOf, processOf, redeemVerified, requestSv, runRedeem, sorted } from './support/sv-record.js';

const isRoot = process.getuid?.() === 0;
const NEEDS_ROOT = 'needs root: reads /proc of processes of every user and starts processes as nobody';

function portsOf(accepted: Socket, next: TestListener): { local: number; remote: number } {
  assert.equal(accepted.remoteAddress, '127.0.0.1');
  return { local: accepted.remotePort ?? 0, remote: next.port };
}

describe('stopd SV requests in hostile conditions', { skip: isRoot ? false : NEEDS_ROOT }, () => {
  let daemon: DaemonHandle;

  before(async () => {
    daemon = await startDaemon();
  });
  after(async () => {
    const code = await daemon.stop();
    assert.equal(code, 0, `stopd exits 0 on SIGTERM; stderr:\n${daemon.stderr()}`);
  });

  test('SV reports every holder of a socket shared by a parent and its child, with a shared link', async () => {
    const next = await listen('127.0.0.2');
    let shell: DetachedProcess | undefined;
    try {
      // The background sleep inherits fd 3: paper 4.1 assumed one holder per socket.
      shell = await startDetached(['bash', '-c', `exec 3<>/dev/tcp/127.0.0.2/${next.port}; sleep 300 & wait`]);
      const accepted = await next.nextAccepted(10_000);
      const bashPid = shell.pid;
      const sleepPid = await waitFor('the background sleep to hold fd 3', () => {
        const child = childrenNamed(bashPid, 'sleep')[0];
        return child !== undefined && readFdLinks(child).get(3)?.startsWith('socket:') === true ? child : undefined;
      });

      const record = await redeemVerified(daemon.storeDir, await requestSv(daemon, portsOf(accepted, next)));

      assert.deepEqual(pidsOf(record), sorted([1, bashPid, sleepPid]), describePids(record));
      assert.deepEqual(pidsOf(record, 'primary'), sorted([1, bashPid, sleepPid]));
      for (const pid of [bashPid, sleepPid]) {
        const socket = processOf(record, pid).sockets.find((one) => one.kind === 'tcp' && one.queried);
        assert.ok(socket?.kind === 'tcp', `${pid} holds the queried socket`);
        assert.deepEqual(socket.sharedWith, [pid === bashPid ? sleepPid : bashPid]);
      }
      assert.ok(
        hasLink(record, 'shared', bashPid, sleepPid) || hasLink(record, 'shared', sleepPid, bashPid),
        JSON.stringify(record.links),
      );
    } finally {
      shell?.kill();
      await next.close();
    }
  });

  test('SV answers tokens that verify while the structure forks and reaps children continuously', async (t) => {
    const next = await listen('127.0.0.2');
    let shell: DetachedProcess | undefined;
    try {
      // Every iteration forks two children that inherit the queried socket and share a pipe:
      // holders and pipe ends appear and exit while the daemon reads /proc.
      shell = await startDetached(['bash', '-c', `exec 3<>/dev/tcp/127.0.0.2/${next.port}; while :; do echo x | cat >/dev/null; done`]);
      const accepted = await next.nextAccepted(10_000);
      const ports = portsOf(accepted, next);
      let vanished = 0;
      for (let round = 0; round < 4; round += 1) {
        const tokens = await Promise.all(Array.from({ length: 4 }, () => requestSv(daemon, ports, { timeoutMs: 30_000 })));
        assert.equal(new Set(tokens).size, tokens.length, 'every record is salted: distinct tokens');
        for (const token of tokens) {
          const record = await redeemVerified(daemon.storeDir, token);
          assert.equal(processOf(record, shell.pid).role, 'primary');
          vanished += record.vanished.length;
        }
      }
      assert.equal(daemon.process.exitCode, null, `stopd is still running; stderr:\n${daemon.stderr()}`);
      t.diagnostic(`${vanished} holders vanished during the analyses`);
    } finally {
      shell?.kill();
      await next.close();
    }
  });

  test('SV records the real and effective uid of a relay running as nobody', async () => {
    const next = await listen('127.0.0.2');
    let relay: DetachedProcess | undefined;
    try {
      relay = await startDetached([
        'setpriv',
        '--reuid=65534',
        '--regid=65534',
        '--clear-groups',
        'socat',
        '-u',
        `TCP4:127.0.0.2:${next.port}`,
        'STDOUT',
      ]);
      const accepted = await next.nextAccepted(10_000);

      const record = await redeemVerified(daemon.storeDir, await requestSv(daemon, portsOf(accepted, next)));

      const socat = processOf(record, relay.pid);
      assert.equal(socat.name, 'socat');
      assert.equal(socat.role, 'primary');
      assert.deepEqual(socat.uid, { real: 65534, effective: 65534 });
      assert.deepEqual(pidsOf(record), sorted([1, relay.pid]), describePids(record));
    } finally {
      relay?.kill();
      await next.close();
    }
  });

  test('SV records only the structure among 200 unrelated processes holding pipes', async () => {
    const next = await listen('127.0.0.2');
    const started: DetachedProcess[] = [];
    try {
      const background = await startDetached(['bash', '-c', 'for i in $(seq 100); do sleep 300 | cat & done; wait']);
      started.push(background);
      const backgroundPids = await waitFor('200 background processes', () => {
        const pids = descendantsOf(background.pid);
        return pids.length >= 200 ? pids : undefined;
      });
      const shell = await startDetached(['sh', '-c', `sleep 300 | socat - TCP4:127.0.0.2:${next.port}`]);
      started.push(shell);
      const accepted = await next.nextAccepted(10_000);
      const shellPid = shell.pid;
      const [sleepPid, socatPid] = await waitFor('sleep and socat to run', () => {
        const found = [childrenNamed(shellPid, 'sleep')[0], childrenNamed(shellPid, 'socat')[0]];
        return found.every((pid) => pid !== undefined) ? (found) : undefined;
      });

      const record = await redeemVerified(daemon.storeDir, await requestSv(daemon, portsOf(accepted, next)));

      assert.deepEqual(pidsOf(record), sorted([1, shellPid, sleepPid ?? 0, socatPid ?? 0]), describePids(record));
      assert.deepEqual(pidsOf(record, 'resolved'), [sleepPid]);
      const recorded = new Set(pidsOf(record));
      assert.deepEqual(
        [background.pid, ...backgroundPids].filter((pid) => recorded.has(pid)),
        [],
      );
      assert.equal(record.truncated, false);
    } finally {
      for (const one of started) one.kill();
      await next.close();
    }
  });

  test('stopctl redeem exits 3 for a record with one byte changed and 2 for an unknown token', async () => {
    const next = await listen('127.0.0.2');
    let relay: DetachedProcess | undefined;
    try {
      relay = await startDetached(['socat', '-u', `TCP4:127.0.0.2:${next.port}`, 'STDOUT']);
      const accepted = await next.nextAccepted(10_000);
      const token = await requestSv(daemon, portsOf(accepted, next));
      const path = join(daemon.storeDir, 'records', `${token}.json`);
      const bytes = readFileSync(path);
      // DESIGN.md, Evidence: an SV token is the SHA-256 of the saved record's bytes.
      assert.equal(createHash('sha256').update(bytes).digest('hex'), token);
      await redeemVerified(daemon.storeDir, token);

      const changed = Buffer.from(bytes);
      const at = changed.indexOf(Buffer.from(String(relay.pid)));
      assert.ok(at >= 0, 'the record names the relay pid');
      // One digit of the pid, changed to another digit: still valid JSON, different evidence.
      const digit = changed[at] ?? 0x30;
      changed[at] = digit === 0x39 ? 0x38 : digit + 1;
      writeFileSync(path, changed);

      const tampered = await runRedeem(daemon.storeDir, token);
      assert.equal(tampered.code, 3, `exit 3 for an altered record; stdout ${tampered.stdout} stderr ${tampered.stderr}`);
      assert.match(`${tampered.stdout}\n${tampered.stderr}`, /integrity|tamper|altered|mismatch/i);

      const unknown = await runRedeem(daemon.storeDir, randomBytes(32).toString('hex'));
      assert.equal(unknown.code, 2, `exit 2 for an unknown token; stderr ${unknown.stderr}`);
    } finally {
      relay?.kill();
      await next.close();
    }
  });
});
