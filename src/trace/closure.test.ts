import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeHost } from '../host/fake-host.js';
import type { TcpSocket } from '../host/types.js';
import { resolveClosure } from './closure.js';
import {
  FIGURE_11_PIPES,
  NEXT_HOST,
  PREVIOUS_HOST,
  THIS_HOST,
  addNoiseProcesses,
  buildFigure11,
  buildFigure6,
  buildFigure7,
  buildFigure9,
  type FigureFixture,
} from './figures.js';
import { DEFAULT_CLOSURE_LIMITS, type Closure, type ClosureTcpSocket } from './types.js';

/** `label:role` per process, in closure order. */
function roles<L extends string>(fixture: FigureFixture<L>, closure: Closure): string[] {
  const label = labeller(fixture);
  return closure.processes.map((process) => `${label(process.pid)}:${process.role}`);
}

/** Links as `kind from->to`, sorted (link order is not part of the contract). */
function links<L extends string>(fixture: FigureFixture<L>, closure: Closure): string[] {
  const label = labeller(fixture);
  return closure.links.map((link) => `${link.kind} ${label(link.from)}->${label(link.to)}`).sort();
}

function labeller<L extends string>(fixture: FigureFixture<L>): (pid: number) => string {
  const names = new Map<number, string>(Object.entries(fixture.pids).map(([name, pid]) => [pid as number, name]));
  return (pid) => names.get(pid) ?? String(pid);
}

function tcpOf(closure: Closure, pid: number): ClosureTcpSocket[] {
  const process = closure.processes.find((entry) => entry.pid === pid);
  assert.ok(process, `process ${pid} is in the closure`);
  return process.sockets.filter((socket): socket is ClosureTcpSocket => socket.kind === 'tcp');
}

test('resolveClosure figure 6 resolves the pipe to nc -l and its accepted connection', () => {
  const fixture = buildFigure6();
  const closure = resolveClosure(fixture.host, { socket: fixture.socket });
  assert.deepEqual(roles(fixture, closure), [
    'ncConnect:primary',
    'bash:primary',
    'init:primary',
    'ncListen:resolved',
  ]);
  assert.deepEqual(links(fixture, closure), [
    'parent bash->ncConnect',
    'parent bash->ncListen',
    'parent init->bash',
    'pipe ncListen->ncConnect',
  ]);
  assert.deepEqual(
    closure.upstream.map(({ local, remote, direction, pids, state }) => ({ local, remote, direction, pids, state })),
    [{ ...fixture.upstream, direction: 'inbound', pids: [fixture.pids.ncListen], state: 'ESTABLISHED' }],
  );
  assert.deepEqual(closure.vanished, []);
  assert.equal(closure.truncated, false);
});

test('resolveClosure figure 6 records pipe ends and the other holders', () => {
  const fixture = buildFigure6();
  const closure = resolveClosure(fixture.host, { socket: fixture.socket });
  const [listen, connect] = [fixture.pids.ncListen, fixture.pids.ncConnect].map((pid) =>
    closure.processes.find((process) => process.pid === pid),
  );
  assert.equal(listen?.pipes.length, 1);
  assert.deepEqual(
    listen?.pipes.map(({ end, otherPids }) => ({ end, otherPids })),
    [{ end: 'write', otherPids: [fixture.pids.ncConnect] }],
  );
  assert.deepEqual(
    connect?.pipes.map(({ end, otherPids }) => ({ end, otherPids })),
    [{ end: 'read', otherPids: [fixture.pids.ncListen] }],
  );
  assert.deepEqual(
    tcpOf(closure, fixture.pids.ncListen).map((socket) => socket.direction),
    ['listen', 'inbound'],
  );
  const queried = tcpOf(closure, fixture.pids.ncConnect);
  assert.deepEqual(
    queried.map(({ queried: q, direction }) => ({ q, direction })),
    [{ q: true, direction: 'outbound' }],
  );
});

