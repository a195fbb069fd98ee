/**
 * SV requests (paper 3.1.2, 3.5 to 3.7) about real process structures: the daemon must find
 * the processes behind an outbound connection, follow pipes, UNIX sockets and host-local TCP
 * to the rest of the structure, and name the connections that lead to the previous host.
 *
 * Layout: the structure runs detached (its own session, parent init) so that no descriptor
 * links it to the test runner. The next hop is a listener of this test process on 127.0.0.2;
 * the daemon is not led to it because the queried connection itself is never followed. The
 * previous hop is a network namespace (support/previous-host.ts): a client on 127.0.0.3 would
 * be host-local, so the closure would follow it as IPC instead of naming it upstream.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { startDaemon, type DaemonHandle } from './support/daemon.js';
import { FIGURE9_LABELS, startFigure9 } from './support/figure9.js';
import { listen, type TestListener } from './support/peers.js';
import { createPreviousHost, type PreviousHost } from './support/previous-host.js';
import {
  childrenNamed,
  findHeldConnection,
  freeFixedPort,
  isListening,
  readStat,
  startDetached,
  waitFor,
  type DetachedProcess,
} from './support/structures.js';
import {
  describePids,
  hasLink,
  pidsOf,
  processOf,
  redeemVerified,
  requestSv,
  sorted,
  type RecordProcess,
  type SvRedemption,
} from './support/sv-record.js';

const run = promisify(execFile);
const isRoot = process.getuid?.() === 0;
const NEEDS_ROOT = 'needs root: the previous host is a network namespace, and /proc of every process must be readable';

/** The socket the request asked about, asserting the process holds it. */
function queriedSocketOf(process: RecordProcess): void {
  assert.ok(
    process.sockets.some((socket) => socket.kind === 'tcp' && socket.queried),
    `${process.name} [${process.pid}] holds the queried socket`,
  );
}

/** The next hop's view of the structure's outbound connection: the ports of the SV request. */
function portsOf(accepted: Socket, next: TestListener): { local: number; remote: number } {
  // The daemon listens on 127.0.0.1 and asks about (the address the query arrived on, cl_port):
  // the structure's source address must be 127.0.0.1, which Linux picks for 127.0.0.2.
  assert.equal(accepted.remoteAddress, '127.0.0.1');
  return { local: accepted.remotePort ?? 0, remote: next.port };
}

function assertConnection(record: SvRedemption, ports: { local: number; remote: number }): void {
  assert.deepEqual(record.connection.local, { address: '127.0.0.1', port: ports.local });
  assert.deepEqual(record.connection.remote, { address: '127.0.0.2', port: ports.remote });
}

