/**
 * resolveClosure's cost (issue 13): the host is asked about each closure socket once, and
 * processes, descriptors and links have bounds that say so when hit. The paper's figures and
 * the closure's shape are tested in closure.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeHost } from '../host/fake-host.js';
import type { HostView } from '../host/types.js';
import { resolveClosure } from './closure.js';
import {
  NEXT_HOST,
  PREVIOUS_HOST,
  THIS_HOST,
  addNoiseProcesses,
  buildSharedPipe,
  buildFigure7,
  buildFigure9,
} from './figures.js';
import { MAX_LISTED_PIDS, MAX_PAIR_LINKS } from './types.js';

function withSocketLookups(host: FakeHost, lookups: Partial<Pick<HostView, 'socketOf' | 'findUnix'>>): HostView {
  return {
    findTcp: (local, remote) => host.findTcp(local, remote),
    hasListener: (local) => host.hasListener(local),
    socketOf: lookups.socketOf ?? ((pid, fd, inode) => host.socketOf(pid, fd, inode)),
    findUnix: lookups.findUnix ?? ((inode) => host.findUnix(inode)),
    getProcess: (pid) => host.getProcess(pid),
    findHolders: (inode, ownerUid) => host.findHolders(inode, ownerUid),
    isLocalAddress: (address) => host.isLocalAddress(address),
  };
}

test('resolveClosure asks the host about each closure socket once, per descriptor, and never about the rest', () => {
  const fixture = buildFigure7();
  const noise = addNoiseProcesses(fixture.host, 100);
  const asked: string[] = [];
  const peersAsked: number[] = [];
  const host = fixture.host;
  const counting = withSocketLookups(host, {
    socketOf: (pid, fd, inode) => {
      asked.push(`${pid}:${fd}:${inode}`);
      return host.socketOf(pid, fd, inode);
    },
    findUnix: (inode) => {
      peersAsked.push(inode);
      return host.findUnix(inode);
    },
  });
  const closure = resolveClosure(counting, { socket: fixture.socket });
  const members = new Set(closure.processes.map((process) => process.pid));
  const memberSockets = closure.processes.flatMap((process) => process.sockets.filter((socket) => !('queried' in socket) || !socket.queried));
  assert.ok(asked.length > 0);
  assert.equal(new Set(asked).size, asked.length, 'no descriptor asked twice');
  assert.ok(asked.every((entry) => members.has(Number(entry.split(':')[0]))), 'only closure members are asked about');
  assert.ok(!asked.some((entry) => noise.includes(Number(entry.split(':')[0]))));
  assert.ok(asked.length <= memberSockets.length, `${asked.length} lookups for ${memberSockets.length} sockets`);
  assert.equal(new Set(peersAsked).size, peersAsked.length, 'no peer asked twice');
});

test('resolveClosure still sees a shared socket when one of its holders closed it meanwhile', () => {
  // Two processes share the queried socket and one UNIX socket; the first one asked about
  // the UNIX socket (the server, first in the closure) no longer holds it: the second
  // holder's descriptor still tells what the socket is.
  const host = new FakeHost()
    .addProcess({ pid: 1, ppid: 0, name: 'init' })
    .addProcess({ pid: 10, ppid: 1, name: 'server' })
    .addProcess({ pid: 11, ppid: 10, name: 'worker' })
    .addProcess({ pid: 12, ppid: 1, name: 'client' });
  const queried = host.addTcp({ pid: 10, local: { address: THIS_HOST, port: 22 }, remote: { address: PREVIOUS_HOST, port: 40000 } });
  host.shareFd(11, queried);
  const [shared] = host.addUnixPair(10, 12);
  host.shareFd(11, shared);
  const socket = host.findTcp({ address: THIS_HOST, port: 22 }, { address: PREVIOUS_HOST, port: 40000 });
  assert.ok(socket !== undefined && socket.inode === queried);
  const gone = withSocketLookups(host, {
    socketOf: (pid, fd, inode) => (pid === 10 ? undefined : host.socketOf(pid, fd, inode)),
  });
  const closure = resolveClosure(gone, { socket });
  assert.deepEqual(closure.processes.slice(0, 3).map((process) => process.pid), [10, 1, 11]);
  for (const pid of [10, 11]) {
    const holder = closure.processes.find((process) => process.pid === pid);
    assert.deepEqual(holder?.sockets.filter((entry) => entry.kind === 'unix').map((entry) => entry.inode), [shared], `pid ${pid}`);
  }
  assert.ok(closure.processes.some((process) => process.pid === 12), 'the peer is reached through the other holder');
});

/** `host` with its process reads counted. */
function countingReads(host: FakeHost): { view: HostView; reads: () => number } {
  let reads = 0;
  const view: HostView = {
    ...withSocketLookups(host, {}),
    getProcess: (pid) => {
      reads += 1;
      return host.getProcess(pid);
    },
  };
  return { view, reads: () => reads };
}

