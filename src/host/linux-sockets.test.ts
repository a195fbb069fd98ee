import assert from 'node:assert/strict';
import { SocketAddress } from 'node:net';
import { test } from 'node:test';

import { HostLookupError } from '../errors.js';
import { createLinuxSocketTable, formatIpAddress, parseIpAddress, toTcpSocket } from './linux-sockets.js';
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

void test('parseIpAddress reads IPv4 and IPv6 text', () => {
  assert.deepEqual(parseIpAddress('192.0.2.1'), { family: 4, bytes: v4('192.0.2.1') });
  const six = parseIpAddress('2001:db8::1');
  assert.equal(six?.family, 6);
  assert.equal(six?.bytes.toString('hex'), '20010db8000000000000000000000001');
  assert.equal(parseIpAddress('::')?.bytes.toString('hex'), '0'.repeat(32));
  assert.equal(parseIpAddress('1::')?.bytes.toString('hex'), '0001' + '0'.repeat(28));
  assert.equal(parseIpAddress('::2:3')?.bytes.toString('hex'), '0'.repeat(24) + '00020003');
  assert.equal(parseIpAddress('1:2:3:4:5:6:7:8')?.bytes.toString('hex'), '00010002000300040005000600070008');
});

void test('parseIpAddress turns v4-mapped IPv6 into IPv4, in dotted and hex forms', () => {
  assert.deepEqual(parseIpAddress('::ffff:127.0.0.1'), { family: 4, bytes: v4('127.0.0.1') });
  assert.deepEqual(parseIpAddress('::FFFF:7f00:1'), { family: 4, bytes: v4('127.0.0.1') });
});

void test('parseIpAddress ignores an IPv6 zone and rejects non-addresses', () => {
  assert.equal(parseIpAddress('fe80::1%eth0')?.bytes.toString('hex'), 'fe80' + '0'.repeat(26) + '01');
  assert.equal(parseIpAddress('localhost'), undefined);
  assert.equal(parseIpAddress('1.2.3.256'), undefined);
  assert.equal(parseIpAddress(''), undefined);
});

void test('formatIpAddress prints IPv4, and v4-mapped IPv6 as IPv4', () => {
  assert.equal(formatIpAddress(v4('192.0.2.10')), '192.0.2.10');
  assert.equal(formatIpAddress(Buffer.from('00000000000000000000ffff7f000001', 'hex')), '127.0.0.1');
});

void test('formatIpAddress prints IPv6 exactly as net.SocketAddress does', () => {
  // Deterministic pseudo-random words, biased to zero so that runs of every length occur.
  let seed = 12345;
  const next = (): number => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed;
  };
  const samples = ['::', '::1', '1::', '::2:3', '1:0:0:1:0:0:0:1', '2001:db8:0:0:1:0:0:1', 'fe80::abcd'];
  for (let i = 0; i < 2000; i++) {
    const words = Array.from({ length: 8 }, () => (next() % 3 === 0 ? next() % 0x10000 : 0));
    samples.push(words.map((w) => w.toString(16)).join(':'));
  }
  for (const text of samples) {
    const bytes = parseIpAddress(text)?.bytes;
    assert.ok(bytes, text);
    if (bytes.length === 4) continue; // v4-mapped: deliberately printed as IPv4
    const expected = new SocketAddress({ address: text, family: 'ipv6' }).address;
    assert.equal(formatIpAddress(bytes), expected, text);
  }
});

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