test('resolveClosure with a closed listener calls an accepted connection outbound unless given ephemeral ports', () => {
  // Hobbit's netcat (the paper's) closes its listener after accept: nothing on Linux then
  // shows that 8888 was accepted. Without the ephemeral range the previous hop is missed.
  const fixture = buildFigure6({ listenerOpen: false });
  const plain = resolveClosure(fixture.host, { socket: fixture.socket });
  assert.deepEqual(plain.upstream, []);
  assert.deepEqual(
    tcpOf(plain, fixture.pids.ncListen).map((socket) => socket.direction),
    ['outbound'],
  );
  // With it, port 8888 is no ephemeral port, so it may have been accepted: a candidate.
  const ranged = resolveClosure(fixture.host, {
    socket: fixture.socket,
    ephemeralPorts: { low: 32768, high: 60999 },
  });
  assert.deepEqual(
    ranged.upstream.map(({ local, remote, direction }) => ({ local, remote, direction })),
    [{ ...fixture.upstream, direction: 'unknown' }],
  );
  // The queried connection's local port 41000 is ephemeral: still outbound.
  assert.equal(tcpOf(ranged, fixture.pids.ncConnect)[0]?.direction, 'outbound');
});

test('resolveClosure figure 7 walks telnet, csh, both sshds and init, upstream the sshd child', () => {
  const fixture = buildFigure7();
  const closure = resolveClosure(fixture.host, { socket: fixture.socket });
  assert.deepEqual(roles(fixture, closure), [
    'telnet:primary',
    'csh:primary',
    'sshdSession:primary',
    'sshd:primary',
    'init:primary',
  ]);
  assert.deepEqual(links(fixture, closure), [
    'parent csh->telnet',
    'parent init->sshd',
    'parent sshd->sshdSession',
    'parent sshdSession->csh',
  ]);
  assert.deepEqual(closure.upstream, [
    {
      ...fixture.upstream,
      inode: fixture.host.findTcp(fixture.upstream!.local, fixture.upstream!.remote)?.inode,
      state: 'ESTABLISHED',
      direction: 'inbound',
      pids: [fixture.pids.sshdSession],
    },
  ]);
  assert.deepEqual(
    tcpOf(closure, fixture.pids.sshd).map((socket) => socket.direction),
    ['listen'],
  );
  assert.deepEqual(
    closure.processes.map((process) => process.ipc),
    ['followed', 'followed', 'followed', 'followed', 'root'],
  );
});

test('resolveClosure figure 9 finds the 13 processes with the paper\'s primary/resolved split', () => {
  const fixture = buildFigure9();
  const closure = resolveClosure(fixture.host, { socket: fixture.socket });
  // Paper fig. 10 lists 14: the same plus `swapper [0]`, which Linux has no /proc entry for.
  // Its resolved order is P12, P10, P7, P11, P9, P6, P8, P5, P2, P1: the same depth-first walk,
  // with pipe A's holders met in the other order (OpenBSD lists newest processes first; the
  // Linux view lists pids ascending, so P8 comes before P12).
  assert.deepEqual(roles(fixture, closure), [
    'P4:primary',
    'P3:primary',
    'init:primary',
    'P8:resolved',
    'P5:resolved',
    'P2:resolved',
    'P1:resolved',
    'P12:resolved',
    'P10:resolved',
    'P7:resolved',
    'P11:resolved',
    'P9:resolved',
    'P6:resolved',
  ]);
  assert.equal(new Set(closure.processes.map((process) => process.pgid)).size, 4, 'init plus three groups');
  assert.deepEqual(links(fixture, closure), [
    'parent P10->P11',
    'parent P10->P12',
    'parent P3->P4',
    'parent P3->P5',
    'parent P4->P6',
    'parent P4->P7',
    'parent P5->P8',
    'parent P6->P9',
    'parent P7->P10',
    'parent init->P1',
    'parent init->P2',
    'parent init->P3',
    'pipe P11->P12',
    'pipe P12->P4',
    'pipe P5->P8',
    'pipe P8->P4',
    'pipe P9->P10',
    'tcp P1->P2',
    'tcp P2->P5',
  ]);
  assert.deepEqual(
    closure.upstream.map(({ local, remote, direction, pids }) => ({ local, remote, direction, pids })),
    [{ ...fixture.upstream, direction: 'inbound', pids: [fixture.pids.P1] }],
  );
});

