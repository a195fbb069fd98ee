import assert from 'node:assert/strict';
import { test } from 'node:test';

import { HostLookupError } from '../errors.js';
import { createLinuxSocketTable, toTcpSocket } from './linux-sockets.js';
import type { NativeAddon, RawTcpEntry } from './native-addon.js';

const v4 = (text: string): Buffer => Buffer.from(text.split('.').map(Number));

/** A binding whose functions are given by the test; anything not given throws. */
function fakeAddon(parts: Partial<NativeAddon>): NativeAddon {
  const missing = (): never => {
    throw new Error('not faked');
  };
  return {
    tcpLookup: parts.tcpLookup ?? ((family) => (family === 4 ? null : missing())),
    tcpDump: parts.tcpDump ?? missing,
    unixDump: parts.unixDump ?? missing,
  };
}

function raw(overrides: Partial<RawTcpEntry>): RawTcpEntry {
  return {
    family: 4,
    state: 1,
    uid: 1000,
    inode: 4242,
    localAddr: v4('192.0.2.1'),
    localPort: 40000,
    remoteAddr: v4('198.51.100.7'),
    remotePort: 6667,
    ...overrides,
  };
}

void test('toTcpSocket names the kernel state and normalises addresses', () => {
  const socket = toTcpSocket(
    raw({
      family: 6,
      state: 10,
      localAddr: Buffer.from('00000000000000000000ffffc0000201', 'hex'),
      remoteAddr: Buffer.alloc(16),
      remotePort: 0,
    }),
  );
  assert.deepEqual(socket, {
    state: 'LISTEN',
    uid: 1000,
    inode: 4242,
    local: { address: '192.0.2.1', port: 40000 },
    remote: { address: '::', port: 0 },
  });
  assert.equal(toTcpSocket(raw({ state: 13 })), undefined);
});

void test('createLinuxSocketTable falls back to procfs with one warning when the addon cannot load', () => {
  const logs: string[] = [];
  const table = createLinuxSocketTable({
    log: (msg) => logs.push(msg),
    addon: { binding: undefined, error: new Error('cannot open shared object file') },
  });
  assert.equal(table.backend, 'procfs');
  table.hasListener({ address: '127.0.0.1', port: 1 });
  table.listTcp();
  assert.deepEqual(logs, [
    'netlink addon unavailable (cannot open shared object file); falling back to /proc/net/tcp, which is slow on busy hosts',
  ]);
});

void test('createLinuxSocketTable falls back when the addon loads but netlink refuses', () => {
  const logs: string[] = [];
  const table = createLinuxSocketTable({
    log: (msg) => logs.push(msg),
    addon: {
      binding: fakeAddon({
        tcpLookup: () => {
          throw new Error('Cannot open a NETLINK_SOCK_DIAG socket: Operation not permitted');
        },
      }),
    },
  });
  assert.equal(table.backend, 'procfs');
  assert.equal(logs.length, 1);
  assert.match(logs[0] ?? '', /\(Cannot open a NETLINK_SOCK_DIAG socket: Operation not permitted\)/);
});

void test('createLinuxSocketTable with forceFallback uses procfs and says why', () => {
  const logs: string[] = [];
  const table = createLinuxSocketTable({ log: (msg) => logs.push(msg), forceFallback: true });
  assert.equal(table.backend, 'procfs');
  assert.equal(logs.length, 1);
});

void test('findTcp ignores the listener the kernel returns when no connection matches', () => {
  // inet_lookup falls back to the listening socket on the local port; that is no answer for a 4-tuple.
  const listener = raw({ state: 10, localAddr: v4('0.0.0.0'), remoteAddr: v4('0.0.0.0'), remotePort: 0 });
  const table = createLinuxSocketTable({
    log: () => undefined,
    addon: { binding: fakeAddon({ tcpLookup: () => listener }) },
  });
  assert.equal(table.backend, 'netlink');
  assert.equal(table.findTcp({ address: '192.0.2.1', port: 40000 }, { address: '198.51.100.7', port: 6667 }), undefined);
});

