import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeHost } from './fake-host.js';

const ME = '198.51.100.2';
const THEM = '192.0.2.1';

function twoProcesses(): FakeHost {
  return new FakeHost({ localAddresses: [ME] })
    .addProcess({ pid: 1, ppid: 0, name: 'init' })
    .addProcess({ pid: 10, ppid: 1, name: 'a', uid: 1000 })
    .addProcess({ pid: 11, ppid: 1, name: 'b', uid: 1001 });
}

test('FakeHost.addProcess fills Linux-like defaults', () => {
  const host = new FakeHost().addProcess({ pid: 5, ppid: 1, name: 'x', uid: { real: 1000, effective: 0 } });
  assert.deepEqual(host.getProcess(5), {
    pid: 5,
    ppid: 1,
    name: 'x',
    uid: { real: 1000, effective: 0 },
    startTime: '2024-01-01T00:00:00.000Z',
    tty: null,
    priority: 20,
    nice: 0,
    pgid: 5,
    sid: 5,
    cmdline: ['x'],
    fds: [],
  });
});

test('FakeHost.addProcess rejects a duplicate pid', () => {
  const host = new FakeHost().addProcess({ pid: 5, ppid: 1, name: 'x' });
  assert.throws(() => host.addProcess({ pid: 5, ppid: 1, name: 'y' }), /exists/);
});

test('FakeHost.getProcess returns undefined for pid 0 and unknown pids', () => {
  const host = twoProcesses();
  assert.equal(host.getProcess(0), undefined);
  assert.equal(host.getProcess(99), undefined);
});

test('FakeHost.addPipe gives the writer a write end and the reader a read end', () => {
  const host = twoProcesses();
  const inode = host.addPipe(10, 11);
  assert.deepEqual(host.getProcess(10)?.fds, [{ fd: 3, kind: 'pipe', inode, end: 'write' }]);
  assert.deepEqual(host.getProcess(11)?.fds, [{ fd: 3, kind: 'pipe', inode, end: 'read' }]);
  assert.deepEqual(host.findHolders(inode), [10, 11]);
});

test('FakeHost.findHolders lists the owner uid first, then the rest ascending', () => {
  const host = twoProcesses();
  const inode = host.addPipe(10, 11);
  host.shareFd(1, inode);
  assert.deepEqual(host.findHolders(inode), [1, 10, 11]);
  assert.deepEqual(host.findHolders(inode, 1001), [11, 1, 10]);
  assert.deepEqual(host.findHolders(inode, 4242), [1, 10, 11]);
});

test('FakeHost.findHolders returns nothing for inode 0 and unknown inodes', () => {
  const host = twoProcesses();
  host.addPipe(10, 11);
  assert.deepEqual(host.findHolders(0), []);
  assert.deepEqual(host.findHolders(123456), []);
});

test('FakeHost.shareFd copies a pipe end unless told otherwise', () => {
  const host = twoProcesses();
  const inode = host.addPipe(10, 11);
  host.shareFd(1, inode);
  host.shareFd(1, inode, { end: 'both' });
  assert.deepEqual(
    host.getProcess(1)?.fds.map((fd) => (fd.kind === 'pipe' ? fd.end : fd.kind)),
    ['write', 'both'],
  );
  assert.throws(() => host.shareFd(1, 999_999), /no process holds it/);
});

test('FakeHost.findTcp matches the exact 4-tuple only and normalises v4-mapped addresses', () => {
  const host = twoProcesses();
  const local = { address: ME, port: 968 };
  const remote = { address: THEM, port: 23 };
  const inode = host.addTcp({ pid: 10, local, remote });
  assert.deepEqual(host.findTcp(local, remote), { state: 'ESTABLISHED', uid: 1000, inode, local, remote });
  assert.equal(host.findTcp({ address: `::ffff:${ME}`, port: 968 }, remote)?.inode, inode);
  assert.equal(host.findTcp(remote, local), undefined);
  assert.equal(host.findTcp(local, { address: THEM, port: 24 }), undefined);
});

test('FakeHost.addTcp keeps TIME_WAIT sockets findable but unlisted and unheld', () => {
  const host = twoProcesses();
  const local = { address: ME, port: 40000 };
  const remote = { address: THEM, port: 80 };
  assert.equal(host.addTcp({ local, remote, state: 'TIME_WAIT' }), 0);
  assert.equal(host.findTcp(local, remote)?.state, 'TIME_WAIT');
  assert.deepEqual(host.listTcp(), []);
});

test('FakeHost.hasListener accepts a bound address or the wildcard of its family', () => {
  const host = twoProcesses();
  host.addListener(10, { address: '0.0.0.0', port: 22 });
  host.addListener(10, { address: '127.0.0.1', port: 8011 });
  host.addListener(11, { address: '::', port: 80 });
  host.addListener(11, { address: '::1', port: 631 });
  assert.equal(host.hasListener({ address: ME, port: 22 }), true);
  assert.equal(host.hasListener({ address: '127.0.0.1', port: 8011 }), true);
  assert.equal(host.hasListener({ address: ME, port: 8011 }), false);
  assert.equal(host.hasListener({ address: ME, port: 80 }), true, ':: takes IPv4 (bindv6only=0)');
  assert.equal(host.hasListener({ address: '2001:db8::2', port: 80 }), true);
  assert.equal(host.hasListener({ address: '2001:db8::2', port: 22 }), false, '0.0.0.0 does not take IPv6');
  assert.equal(host.hasListener({ address: '::1', port: 631 }), true);
  assert.equal(host.hasListener({ address: ME, port: 23 }), false);
});