test('resolveClosure figure 9 records loopback peers and directions like paper fig. 10', () => {
  const fixture = buildFigure9();
  const closure = resolveClosure(fixture.host, { socket: fixture.socket });
  const summary = (pid: number): string[] =>
    tcpOf(closure, pid).map(
      (s) => `${s.local.address}:${s.local.port} ${s.direction} ${s.remote.address}:${s.remote.port} peers=${s.peerPids.join(',')}`,
    );
  assert.deepEqual(summary(fixture.pids.P2), [
    '127.0.0.1:8011 listen 0.0.0.0:0 peers=',
    `127.0.0.1:8011 inbound 127.0.0.1:39352 peers=${fixture.pids.P1}`,
    `127.0.0.1:32145 outbound 127.0.0.1:8012 peers=${fixture.pids.P5}`,
  ]);
  assert.deepEqual(summary(fixture.pids.P1), [
    '0.0.0.0:8010 listen 0.0.0.0:0 peers=',
    `${THIS_HOST}:8010 inbound ${PREVIOUS_HOST}:1874 peers=`,
    `127.0.0.1:39352 outbound 127.0.0.1:8011 peers=${fixture.pids.P2}`,
  ]);
  const p8 = closure.processes.find((process) => process.pid === fixture.pids.P8);
  assert.deepEqual(
    p8?.pipes.map(({ end, otherPids }) => `${end} ${otherPids.join(',')}`),
    [`write ${fixture.pids.P4},${fixture.pids.P12}`, `read ${fixture.pids.P5}`],
  );
});

test('resolveClosure figure 11 follows both pipes and sends no request for the outbound telnet', () => {
  const fixture = buildFigure11();
  const closure = resolveClosure(fixture.host, { socket: fixture.socket });
  assert.deepEqual(roles(fixture, closure), [
    'telnetIn:primary',
    'server:primary',
    'init:primary',
    'sh:resolved',
    'telnetOut:resolved',
  ]);
  assert.deepEqual(links(fixture, closure), [
    'parent init->server',
    'parent server->sh',
    'parent server->telnetIn',
    'parent server->telnetOut',
    'pipe sh->telnetOut',
    'pipe telnetIn->sh',
  ]);
  const sh = closure.processes.find((process) => process.pid === fixture.pids.sh);
  assert.deepEqual(
    sh?.pipes.map(({ inode, end }) => ({ inode, end })),
    [
      { inode: FIGURE_11_PIPES.telnetToShell, end: 'read' },
      { inode: FIGURE_11_PIPES.shellToTelnet, end: 'write' },
    ],
  );
  // The paper's Linux daemon could not tell direction and sent a request about the port
  // 8001 telnet to the attacker (1.1.1.1). Here no listener accepts at 198.51.100.2:1886, so
  // it is outbound: the attacker's host accepted it, and a STOP daemon there answers an
  // error for an accepted connection (DESIGN.md duty 2) — the request would learn nothing,
  // and the attacker's address is already the queried connection's remote end, known to the
  // requester. The server's port 80 socket is a listener: never a candidate.
  assert.deepEqual(
    tcpOf(closure, fixture.pids.telnetOut).map(({ local, remote, direction }) => ({ local, remote, direction })),
    [{ ...fixture.secondTelnet, direction: 'outbound' }],
  );
  assert.deepEqual(closure.upstream, []);
});