describe('stopd SV requests about real process structures', { skip: isRoot ? false : NEEDS_ROOT }, () => {
  let daemon: DaemonHandle;
  let previous: PreviousHost;

  before(async () => {
    daemon = await startDaemon();
    previous = await createPreviousHost();
  });
  after(async () => {
    await previous.close();
    const code = await daemon.stop();
    assert.equal(code, 0, `stopd exits 0 on SIGTERM; stderr:\n${daemon.stderr()}`);
  });

  test('SV about the second nc of `nc -l | nc` finds the first through the pipe (paper fig. 6)', async (t) => {
    const port = await freeFixedPort();
    const next = await listen('127.0.0.2');
    let shell: DetachedProcess | undefined;
    try {
      shell = await startDetached(['sh', '-c', `nc -4 -l -p ${port} | nc -4 127.0.0.2 ${next.port}`]);
      const accepted = await next.nextAccepted(10_000);
      await waitFor(`nc to listen on port ${port}`, () => isListening(port));
      const client = await previous.connect(port);
      const shellPid = shell.pid;
      const held = await waitFor('the listening nc to accept the previous hop', () =>
        findHeldConnection(childrenNamed(shellPid, 'nc'), (row) => row.local.port === port && row.remote.address === previous.address),
      );
      const ncIn = held.pid;
      const ncOut = childrenNamed(shellPid, 'nc').find((pid) => pid !== ncIn) ?? 0;
      const ports = portsOf(accepted, next);

      const token = await requestSv(daemon, ports);
      const record = await redeemVerified(daemon.storeDir, token);

      assertConnection(record, ports);
      assert.deepEqual(pidsOf(record), sorted([1, shellPid, ncIn, ncOut]), describePids(record));
      assert.deepEqual(pidsOf(record, 'primary'), sorted([1, shellPid, ncOut]));
      assert.deepEqual(pidsOf(record, 'resolved'), [ncIn]);
      const out = processOf(record, ncOut);
      queriedSocketOf(out);
      assert.deepEqual(
        out.pipes.map((pipe) => [pipe.fd, pipe.end]),
        [[0, 'read']],
      );
      const inbound = processOf(record, ncIn);
      assert.deepEqual(
        inbound.pipes.map((pipe) => [pipe.fd, pipe.end]),
        [[1, 'write']],
      );
      assert.equal(inbound.pipes[0]?.inode, out.pipes[0]?.inode);
      assert.ok(hasLink(record, 'pipe', ncIn, ncOut), 'a pipe link from the writer to the reader');
      assert.ok(hasLink(record, 'parent', shellPid, ncIn) && hasLink(record, 'parent', shellPid, ncOut));
      // Debian 12's netcat-openbsd (1.219) keeps its listener open after accepting, so the
      // connection is `inbound`; Hobbit's netcat (paper fig. 6) and socat without `fork` close
      // it, and then the kernel shows no sign the connection was accepted: with a port outside
      // the ephemeral range it is `unknown`, still a candidate (paper 4: "when direction is not
      // known requests are sent to all sockets").
      assert.equal(record.upstream.length, 1, JSON.stringify(record.upstream));
      const candidate = record.upstream[0];
      assert.deepEqual(candidate?.remote, { address: previous.address, port: client.localPort });
      assert.equal(candidate?.local.port, port);
      assert.ok(candidate.direction === 'inbound' || candidate.direction === 'unknown', candidate.direction);
      t.diagnostic(`the previous hop's connection to nc -l is ${candidate.direction}`);
      assert.deepEqual(candidate.pids, [ncIn]);
    } finally {
      shell?.kill();
      await next.close();
    }
  });

  test('SV about socat at the end of `cat | tr | socat` resolves tr and cat through the pipes in order', async () => {
    const next = await listen('127.0.0.2');
    const dir = mkdtempSync(join(tmpdir(), 'stop-sv-'));
    let shell: DetachedProcess | undefined;
    try {
      // cat reads a FIFO opened read-write: it never sees end of file, so the pipeline stays up
      // without another process (stdin is /dev/null in a detached structure).
      const fifo = join(dir, 'in');
      await run('mkfifo', [fifo]);
      shell = await startDetached(['sh', '-c', `cat <>"$0" | tr a-z A-Z | socat - TCP4:127.0.0.2:${next.port}`, fifo]);
      const accepted = await next.nextAccepted(10_000);
      const shellPid = shell.pid;
      const [cat, tr, socat] = await waitFor('cat, tr and socat to run', () => {
        const found = ['cat', 'tr', 'socat'].map((name) => childrenNamed(shellPid, name)[0]);
        return found.every((pid) => pid !== undefined) ? (found) : undefined;
      });
      const ports = portsOf(accepted, next);

      const record = await redeemVerified(daemon.storeDir, await requestSv(daemon, ports));

      assertConnection(record, ports);
      // Primary: the holder and its ancestors; resolved: tr (socat's stdin) before cat (tr's).
      assert.deepEqual(
        record.processes.map((process) => process.pid),
        [socat, shellPid, 1, tr, cat],
        describePids(record),
      );
      assert.deepEqual(
        record.processes.map((process) => process.role),
        ['primary', 'primary', 'primary', 'resolved', 'resolved'],
      );
      queriedSocketOf(processOf(record, socat ?? 0));
      assert.ok(hasLink(record, 'pipe', cat ?? 0, tr ?? 0), 'cat writes to tr');
      assert.ok(hasLink(record, 'pipe', tr ?? 0, socat ?? 0), 'tr writes to socat');
      assert.equal(record.links.filter((link) => link.kind === 'pipe').length, 2);
      assert.deepEqual(record.upstream, []);
    } finally {
      shell?.kill();
      await next.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('SV about a socat relay resolves the other socat through a UNIX socket and names its inbound connection', async (t) => {
    const port = await freeFixedPort();
    const next = await listen('127.0.0.2');
    const dir = mkdtempSync(join(tmpdir(), 'stop-sv-'));
    const path = join(dir, 'x.sock');
    const started: DetachedProcess[] = [];
    try {
      const y = await startDetached(['socat', `UNIX-LISTEN:${path}`, `TCP4:127.0.0.2:${next.port}`]);
      started.push(y);
      await waitFor('the UNIX listener', () => existsSync(path));
      const x = await startDetached(['socat', `TCP4-LISTEN:${port},bind=${previous.hostAddress}`, `UNIX-CONNECT:${path}`]);
      started.push(x);
      await waitFor(`socat to listen on port ${port}`, () => isListening(port));
      const client = await previous.connect(port);
      const accepted = await next.nextAccepted(10_000);
      const ports = portsOf(accepted, next);

      const record = await redeemVerified(daemon.storeDir, await requestSv(daemon, ports));

      assertConnection(record, ports);
      assert.deepEqual(pidsOf(record), sorted([1, x.pid, y.pid]), describePids(record));
      assert.deepEqual(pidsOf(record, 'primary'), sorted([1, y.pid]));
      queriedSocketOf(processOf(record, y.pid));
      const unixLinks = record.links.filter((link) => link.kind === 'unix');
      assert.equal(unixLinks.length, 1, JSON.stringify(record.links));
      assert.deepEqual(sorted([unixLinks[0]?.from ?? 0, unixLinks[0]?.to ?? 0]), sorted([x.pid, y.pid]));
      // socat also holds an internal datagram socketpair of its own: pick the stream socket.
      const ySocket = processOf(record, y.pid).sockets.find((socket) => socket.kind === 'unix' && socket.type === 'stream');
      assert.ok(ySocket?.kind === 'unix');
      assert.deepEqual(ySocket.peerPids, [x.pid]);
      assert.equal(record.upstream.length, 1, JSON.stringify(record.upstream));
      assert.deepEqual(record.upstream[0]?.remote, { address: previous.address, port: client.localPort });
      assert.deepEqual(record.upstream[0]?.local, { address: previous.hostAddress, port });
      assert.deepEqual(record.upstream[0]?.pids, [x.pid]);
      // socat without `fork` closes its listener once it accepted: `unknown` is expected here.
      assert.ok(['inbound', 'unknown'].includes(record.upstream[0]?.direction ?? ''));
      t.diagnostic(`the previous hop's connection to socat is ${record.upstream[0]?.direction}`);
    } finally {
      for (const one of started) one.kill();
      await next.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('SV follows loopback TCP into a process of another process group and names no upstream', async () => {
    const port = await freeFixedPort();
    const next = await listen('127.0.0.2');
    const started: DetachedProcess[] = [];
    try {
      const relay = await startDetached(['socat', `TCP4-LISTEN:${port},bind=127.0.0.1`, `TCP4:127.0.0.2:${next.port}`]);
      started.push(relay);
      await waitFor(`socat to listen on port ${port}`, () => isListening(port));
      const source = await startDetached(['socat', '-u', `TCP4:127.0.0.1:${port}`, 'STDOUT']);
      started.push(source);
      const accepted = await next.nextAccepted(10_000);
      const ports = portsOf(accepted, next);

      const record = await redeemVerified(daemon.storeDir, await requestSv(daemon, ports));

      assert.deepEqual(pidsOf(record), sorted([1, relay.pid, source.pid]), describePids(record));
      assert.deepEqual(pidsOf(record, 'resolved'), [source.pid]);
      const relayProcess = processOf(record, relay.pid);
      const sourceProcess = processOf(record, source.pid);
      assert.notEqual(relayProcess.pgid, sourceProcess.pgid);
      assert.notEqual(relayProcess.sid, sourceProcess.sid);
      // From the connecting side to the accepting side (trace/types.ts ClosureLink).
      assert.ok(hasLink(record, 'tcp', source.pid, relay.pid), JSON.stringify(record.links));
      const sourceSocket = sourceProcess.sockets.find((socket) => socket.kind === 'tcp');
      assert.ok(sourceSocket?.kind === 'tcp');
      assert.deepEqual(sourceSocket.peerPids, [relay.pid]);
      assert.equal(sourceSocket.direction, 'outbound');
      // Both ends of the loopback connection are this host's: IPC, not a previous hop (paper 3.2).
      assert.deepEqual(record.upstream, []);
    } finally {
      for (const one of started) one.kill();
      await next.close();
    }
  });

  test('SV leaves stopd itself out of the closure when a member holds a connection to it', async () => {
    const next = await listen('127.0.0.2');
    const started: DetachedProcess[] = [];
    try {
      // A relay holding a loopback connection to stopd (a local ident query left open) and the
      // queried connection: following the first would make stopd, and every host asking it at
      // that moment, part of the session.
      const relay = await startDetached(['socat', `TCP4:127.0.0.1:${daemon.port}`, `TCP4:127.0.0.2:${next.port}`]);
      started.push(relay);
      const accepted = await next.nextAccepted(10_000);
      const ports = portsOf(accepted, next);
      // socat dials stopd first: its connection is established before the queried one is.
      assert.ok(findHeldConnection([relay.pid], (row) => row.remote.port === daemon.port), 'the relay holds a connection to stopd');

      const record = await redeemVerified(daemon.storeDir, await requestSv(daemon, ports));

      assert.ok(!pidsOf(record).includes(daemon.process.pid ?? 0), `stopd is not a member: ${describePids(record)}`);
      assert.deepEqual(pidsOf(record), sorted([1, relay.pid]), describePids(record));
      const toStopd = processOf(record, relay.pid).sockets.find(
        (socket) => socket.kind === 'tcp' && socket.remote.port === daemon.port,
      );
      assert.ok(toStopd?.kind === 'tcp', 'the relay\'s connection to stopd is in its record');
      assert.deepEqual(toStopd.peerPids, []);
      assert.deepEqual(record.upstream, []);
    } finally {
      for (const one of started) one.kill();
      await next.close();
    }
  });

  test('SV about P4 of the complex structure resolves all of figure 9 and names only P1 upstream (paper 3.6)', async () => {
    const ports: [number, number, number] = [await freeFixedPort(), await freeFixedPort(), await freeFixedPort()];
    const next = await listen('127.0.0.2');
    let structure: Awaited<ReturnType<typeof startFigure9>> | undefined;
    try {
      structure = await startFigure9({ bind: previous.hostAddress, ports, next: { host: '127.0.0.2', port: next.port } });
      const client = await previous.connect(ports[0]);
      const { pids, p4Local } = await structure.ready();
      const accepted = await next.nextAccepted(10_000);
      const queriedPorts = portsOf(accepted, next);
      assert.equal(queriedPorts.local, p4Local.port);
      const pid = (label: (typeof FIGURE9_LABELS)[number]): number => pids.get(label) ?? 0;
      // Figure 10: P1, P2 and P3 hang from init. (A subreaper would break this premise.)
      for (const label of ['P1', 'P2', 'P3'] as const) assert.equal(readStat(pid(label))?.ppid, 1, `${label} is a child of init`);

      const record = await redeemVerified(daemon.storeDir, await requestSv(daemon, queriedPorts));

      assertConnection(record, queriedPorts);
      // The paper counts 14 with OpenBSD's swapper [0]; Linux has no process 0 in /proc, so
      // P1..P12 and init make 13.
      assert.deepEqual(pidsOf(record), sorted([1, ...FIGURE9_LABELS.map(pid)]), describePids(record));
      assert.equal(record.processes.length, 13);
      assert.deepEqual(pidsOf(record, 'primary'), sorted([pid('P4'), pid('P3'), 1]));
      assert.deepEqual(record.processes.slice(0, 3).map((process) => process.pid), [pid('P4'), pid('P3'), 1]);
      queriedSocketOf(processOf(record, pid('P4')));
      const groups = new Set(FIGURE9_LABELS.map((label) => processOf(record, pid(label)).pgid));
      assert.equal(groups.size, 3, 'three process groups');
      for (const label of ['P3', 'P6', 'P7'] as const) {
        const process = processOf(record, pid(label));
        assert.deepEqual([process.sockets, process.pipes], [[], []], `${label} holds no sockets or pipes`);
      }
      const expectedLinks: [kind: 'tcp' | 'pipe', from: string, to: string][] = [
        ['tcp', 'P1', 'P2'],
        ['tcp', 'P2', 'P5'],
        ['pipe', 'P8', 'P4'],
        ['pipe', 'P12', 'P4'],
        ['pipe', 'P5', 'P8'],
        ['pipe', 'P9', 'P10'],
        ['pipe', 'P11', 'P12'],
      ];
      for (const [kind, from, to] of expectedLinks) {
        assert.ok(hasLink(record, kind, pid(from as 'P1'), pid(to as 'P1')), `${kind} link ${from} -> ${to}: ${JSON.stringify(record.links)}`);
      }
      assert.equal(record.links.filter((link) => link.kind === 'tcp' || link.kind === 'pipe').length, expectedLinks.length);
      // P1 keeps listening (figure 10: "localhost:8010 <- any"), so its connection is inbound.
      assert.deepEqual(
        record.upstream.map((candidate) => ({ remote: candidate.remote, local: candidate.local, direction: candidate.direction, pids: candidate.pids })),
        [
          {
            remote: { address: previous.address, port: client.localPort },
            local: { address: previous.hostAddress, port: ports[0] },
            direction: 'inbound',
            pids: [pid('P1')],
          },
        ],
      );
    } finally {
      structure?.kill();
      await next.close();
    }
  });
});