test('resolveClosure links 20 000 holders of one pipe through one channel, not pairwise', () => {
  const { host, socket, pipe } = buildSharedPipe(20_000);
  const { view, reads } = countingReads(host);
  const closure = resolveClosure(view, { socket, maxProcesses: 25_000, maxDescriptors: 100_000, maxLinks: 25_000 });
  assert.equal(closure.processes.length, 20_002);
  assert.equal(closure.truncated, false);
  assert.deepEqual(closure.problems, []);
  // Pairwise, the pipe alone would need 20 000 x 19 999 links.
  assert.deepEqual(closure.links.filter((link) => link.kind !== 'parent'), []);
  assert.equal(closure.links.length, 20_001, 'one parent link per process but init');
  assert.equal(closure.channels.length, 1);
  const channel = closure.channels[0];
  assert.ok(channel !== undefined);
  assert.equal(channel.kind, 'pipe');
  assert.deepEqual(channel.inodes, [pipe]);
  assert.equal(channel.from.length, 20_000);
  assert.equal(channel.to.length, 20_000);
  for (const process of closure.processes.slice(3)) {
    const [entry] = process.pipes;
    assert.ok(entry !== undefined);
    assert.equal(entry.otherPids.length, MAX_LISTED_PIDS);
    assert.equal(entry.otherCount, 19_999);
  }
  assert.ok(reads() <= 2 * closure.processes.length, `${reads()} process reads for ${closure.processes.length} processes`);
  // Linear bytes: a few hundred per process, not 20 000 pids each.
  const bytes = JSON.stringify(closure).length;
  assert.ok(bytes < closure.processes.length * 600, `${bytes} bytes for ${closure.processes.length} processes`);
});

test('resolveClosure stops reading co-writers of a pipe at twice maxProcesses', () => {
  // 5 000 writers of one pipe, the reader holds the queried connection: the reader's pipe
  // end reaches every writer; a writer's end would make it read every writer to find none.
  const host = new FakeHost({ localAddresses: [THIS_HOST] })
    .addProcess({ pid: 1, ppid: 0, name: 'init' })
    .addProcess({ pid: 2, ppid: 1, name: 'reader' });
  for (let i = 0; i < 5_000; i++) host.addProcess({ pid: 100 + i, ppid: 1, name: 'writer' });
  const pipe = host.addPipe(100, 2);
  for (let i = 1; i < 5_000; i++) host.shareFd(100 + i, pipe, { end: 'write' });
  const local = { address: THIS_HOST, port: 22 };
  const remote = { address: NEXT_HOST, port: 40000 };
  host.addTcp({ pid: 100, local, remote });
  const socket = host.findTcp(local, remote);
  assert.ok(socket);
  const { view, reads } = countingReads(host);
  const closure = resolveClosure(view, { socket, maxProcesses: 100 });
  assert.equal(closure.truncated, true);
  assert.equal(closure.processes.length, 100);
  assert.deepEqual(closure.problems.map((problem) => problem.code), ['limit-processes']);
  assert.ok(reads() <= 2 * 100 + 1, `${reads()} process reads`);
});