test('resolveClosure figure 11 with ephemeral ports sends to the second telnet as the paper did', () => {
  // telnet's ports 1885/1886 (a 2001 system's ephemeral range) lie outside Linux's default
  // range, so with the range given the direction is unknown, and unknown is a candidate.
  const fixture = buildFigure11();
  const closure = resolveClosure(fixture.host, {
    socket: fixture.socket,
    ephemeralPorts: { low: 32768, high: 60999 },
  });
  assert.deepEqual(
    closure.upstream.map(({ local, remote, direction, pids }) => ({ local, remote, direction, pids })),
    [{ ...fixture.secondTelnet, direction: 'unknown', pids: [fixture.pids.telnetOut] }],
  );
});

test('resolveClosure never lists the queried connection as upstream, even when it is inbound', () => {
  // A CL_IP request may ask about an accepted connection (DESIGN.md duty 3).
  const fixture = buildFigure7();
  const inbound = fixture.host.findTcp(fixture.upstream!.local, fixture.upstream!.remote);
  assert.ok(inbound);
  const closure = resolveClosure(fixture.host, { socket: inbound });
  assert.deepEqual(
    closure.processes.map((process) => process.pid),
    [fixture.pids.sshdSession, fixture.pids.sshd, fixture.pids.init],
  );
  assert.deepEqual(closure.upstream, []);
  assert.equal(tcpOf(closure, fixture.pids.sshdSession)[0]?.queried, true);
});

test('resolveClosure reports every holder of a queried socket shared by parent and child', () => {
  // Paper 4.1: an attacker lets a child in its own process group hold the socket too, hoping
  // the daemon finds only the child (whose parent is init). Every holder is primary here.
  const fixture = buildFigure7();
  const { host, pids } = fixture;
  const orphan = 9000;
  host.addProcess({ pid: orphan, ppid: pids.init, name: 'telnet', uid: 1000, pgid: orphan });
  host.shareFd(orphan, fixture.socket.inode);
  const closure = resolveClosure(host, { socket: fixture.socket });
  assert.deepEqual(
    closure.processes.map((process) => [process.pid, process.role]),
    [
      [pids.telnet, 'primary'],
      [pids.csh, 'primary'],
      [pids.sshdSession, 'primary'],
      [pids.sshd, 'primary'],
      [pids.init, 'primary'],
      [orphan, 'primary'],
    ],
  );
  assert.ok(closure.links.some((l) => l.kind === 'shared' && l.from === pids.telnet && l.to === orphan));
  assert.deepEqual(tcpOf(closure, orphan)[0]?.sharedWith, [pids.telnet]);
  assert.equal(closure.upstream.length, 1, 'the sshd child is still found through the other holder');
});

test('resolveClosure skips a process that exits between findHolders and getProcess', () => {
  const fixture = buildFigure6();
  fixture.host.vanishProcess(fixture.pids.ncListen);
  const closure = resolveClosure(fixture.host, { socket: fixture.socket });
  assert.deepEqual(closure.vanished, [fixture.pids.ncListen]);
  assert.deepEqual(
    closure.processes.map((process) => process.pid),
    [fixture.pids.ncConnect, fixture.pids.bash, fixture.pids.init],
  );
  assert.deepEqual(closure.upstream, []);
});

test('resolveClosure ends an ancestor chain at a parent that vanished', () => {
  const fixture = buildFigure7();
  fixture.host.vanishProcess(fixture.pids.sshdSession);
  const closure = resolveClosure(fixture.host, { socket: fixture.socket });
  assert.deepEqual(
    closure.processes.map((process) => process.pid),
    [fixture.pids.telnet, fixture.pids.csh],
  );
  assert.deepEqual(closure.vanished, [fixture.pids.sshdSession]);
});

test('resolveClosure returns an empty closure when every holder of the queried socket vanished', () => {
  const fixture = buildFigure7();
  fixture.host.vanishProcess(fixture.pids.telnet);
  const closure = resolveClosure(fixture.host, { socket: fixture.socket });
  assert.deepEqual(closure.processes, []);
  assert.deepEqual(closure.links, []);
  assert.deepEqual(closure.upstream, []);
  assert.deepEqual(closure.vanished, [fixture.pids.telnet]);
});