test('FakeHost.addListener records a LISTEN socket with a wildcard remote', () => {
  const host = twoProcesses();
  const inode = host.addListener(10, { address: '::', port: 80 });
  assert.deepEqual(host.listTcp(), [
    { state: 'LISTEN', uid: 1000, inode, local: { address: '::', port: 80 }, remote: { address: '::', port: 0 } },
  ]);
});

test('FakeHost.connectLocalTcp creates two sockets with reversed 4-tuples', () => {
  const host = twoProcesses();
  const client = { address: '127.0.0.1', port: 39352 };
  const server = { address: '127.0.0.1', port: 8011 };
  const inodes = host.connectLocalTcp(10, 11, { client, server });
  assert.equal(host.findTcp(client, server)?.inode, inodes.client);
  assert.equal(host.findTcp(server, client)?.inode, inodes.server);
  assert.deepEqual(host.findHolders(inodes.client), [10]);
  assert.deepEqual(host.findHolders(inodes.server), [11]);
});

test('FakeHost.addUnixPair lists both sockets as each other\'s peers', () => {
  const host = twoProcesses();
  const [a, b] = host.addUnixPair(10, 11, { path: '/run/app.sock' });
  assert.deepEqual(host.listUnix(), [
    { inode: a, path: null, peer: b, type: 'stream' },
    { inode: b, path: '/run/app.sock', peer: a, type: 'stream' },
  ]);
});

test('FakeHost.removeSocket drops a socket from the tables but not from descriptors', () => {
  const host = twoProcesses();
  const inode = host.addListener(10, { address: '0.0.0.0', port: 8888 });
  host.removeSocket(inode);
  assert.equal(host.hasListener({ address: ME, port: 8888 }), false);
  assert.deepEqual(host.findHolders(inode), [10]);
});

test('FakeHost.removeProcess makes the process and its descriptors disappear', () => {
  const host = twoProcesses();
  const inode = host.addPipe(10, 11);
  host.removeProcess(10);
  assert.equal(host.getProcess(10), undefined);
  assert.deepEqual(host.findHolders(inode), [11]);
  assert.deepEqual(host.listPids(), [1, 11]);
});

test('FakeHost.vanishProcess keeps the process in findHolders but not in getProcess', () => {
  const host = twoProcesses();
  const inode = host.addPipe(10, 11);
  host.vanishProcess(10);
  assert.deepEqual(host.findHolders(inode), [10, 11]);
  assert.equal(host.getProcess(10), undefined);
});

test('FakeHost.closeFd closes every descriptor of an inode', () => {
  const host = twoProcesses();
  const inode = host.addPipe(10, 11);
  host.shareFd(10, inode);
  host.closeFd(10, inode);
  assert.deepEqual(host.findHolders(inode), [11]);
});

test('FakeHost.isLocalAddress knows loopback, configured and v4-mapped addresses', () => {
  const host = new FakeHost({ localAddresses: [ME, '2001:DB8::2'] });
  assert.equal(host.isLocalAddress('127.0.0.1'), true);
  assert.equal(host.isLocalAddress('127.1.2.3'), true);
  assert.equal(host.isLocalAddress('::1'), true);
  assert.equal(host.isLocalAddress(ME), true);
  assert.equal(host.isLocalAddress(`::ffff:${ME}`), true);
  assert.equal(host.isLocalAddress('2001:db8::2'), true);
  assert.equal(host.isLocalAddress(THEM), false);
  host.localAddresses.add(THEM);
  assert.equal(host.isLocalAddress(THEM), true);
});

test('FakeHost.getProcess returns a copy the caller cannot use to change the host', () => {
  const host = twoProcesses();
  host.addPipe(10, 11);
  const first = host.getProcess(10);
  (first?.fds as unknown[]).length = 0;
  assert.equal(host.getProcess(10)?.fds.length, 1);
});

test('FakeHost.addOtherSocket adds a socket no table knows', () => {
  const host = twoProcesses();
  const inode = host.addOtherSocket(10);
  assert.deepEqual(host.getProcess(10)?.fds, [{ fd: 3, kind: 'socket', inode }]);
  assert.deepEqual(host.listTcp(), []);
  assert.deepEqual(host.listUnix(), []);
});

test('FakeHost.socketOf answers for the descriptor that holds the inode, like the Linux view', () => {
  const host = twoProcesses();
  const local = { address: ME, port: 40000 };
  const remote = { address: THEM, port: 80 };
  const tcp = host.addTcp({ pid: 10, local, remote });
  const [a, b] = host.addUnixPair(10, 11, { path: '/run/app.sock' });
  const other = host.addOtherSocket(10);
  const fdOf = (pid: number, inode: number): number =>
    host.getProcess(pid)?.fds.find((fd) => fd.inode === inode)?.fd ?? assert.fail(`no fd for ${inode}`);

  assert.deepEqual(host.socketOf(10, fdOf(10, tcp), tcp), {
    kind: 'tcp',
    socket: { state: 'ESTABLISHED', uid: 1000, inode: tcp, local, remote },
  });
  assert.deepEqual(host.socketOf(11, fdOf(11, b), b), { kind: 'unix', socket: { inode: b, path: '/run/app.sock', peer: a, type: 'stream' } });
  assert.deepEqual(host.findUnix(a), { inode: a, path: null, peer: b, type: 'stream' });
  assert.equal(host.findUnix(tcp), undefined);
  assert.equal(host.socketOf(10, fdOf(10, other), other), undefined, 'a socket no table knows');
  assert.equal(host.socketOf(10, fdOf(10, tcp), a), undefined, 'the descriptor is another socket');
  assert.equal(host.socketOf(11, fdOf(10, tcp), tcp), undefined, 'another process does not hold it');
  const fdB = fdOf(11, b);
  host.vanishProcess(11);
  assert.equal(host.socketOf(11, fdB, b), undefined, 'a vanished process holds nothing');
});