test('resolveClosure links a socket shared by many processes through one channel', () => {
  const { host, socket } = buildSharedPipe(2);
  for (let i = 0; i < 40; i++) host.addProcess({ pid: 1000 + i, ppid: 2, name: 'sharer' });
  for (let i = 0; i < 40; i++) host.shareFd(1000 + i, socket.inode);
  const closure = resolveClosure(host, { socket });
  const shared = closure.channels.filter((channel) => channel.kind === 'shared');
  assert.equal(shared.length, 1);
  assert.equal(shared[0]?.from.length, 41);
  assert.deepEqual(shared[0]?.to, []);
  assert.equal(closure.links.filter((link) => link.kind === 'shared').length, 0);
  const holder = closure.processes.find((process) => process.pid === 100);
  const queried = holder?.sockets.find((entry) => entry.kind === 'tcp' && entry.queried);
  assert.ok(queried?.kind === 'tcp');
  assert.equal(queried.sharedWith.length, MAX_LISTED_PIDS);
  assert.equal(queried.sharedCount, 40);
  // Few holders keep their pairwise links and their records' shape.
  const small = resolveClosure(buildSharedPipe(3).host, { socket: buildSharedPipe(3).socket });
  assert.deepEqual(small.channels, []);
  assert.equal(small.links.filter((link) => link.kind === 'pipe').length, 3 * 3 - 3, 'writers x readers but self');
  assert.ok(small.processes.every((process) => process.pipes.every((entry) => entry.otherCount === undefined)));
  assert.ok(3 * 3 <= MAX_PAIR_LINKS);
});

test('resolveClosure examines at most maxFdsPerProcess descriptors of the queried holder, the queried one always', () => {
  const host = new FakeHost({ localAddresses: [THIS_HOST] })
    .addProcess({ pid: 1, ppid: 0, name: 'init' })
    .addProcess({ pid: 10, ppid: 1, name: 'hub' });
  for (let i = 0; i < 1_000; i++) host.addUnixPair(10, 10);
  const local = { address: THIS_HOST, port: 22 };
  const remote = { address: NEXT_HOST, port: 40000 };
  host.addTcp({ pid: 10, local, remote });
  const socket = host.findTcp(local, remote);
  assert.ok(socket);
  let lookups = 0;
  const view = withSocketLookups(host, {
    socketOf: (pid, fd, inode) => {
      lookups += 1;
      return host.socketOf(pid, fd, inode);
    },
  });
  const closure = resolveClosure(view, { socket, maxFdsPerProcess: 50 });
  const hub = closure.processes.find((process) => process.pid === 10);
  assert.ok(hub);
  assert.equal(hub.sockets.length, 50);
  assert.ok(hub.sockets.some((entry) => entry.kind === 'tcp' && entry.queried), 'the queried socket is listed');
  assert.equal(hub.fdsOmitted, 2_001 - 50);
  assert.equal(closure.truncated, true);
  const problem = closure.problems.find((entry) => entry.code === 'limit-descriptors');
  assert.ok(problem, JSON.stringify(closure.problems));
  assert.match(problem.message, /pid 10 holds 2001, 50 examined/);
  assert.ok(lookups <= 50, `${lookups} socket lookups`);
});

test('resolveClosure takes a process with more descriptors than maxFdsPerProcess for a hub without resolving them', () => {
  const { host, socket } = buildSharedPipe(1);
  host.addProcess({ pid: 50, ppid: 1, name: 'proxy' });
  host.addPipe(100, 50);
  for (let i = 0; i < 500; i++) host.addOtherSocket(50);
  const asked = new Set<number>();
  const view = withSocketLookups(host, {
    socketOf: (pid, fd, inode) => {
      asked.add(pid);
      return host.socketOf(pid, fd, inode);
    },
  });
  const closure = resolveClosure(view, { socket, maxFdsPerProcess: 100 });
  const proxy = closure.processes.find((process) => process.pid === 50);
  assert.equal(proxy?.ipc, 'hub');
  assert.equal(proxy.fdsOmitted, 401);
  const limited = resolveClosure(host, { socket, maxFdsPerProcess: 100, maxDescriptors: 10 });
  assert.equal(limited.processes.find((process) => process.pid === 50)?.fdsOmitted, 501 - (10 - 4), 'the budget left after the holder\'s 4');
  assert.ok(limited.problems.some((entry) => entry.code === 'limit-descriptors'));
});