test('resolveClosure returns an empty closure for a socket without inode (TIME_WAIT)', () => {
  const host = new FakeHost().addProcess({ pid: 1, ppid: 0, name: 'init' });
  const socket: TcpSocket = {
    state: 'TIME_WAIT',
    uid: 0,
    inode: 0,
    local: { address: THIS_HOST, port: 40000 },
    remote: { address: NEXT_HOST, port: 80 },
  };
  const closure = resolveClosure(host, { socket });
  assert.deepEqual(closure, { queried: socket, processes: [], links: [], channels: [], upstream: [], vanished: [], truncated: false, problems: [] });
});

/** A host where `count` processes under one shell form a ring of pipes; the first holds the queried socket. */
function pipeRing(count: number): { host: FakeHost; socket: TcpSocket } {
  const host = new FakeHost({ localAddresses: [THIS_HOST] })
    .addProcess({ pid: 1, ppid: 0, name: 'init' })
    .addProcess({ pid: 2, ppid: 1, name: 'sh' });
  for (let i = 0; i < count; i++) host.addProcess({ pid: 100 + i, ppid: 2, name: `p${i}` });
  for (let i = 0; i < count; i++) host.addPipe(100 + i, 100 + ((i + 1) % count));
  const local = { address: THIS_HOST, port: 45000 };
  const remote = { address: NEXT_HOST, port: 22 };
  host.addTcp({ pid: 100, local, remote });
  const socket = host.findTcp(local, remote);
  assert.ok(socket);
  return { host, socket };
}

test('resolveClosure terminates on a cycle of pipes', () => {
  const { host, socket } = pipeRing(3);
  const closure = resolveClosure(host, { socket });
  assert.deepEqual(
    closure.processes.map((process) => `${process.pid}:${process.role}`),
    ['100:primary', '2:primary', '1:primary', '101:resolved', '102:resolved'],
  );
  assert.deepEqual(
    closure.links.filter((link) => link.kind === 'pipe').map((link) => `${link.from}->${link.to}`).sort(),
    ['100->101', '101->102', '102->100'],
  );
});

test('resolveClosure follows a chain of 5000 pipes without overflowing the stack', () => {
  const { host, socket } = pipeRing(5000);
  const closure = resolveClosure(host, { socket, maxProcesses: 6000, maxDescriptors: 20_000, maxLinks: 20_000 });
  assert.equal(closure.processes.length, 5002);
  assert.equal(closure.truncated, false);
});

test('resolveClosure stops at maxProcesses and says so', () => {
  const fixture = buildFigure9();
  const closure = resolveClosure(fixture.host, { socket: fixture.socket, maxProcesses: 5 });
  assert.equal(closure.truncated, true);
  assert.equal(closure.processes.length, 5);
  assert.ok(closure.processes.some((process) => process.ipc === 'truncated'));
  const ring = pipeRing(20_000);
  const big = resolveClosure(ring.host, { socket: ring.socket });
  assert.equal(big.truncated, true);
  assert.equal(big.processes.length, DEFAULT_CLOSURE_LIMITS.maxProcesses);
  assert.deepEqual(big.problems.map((problem) => problem.code), ['limit-processes']);
});

test('resolveClosure rejects invalid limits and port ranges', () => {
  const fixture = buildFigure7();
  assert.throws(() => resolveClosure(fixture.host, { socket: fixture.socket, maxProcesses: 0 }), RangeError);
  assert.throws(() => resolveClosure(fixture.host, { socket: fixture.socket, maxIpcPerProcess: 1.5 }), RangeError);
  assert.throws(
    () => resolveClosure(fixture.host, { socket: fixture.socket, ephemeralPorts: { low: 60999, high: 32768 } }),
    RangeError,
  );
});

