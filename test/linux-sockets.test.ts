// The Linux socket view on real sockets of this process (and one of a child running as
// `nobody`), once through netlink and once through the /proc/net fallback.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { createLinuxSocketTable, type LinuxSocketTable } from '../src/host/linux-sockets.js';
import type { TcpSocket } from '../src/host/types.js';

const DEADLINE_MS = 5000;
const NOBODY = 65534;
const isRoot = process.getuid?.() === 0;

/** Inodes of every socket this process holds, from `/proc/self/fd/*` -> `socket:[inode]`. */
function ownSocketInodes(): Set<number> {
  const out = new Set<number>();
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const match = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`));
      if (match?.[1] !== undefined) out.add(Number(match[1]));
    } catch {
      // the fd of readdir itself is gone by now
    }
  }
  return out;
}

interface Connection {
  readonly server: Server;
  readonly client: Socket;
  readonly accepted: Socket;
}

const open: (Server | Socket)[] = [];

/** A listener on `listenHost` and a client connected to it from `connectHost`. */
async function openConnection(listenHost: string, connectHost: string): Promise<Connection> {
  const server = createServer();
  open.push(server);
  server.listen(0, listenHost);
  await once(server, 'listening', { signal: AbortSignal.timeout(DEADLINE_MS) });
  const address = server.address();
  assert.ok(address !== null && typeof address === 'object');
  const accepted = once(server, 'connection', { signal: AbortSignal.timeout(DEADLINE_MS) });
  const client = connect(address.port, connectHost);
  open.push(client);
  await once(client, 'connect', { signal: AbortSignal.timeout(DEADLINE_MS) });
  const [socket] = (await accepted) as [Socket];
  open.push(socket);
  return { server, client, accepted: socket };
}

function localOf(socket: Socket): { address: string; port: number } {
  assert.ok(socket.localAddress !== undefined && socket.localPort !== undefined);
  return { address: socket.localAddress, port: socket.localPort };
}

function remoteOf(socket: Socket): { address: string; port: number } {
  assert.ok(socket.remoteAddress !== undefined && socket.remotePort !== undefined);
  return { address: socket.remoteAddress, port: socket.remotePort };
}

/** Both ends found, ESTABLISHED, owned by us, with distinct inodes that are our own fds. */
function assertBothEnds(table: LinuxSocketTable, conn: Connection, expectedAddress: string): TcpSocket[] {
  const inodes = ownSocketInodes();
  const ends = [conn.client, conn.accepted].map((socket) => {
    const found = table.findTcp(localOf(socket), remoteOf(socket));
    assert.ok(found, `no socket for ${JSON.stringify([localOf(socket), remoteOf(socket)])}`);
    assert.equal(found.state, 'ESTABLISHED');
    assert.equal(found.uid, process.getuid?.());
    assert.ok(found.inode > 0 && inodes.has(found.inode), `inode ${found.inode} is not one of our sockets`);
    assert.deepEqual(found.local, { address: expectedAddress, port: socket.localPort });
    assert.deepEqual(found.remote, { address: expectedAddress, port: socket.remotePort });
    return found;
  });
  assert.notEqual(ends[0]?.inode, ends[1]?.inode);
  return ends;
}

after(() => {
  for (const handle of open) {
    if ('destroy' in handle) handle.destroy();
    else handle.close();
  }
});

void test('createLinuxSocketTable uses netlink on this host (the addon is built and works)', () => {
  const logs: string[] = [];
  const table = createLinuxSocketTable({ log: (msg) => logs.push(msg) });
  assert.deepEqual(logs, [], 'no fallback warning expected');
  assert.equal(table.backend, 'netlink');
});

for (const forceFallback of [false, true]) {
  const backend = forceFallback ? 'procfs' : 'netlink';

  void describe(`LinuxSocketTable on real sockets (${backend})`, () => {
    const table = createLinuxSocketTable({ forceFallback, log: () => undefined });
    let v4: Connection;
    let v6: Connection;
    let dual: Connection;

    before(async () => {
      assert.equal(table.backend, backend);
      v4 = await openConnection('127.0.0.1', '127.0.0.1');
      v6 = await openConnection('::1', '::1');
      dual = await openConnection('::', '127.0.0.1');
    });

    void test(`findTcp finds both ends of an IPv4 loopback connection (${backend})`, () => {
      assertBothEnds(table, v4, '127.0.0.1');
    });

    void test(`findTcp finds both ends of an IPv6 loopback connection (${backend})`, () => {
      assertBothEnds(table, v6, '::1');
    });

    void test(`findTcp finds an IPv4 connection accepted by a dual-stack listener (${backend})`, () => {
      // Node reports the accepted end as ::ffff:127.0.0.1; the table answers in IPv4.
      assert.equal(dual.accepted.localAddress, '::ffff:127.0.0.1');
      assertBothEnds(table, dual, '127.0.0.1');
    });

    void test(`findTcp returns undefined for a tuple nobody uses, even on a listening port (${backend})`, () => {
      for (const conn of [v4, v6, dual]) {
        const local = localOf(conn.accepted);
        assert.equal(table.findTcp(local, { address: remoteOf(conn.accepted).address, port: 1 }), undefined);
      }
      assert.equal(table.findTcp({ address: '192.0.2.1', port: 1 }, { address: '192.0.2.2', port: 2 }), undefined);
    });

    void test(`hasListener is true on listener ports and false on ephemeral client ports (${backend})`, () => {
      assert.equal(table.hasListener(localOf(v4.accepted)), true);
      assert.equal(table.hasListener(localOf(v6.accepted)), true);
      // The dual-stack [::] listener accepts at any address, IPv4 included.
      assert.equal(table.hasListener({ address: '127.0.0.1', port: dual.accepted.localPort ?? 0 }), true);
      assert.equal(table.hasListener({ address: '::1', port: dual.accepted.localPort ?? 0 }), true);
      for (const conn of [v4, v6, dual]) assert.equal(table.hasListener(localOf(conn.client)), false);
      // A listener bound to 127.0.0.1 does not accept at another address.
      assert.equal(table.hasListener({ address: '127.0.0.2', port: v4.accepted.localPort ?? 0 }), false);
    });

    void test(`listTcp lists the listeners and both ends of each connection (${backend})`, () => {
      const listed = table.listTcp();
      for (const [conn, address] of [
        [v4, '127.0.0.1'],
        [v6, '::1'],
        [dual, '127.0.0.1'],
      ] as const) {
        for (const socket of [conn.client, conn.accepted]) {
          const entry = listed.find((s) => s.local.port === socket.localPort && s.remote.port === socket.remotePort);
          assert.ok(entry, `socket ${socket.localPort} -> ${socket.remotePort} not listed`);
          assert.equal(entry.state, 'ESTABLISHED');
          assert.equal(entry.local.address, address);
          assert.equal(entry.remote.address, address);
        }
        const port = conn.accepted.localPort;
        assert.ok(listed.some((s) => s.state === 'LISTEN' && s.local.port === port));
      }
      assert.ok(listed.every((s) => s.inode > 0));
    });

    void test(`findTcp reports uid 65534 for a connection made by a process running as nobody (${backend})`, async (t) => {
      if (!isRoot) {
        t.skip('needs root: spawns a process as nobody');
        return;
      }
      const server = createServer();
      open.push(server);
      server.listen(0, '127.0.0.1');
      await once(server, 'listening', { signal: AbortSignal.timeout(DEADLINE_MS) });
      const port = (server.address() as { port: number }).port;
      const accepted = once(server, 'connection', { signal: AbortSignal.timeout(DEADLINE_MS) });
      // The child holds its connection until its stdin closes.
      const child = spawn(
        process.execPath,
        [
          '-e',
          "const s = require('node:net').connect(Number(process.argv[1]), '127.0.0.1'); s.on('error', () => process.exit(2)); process.stdin.resume(); process.stdin.on('end', () => process.exit(0));",
          String(port),
        ],
        { uid: NOBODY, gid: NOBODY, cwd: '/', stdio: ['pipe', 'ignore', 'inherit'] },
      );
      const exited = once(child, 'exit');
      try {
        const [socket] = (await accepted) as [Socket];
        open.push(socket);
        const childEnd = table.findTcp(remoteOf(socket), localOf(socket));
        assert.ok(childEnd, 'child connection not found');
        assert.equal(childEnd.uid, NOBODY);
        assert.equal(childEnd.state, 'ESTABLISHED');
        assert.ok(childEnd.inode > 0);
        assert.equal(ownSocketInodes().has(childEnd.inode), false, 'the child end is not our fd');
        assert.equal(table.findTcp(localOf(socket), remoteOf(socket))?.uid, process.getuid?.());
      } finally {
        child.stdin?.end();
        await exited;
      }
    });

    void test(`listUnix finds a connected pair of UNIX stream sockets (${backend})`, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'stopd-unix-'));
      try {
        const path = join(dir, 'server.sock');
        const server = createServer();
        open.push(server);
        server.listen(path);
        await once(server, 'listening', { signal: AbortSignal.timeout(DEADLINE_MS) });
        const accepted = once(server, 'connection', { signal: AbortSignal.timeout(DEADLINE_MS) });
        const client = connect(path);
        open.push(client);
        await once(client, 'connect', { signal: AbortSignal.timeout(DEADLINE_MS) });
        open.push(((await accepted) as [Socket])[0]);

        const listed = table.listUnix();
        const inodes = ownSocketInodes();
        const named = listed.filter((s) => s.path === path);
        // The listener and the accepted socket both carry the bound path.
        assert.equal(named.length, 2, JSON.stringify(named));
        assert.ok(named.every((s) => s.type === 'stream' && inodes.has(s.inode)));
        if (forceFallback) {
          assert.ok(listed.every((s) => s.peer === 0), '/proc/net/unix has no peers');
          return;
        }
        const pair = named.flatMap((acceptedEnd) => {
          const clientEnd = listed.find((s) => s.inode === acceptedEnd.peer);
          return clientEnd !== undefined && clientEnd.peer === acceptedEnd.inode ? [[acceptedEnd, clientEnd] as const] : [];
        });
        assert.equal(pair.length, 1, 'exactly one accepted socket with a peer pointing back');
        const [acceptedEnd, clientEnd] = pair[0] ?? assert.fail('no pair');
        assert.equal(clientEnd.path, null);
        assert.ok(inodes.has(clientEnd.inode) && inodes.has(acceptedEnd.inode));
        const listener = named.find((s) => s !== acceptedEnd);
        assert.equal(listener?.peer, 0);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
}