test('resolveClosure stops at maxLinks and says so', () => {
  const fixture = buildFigure9();
  const closure = resolveClosure(fixture.host, { socket: fixture.socket, maxLinks: 3 });
  assert.equal(closure.links.length + closure.channels.length, 3);
  assert.equal(closure.truncated, true);
  assert.deepEqual(closure.problems.map((problem) => problem.code), ['limit-links']);
  assert.throws(() => resolveClosure(fixture.host, { socket: fixture.socket, maxLinks: 0 }), RangeError);
  assert.throws(() => resolveClosure(fixture.host, { socket: fixture.socket, maxDescriptors: -1 }), RangeError);
  assert.throws(() => resolveClosure(fixture.host, { socket: fixture.socket, maxFdsPerProcess: 0.5 }), RangeError);
});

test('resolveClosure states cut command lines as a problem, not as truncation', () => {
  const { host, socket } = buildSharedPipe(3);
  const cut = { bytes: 1_000_000, sha256: 'ef'.repeat(32) };
  const view: HostView = {
    ...withSocketLookups(host, {}),
    getProcess: (pid) => {
      const info = host.getProcess(pid);
      return info === undefined || pid < 100 ? info : { ...info, cmdlineTruncated: cut };
    },
  };
  const closure = resolveClosure(view, { socket });
  assert.deepEqual(closure.processes.find((process) => process.pid === 101)?.cmdlineTruncated, cut);
  assert.equal(closure.truncated, false);
  assert.deepEqual(closure.problems.map((problem) => problem.code), ['limit-cmdline']);
  assert.match(closure.problems[0]?.message ?? '', /of 3 processes are cut to their first 4096 bytes/);
});

test('resolveClosure asks pipeEndOf about co-readers of an inherited pipe instead of reading them', () => {
  // The holder and 5 000 children read one inherited stdin pipe; its writer is init, whose
  // IPC is not followed (else every reader would join through it, rightly).
  const host = new FakeHost({ localAddresses: [THIS_HOST] })
    .addProcess({ pid: 1, ppid: 0, name: 'init' })
    .addProcess({ pid: 2, ppid: 1, name: 'launcher' })
    .addProcess({ pid: 3, ppid: 2, name: 'holder' });
  const stdin = host.addPipe(1, 3);
  for (let i = 0; i < 5_000; i++) {
    host.addProcess({ pid: 100 + i, ppid: 3, name: 'child' });
    host.shareFd(100 + i, stdin, { end: 'read' });
  }
  const local = { address: THIS_HOST, port: 22 };
  const remote = { address: NEXT_HOST, port: 40000 };
  host.addTcp({ pid: 3, local, remote });
  const socket = host.findTcp(local, remote);
  assert.ok(socket);
  const counting = countingReads(host);
  let ends = 0;
  const view: HostView = {
    ...counting.view,
    pipeEndOf: (pid, inode) => {
      ends += 1;
      return host.pipeEndOf(pid, inode);
    },
  };
  const closure = resolveClosure(view, { socket, maxProcesses: 100 });
  const reads = counting.reads();
  assert.deepEqual(closure.processes.map((process) => process.pid).sort((a, b) => a - b), [1, 2, 3]);
  assert.equal(closure.truncated, false, 'co-readers are not linked, and cost no process read');
  assert.ok(reads <= 3, `${reads} process reads`);
  assert.ok(ends <= 5_001, `${ends} end questions`);
});