test('resolveClosure follows UNIX socket pairs to the peer and records the path', () => {
  const fixture = buildFigure7();
  const { host, pids } = fixture;
  const agent = 8100;
  host.addProcess({ pid: agent, ppid: pids.init, name: 'ssh-agent', uid: 1000 });
  const [client, server] = host.addUnixPair(pids.telnet, agent, { path: '/tmp/ssh-abc/agent.1' });
  const closure = resolveClosure(host, { socket: fixture.socket });
  assert.deepEqual(closure.processes.at(-1), {
    ...closure.processes.at(-1),
    pid: agent,
    role: 'resolved',
  });
  assert.deepEqual(
    closure.links.filter((link) => link.kind === 'unix'),
    [{ kind: 'unix', from: pids.telnet, to: agent, inodes: [client, server] }],
  );
  const telnet = closure.processes.find((process) => process.pid === pids.telnet);
  assert.deepEqual(
    telnet?.sockets.find((socket) => socket.kind === 'unix'),
    { kind: 'unix', fd: 4, inode: client, path: null, type: 'stream', peer: server, peerPids: [agent], sharedWith: [] },
  );
});

test('resolveClosure does not follow the system logger or bus sockets', () => {
  const fixture = buildFigure7();
  const { host, pids } = fixture;
  const journald = 300;
  host.addProcess({ pid: journald, ppid: pids.init, name: 'systemd-journal' });
  host.addUnixPair(pids.sshd, journald, { path: '/run/systemd/journal/stdout' });
  const closure = resolveClosure(host, { socket: fixture.socket });
  assert.ok(!closure.processes.some((process) => process.pid === journald));
  const followed = resolveClosure(host, { socket: fixture.socket, unfollowedUnixPaths: [] });
  assert.ok(followed.processes.some((process) => process.pid === journald));
});

test('resolveClosure records a hub but does not follow its IPC', () => {
  const fixture = buildFigure6();
  const { host, pids } = fixture;
  // bash (an ancestor) talks to a broker that talks to many clients, one with an inbound connection.
  const broker = 400;
  host.addProcess({ pid: broker, ppid: pids.init, name: 'broker' });
  host.addUnixPair(pids.bash, broker);
  const clients = addNoiseProcesses(host, 5, { parentPid: pids.init, firstPid: 500 });
  for (const client of clients) host.addUnixPair(client, broker);
  host.addListener(clients[0]!, { address: '0.0.0.0', port: 9999 });
  host.addTcp({ pid: clients[0]!, local: { address: THIS_HOST, port: 9999 }, remote: { address: '192.0.2.99', port: 5555 } });
  const closure = resolveClosure(host, { socket: fixture.socket, maxIpcPerProcess: 4 });
  const entry = closure.processes.find((process) => process.pid === broker);
  assert.equal(entry?.ipc, 'hub');
  assert.ok(!closure.processes.some((process) => clients.includes(process.pid)));
  assert.deepEqual(closure.upstream.map((candidate) => candidate.remote.address), [PREVIOUS_HOST]);
  const unbounded = resolveClosure(host, { socket: fixture.socket });
  assert.deepEqual(
    unbounded.upstream.map((candidate) => candidate.remote.address),
    [PREVIOUS_HOST, '192.0.2.99'],
  );
});

test('resolveClosure does not follow the IPC of init reached as an ancestor', () => {
  const fixture = buildFigure7();
  const { host, pids } = fixture;
  const other = 700;
  host.addProcess({ pid: other, ppid: pids.init, name: 'getty' });
  host.addPipe(pids.init, other);
  const closure = resolveClosure(host, { socket: fixture.socket });
  assert.equal(closure.processes.find((process) => process.pid === pids.init)?.ipc, 'root');
  assert.ok(!closure.processes.some((process) => process.pid === other));
});