void test('findTcp matches a v4-mapped kernel answer to an IPv4 query', () => {
  const mapped = raw({
    family: 6,
    localAddr: Buffer.from('00000000000000000000ffffc0000201', 'hex'),
    remoteAddr: Buffer.from('00000000000000000000ffffc6336407', 'hex'),
  });
  const seen: unknown[] = [];
  const table = createLinuxSocketTable({
    log: () => undefined,
    addon: {
      binding: fakeAddon({
        tcpLookup: (...args) => {
          seen.push(args);
          return args[2] === 0 ? null : mapped;
        },
      }),
    },
  });
  const found = table.findTcp({ address: '::ffff:192.0.2.1', port: 40000 }, { address: '198.51.100.7', port: 6667 });
  assert.deepEqual(found?.local, { address: '192.0.2.1', port: 40000 });
  assert.deepEqual(found?.remote, { address: '198.51.100.7', port: 6667 });
  assert.deepEqual(seen.at(-1), [4, v4('192.0.2.1'), 40000, v4('198.51.100.7'), 6667]);
});

void test('findTcp returns undefined for mixed families and rejects bad input', () => {
  const table = createLinuxSocketTable({ log: () => undefined, addon: { binding: fakeAddon({}) } });
  assert.equal(table.findTcp({ address: '192.0.2.1', port: 1 }, { address: '2001:db8::1', port: 2 }), undefined);
  assert.throws(() => table.findTcp({ address: 'example.org', port: 1 }, { address: '192.0.2.1', port: 2 }), TypeError);
  assert.throws(() => table.findTcp({ address: '192.0.2.1', port: 65536 }, { address: '192.0.2.1', port: 2 }), RangeError);
});

void test('findTcp wraps a netlink failure in HostLookupError', () => {
  let calls = 0;
  const table = createLinuxSocketTable({
    log: () => undefined,
    addon: {
      binding: fakeAddon({
        tcpLookup: () => {
          if (calls++ === 0) return null; // the probe
          throw Object.assign(new Error('Cannot look up the TCP socket via sock_diag: No buffer space available'), { code: 'ENOBUFS' });
        },
      }),
    },
  });
  assert.throws(() => table.findTcp({ address: '192.0.2.1', port: 1 }, { address: '192.0.2.2', port: 2 }), (err: unknown) => {
    assert.ok(err instanceof HostLookupError);
    assert.equal(err.code, 'ERR_HOST_LOOKUP');
    assert.match(err.message, /^Cannot look up the TCP socket via netlink: .*No buffer space/);
    return true;
  });
});

void test('hasListener is true only for a LISTEN answer on the asked port', () => {
  let answer: RawTcpEntry | null = null;
  const table = createLinuxSocketTable({
    log: () => undefined,
    addon: { binding: fakeAddon({ tcpLookup: () => answer }) },
  });
  assert.equal(table.hasListener({ address: '192.0.2.1', port: 113 }), false);
  answer = raw({ state: 10, localPort: 113, remoteAddr: v4('0.0.0.0'), remotePort: 0 });
  assert.equal(table.hasListener({ address: '192.0.2.1', port: 113 }), true);
  answer = raw({ state: 1, localPort: 113 });
  assert.equal(table.hasListener({ address: '192.0.2.1', port: 113 }), false);
});

void test('listTcp drops sockets without an inode and unknown states', () => {
  const table = createLinuxSocketTable({
    log: () => undefined,
    addon: {
      binding: fakeAddon({
        tcpDump: (family) =>
          family === 4 ? [raw({}), raw({ state: 6, inode: 0 }), raw({ state: 13, inode: 7 })] : [],
      }),
    },
  });
  assert.deepEqual(
    table.listTcp().map((s) => s.inode),
    [4242],
  );
});

void test('listUnix maps types and falls back to /proc/net/unix once when unix_diag fails', () => {
  const logs: string[] = [];
  let fail = false;
  const table = createLinuxSocketTable({
    log: (msg) => logs.push(msg),
    addon: {
      binding: fakeAddon({
        unixDump: () => {
          if (fail) throw new Error('Cannot dump the UNIX sockets via sock_diag: No such file or directory');
          return [
            { inode: 1, type: 1, state: 1, path: '/run/a', peer: 2 },
            { inode: 2, type: 5, state: 1, path: null, peer: 1 },
            { inode: 3, type: 3, state: 7, path: null, peer: 0 },
          ];
        },
      }),
    },
  });
  assert.deepEqual(table.listUnix(), [
    { inode: 1, path: '/run/a', peer: 2, type: 'stream' },
    { inode: 2, path: null, peer: 1, type: 'seqpacket' },
  ]);
  fail = true;
  table.listUnix();
  table.listUnix();
  assert.equal(logs.length, 1);
  assert.match(logs[0] ?? '', /falling back to \/proc\/net\/unix/);
});