test('resolveClosure does not follow a loopback queried connection to the requester', () => {
  const host = new FakeHost({ localAddresses: [THIS_HOST] })
    .addProcess({ pid: 1, ppid: 0, name: 'init' })
    .addProcess({ pid: 10, ppid: 1, name: 'client' })
    .addProcess({ pid: 20, ppid: 1, name: 'server' });
  host.addListener(20, { address: '127.0.0.1', port: 6667 });
  const client = { address: '127.0.0.1', port: 50000 };
  const server = { address: '127.0.0.1', port: 6667 };
  host.connectLocalTcp(10, 20, { client, server });
  const socket = host.findTcp(client, server);
  assert.ok(socket);
  const closure = resolveClosure(host, { socket });
  assert.deepEqual(closure.processes.map((process) => process.pid), [10, 1]);
});

test('resolveClosure counts CLOSE_WAIT inbound connections as upstream, not LISTEN or other states', () => {
  const fixture = buildFigure6();
  const { host, pids } = fixture;
  host.addListener(pids.bash, { address: '0.0.0.0', port: 2222 });
  const halfClosed = { local: { address: THIS_HOST, port: 2222 }, remote: { address: '192.0.2.7', port: 1000 } };
  host.addTcp({ pid: pids.bash, ...halfClosed, state: 'CLOSE_WAIT' });
  host.addTcp({ pid: pids.bash, local: { address: THIS_HOST, port: 2222 }, remote: { address: '192.0.2.8', port: 1000 }, state: 'LAST_ACK' });
  const closure = resolveClosure(host, { socket: fixture.socket });
  assert.deepEqual(
    closure.upstream.map((candidate) => `${candidate.remote.address} ${candidate.state}`),
    [`192.0.2.7 CLOSE_WAIT`, `${PREVIOUS_HOST} ESTABLISHED`],
  );
});

test('resolveClosure lists sockets no table knows as other', () => {
  const fixture = buildFigure7();
  const inode = fixture.host.addOtherSocket(fixture.pids.csh);
  const closure = resolveClosure(fixture.host, { socket: fixture.socket });
  const csh = closure.processes.find((process) => process.pid === fixture.pids.csh);
  assert.deepEqual(csh?.sockets, [{ kind: 'other', fd: 3, inode }]);
});

test('resolveClosure output survives a JSON round trip unchanged', () => {
  for (const fixture of [buildFigure6(), buildFigure7(), buildFigure9(), buildFigure11()]) {
    const closure = resolveClosure(fixture.host, { socket: fixture.socket });
    assert.deepEqual(JSON.parse(JSON.stringify(closure)), closure);
  }
});

test('resolveClosure ignores unrelated noise processes (paper Table IV, SV with 100 processes)', () => {
  const fixture = buildFigure7();
  addNoiseProcesses(fixture.host, 100);
  const closure = resolveClosure(fixture.host, { socket: fixture.socket });
  assert.equal(closure.processes.length, 5);
  assert.equal(closure.upstream.length, 1);
});

test('resolveClosure follows a pipe to its other end only, not to co-writers of the same end', () => {
  // A log pipe everyone writes to (e.g. the stderr every child inherits): writing to the same
  // pipe links nobody; only the reader is at the other end (paper 3.6).
  const fixture = buildFigure7();
  const { host, pids } = fixture;
  const stranger = 9100;
  host.addProcess({ pid: stranger, ppid: pids.init, name: 'cron', pgid: stranger });
  const logPipe = host.addPipe(pids.telnet, stranger);
  // Turn the stranger's read end into a second write end: now both only write.
  host.closeFd(stranger, logPipe);
  host.shareFd(stranger, logPipe, { end: 'write' });
  const closure = resolveClosure(host, { socket: fixture.socket });
  assert.ok(!closure.processes.some((process) => process.pid === stranger), 'a co-writer is not pulled in');

  const reader = 9101;
  host.addProcess({ pid: reader, ppid: pids.init, name: 'logger', pgid: reader });
  host.shareFd(reader, logPipe, { end: 'read' });
  const withReader = resolveClosure(host, { socket: fixture.socket });
  assert.ok(withReader.processes.some((process) => process.pid === reader), 'the reader is at the other end');
  assert.ok(withReader.links.some((l) => l.kind === 'pipe' && l.from === pids.telnet && l.to === reader));
});

