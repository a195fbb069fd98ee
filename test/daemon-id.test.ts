import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { exchange, startDaemon, STOPCTL, type DaemonHandle } from './support/daemon.js';
import { listen, spawnClient, type TestListener } from './support/peers.js';

const run = promisify(execFile);
const TOKEN = /^(\d+),(\d+):USERID:OTHER:([0-9a-f]{64})$/;
const isRoot = process.getuid?.() === 0;

function ledgerEntries(storeDir: string): Record<string, unknown>[] {
  return readFileSync(join(storeDir, 'ledger'), 'utf8')
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

describe('stopd answering ID requests on IPv4 loopback', () => {
  let daemon: DaemonHandle;
  let service: TestListener;

  before(async () => {
    // "100 concurrent clients" opens 100 connections from 127.0.0.1 at once: the per-requester
    // connection share (default 8, test/fairness.test.ts) is lifted for this suite.
    daemon = await startDaemon(['--max-connections-per-requester', '256']);
    service = await listen('127.0.0.1');
  });
  after(async () => {
    await service.close();
    await daemon.stop();
  });

  test('an outbound connection of another process gets a token', async () => {
    const client = await spawnClient('127.0.0.1', service.port);
    try {
      const { lines } = await exchange(daemon, `${client.localPort},${service.port}\r\n`);
      assert.match(lines[0] ?? '', TOKEN);
      assert.equal(lines[0]?.split(':')[0], `${client.localPort},${service.port}`);
    } finally {
      await client.stop();
    }
  });

  test('an inbound connection is answered NO-USER, never a token', async () => {
    const client = await spawnClient('127.0.0.1', service.port);
    try {
      const { lines } = await exchange(daemon, `${service.port},${client.localPort}\r\n`);
      assert.equal(lines[0], `${service.port},${client.localPort}:ERROR:NO-USER`);
    } finally {
      await client.stop();
    }
  });

  test('an unknown connection is answered NO-USER', async () => {
    const { lines } = await exchange(daemon, '1,2\r\n');
    assert.equal(lines[0], '1,2:ERROR:NO-USER');
  });

  test('a bad port is answered INVALID-PORT with the ports echoed', async () => {
    const { lines } = await exchange(daemon, '0,23\r\n');
    assert.equal(lines[0], '0,23:ERROR:INVALID-PORT');
  });

  test('STOP request types are accepted (answered as ID until SV lands)', async () => {
    const client = await spawnClient('127.0.0.1', service.port);
    try {
      const base = `${client.localPort},${service.port}`;
      const { lines } = await exchange(daemon, `${base}:ID\r\n${base}:SV\r\n${base}:ID_REC:42\r\n${base} : SV_REC : 18446744073709551615\r\n`, {
        expectLines: 4,
      });
      assert.equal(lines.length, 4);
      for (const line of lines) assert.match(line, TOKEN);
    } finally {
      await client.stop();
    }
  });

  test('several queries on one connection are answered in order', async () => {
    const clients = await Promise.all([1, 2, 3].map(() => spawnClient('127.0.0.1', service.port)));
    try {
      const queries = [
        `${clients[0]?.localPort},${service.port}`,
        '1,2',
        `${clients[1]?.localPort},${service.port}`,
        '70000,1',
        `${clients[2]?.localPort} ,\t${service.port}`,
      ];
      const { lines } = await exchange(daemon, queries.map((q) => q + '\r\n').join(''), { expectLines: 5 });
      assert.equal(lines.length, 5);
      assert.match(lines[0] ?? '', TOKEN);
      assert.equal(lines[1], '1,2:ERROR:NO-USER');
      assert.match(lines[2] ?? '', TOKEN);
      assert.equal(lines[3], '70000,1:ERROR:INVALID-PORT');
      assert.match(lines[4] ?? '', TOKEN);
      assert.equal(lines[4]?.split(':')[0], `${clients[2]?.localPort},${service.port}`);
    } finally {
      await Promise.all(clients.map((c) => c.stop()));
    }
  });

  test('the connection of a non-root user gets a token that redeems to that user', { skip: isRoot ? false : 'needs root: spawns a process as nobody' }, async () => {
    const client = await spawnClient('127.0.0.1', service.port, { uid: 65534, gid: 65534 });
    try {
      const { lines } = await exchange(daemon, `${client.localPort},${service.port}\r\n`);
      const token = TOKEN.exec(lines[0] ?? '')?.[3];
      assert.ok(token, `expected a token, got ${lines[0]}`);
      assert.ok(!(lines[0] ?? '').includes('nobody'), 'the reply must not name the user');
      const { stdout } = await run(process.execPath, [STOPCTL, 'redeem', token, '--store', daemon.storeDir, '--json']);
      const redeemed = JSON.parse(stdout) as { verdict: string; uid: number; user: string; connection: { local: { port: number } } };
      assert.equal(redeemed.verdict, 'verified');
      assert.equal(redeemed.uid, 65534);
      assert.equal(redeemed.user, 'nobody');
      assert.equal(redeemed.connection.local.port, client.localPort);
    } finally {
      await client.stop();
    }
  });

  test('every request is in the ledger before its reply arrives', async () => {
    const client = await spawnClient('127.0.0.1', service.port);
    try {
      const { lines } = await exchange(daemon, `${client.localPort},${service.port}\r\n`);
      const token = TOKEN.exec(lines[0] ?? '')?.[3];
      // The reply has been received: its entry must already be on disk.
      const entry = ledgerEntries(daemon.storeDir).find((e) => e.token === token);
      assert.ok(entry, 'the token is in the ledger');
      assert.equal(entry.decision, 'token');
      assert.equal(entry.uid, process.getuid?.());
    } finally {
      await client.stop();
    }
  });

  test('100 concurrent clients all get correct answers', async () => {
    const client = await spawnClient('127.0.0.1', service.port);
    try {
      const replies = await Promise.all(
        Array.from({ length: 100 }, (_, i) =>
          exchange(daemon, i % 2 === 0 ? `${client.localPort},${service.port}\r\n` : `${service.port},${client.localPort}\r\n`, {
            timeoutMs: 20_000,
          }),
        ),
      );
      replies.forEach(({ lines }, i) => {
        if (i % 2 === 0) assert.match(lines[0] ?? '', TOKEN);
        else assert.equal(lines[0], `${service.port},${client.localPort}:ERROR:NO-USER`);
      });
      const tokens = new Set(replies.filter((_, i) => i % 2 === 0).map(({ lines }) => lines[0]));
      assert.equal(tokens.size, 50, 'every token is fresh');
    } finally {
      await client.stop();
    }
  });

  test('a client sending one byte per second is answered, and others are not held up meanwhile', async () => {
    const client = await spawnClient('127.0.0.1', service.port);
    try {
      const query = `${client.localPort},${service.port}\r\n`;
      const slow = connect({ host: daemon.host, port: daemon.port });
      slow.setEncoding('utf8');
      let reply = '';
      slow.on('data', (chunk: string) => (reply += chunk));
      await once(slow, 'connect');
      let index = 0;
      const dribble = setInterval(() => {
        slow.write(query.charAt(index));
        index += 1;
        if (index >= query.length) clearInterval(dribble);
      }, 1000);
      // While the slow client is mid-line, a normal client is answered.
      const { lines } = await exchange(daemon, '1,2\r\n');
      assert.equal(lines[0], '1,2:ERROR:NO-USER');
      assert.ok(index < query.length, 'the slow client was still sending');
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`slow client got no reply: ${JSON.stringify(reply)}`)), 30_000);
        slow.on('data', () => {
          if (reply.endsWith('\r\n')) {
            clearTimeout(timer);
            resolve();
          }
        });
      });
      slow.destroy();
      assert.match(reply.trim(), TOKEN);
    } finally {
      await client.stop();
    }
  });

  test('a 10 KB line closes that connection and the next query is answered', async () => {
    const result = await exchange(daemon, 'x'.repeat(10 * 1024) + '\r\n');
    assert.equal(result.lines.length, 0);
    assert.ok(result.closedByServer);
    const { lines } = await exchange(daemon, '1,2\r\n');
    assert.equal(lines[0], '1,2:ERROR:NO-USER');
  });

  test('binary garbage gets error replies or a close, never a crash', async () => {
    const garbage = Buffer.alloc(4096);
    for (let i = 0; i < garbage.length; i++) garbage[i] = (i * 7919 + 13) % 256;
    const socket = connect({ host: daemon.host, port: daemon.port });
    socket.on('error', () => undefined);
    await once(socket, 'connect');
    socket.end(garbage);
    await once(socket, 'close');
    const { lines } = await exchange(daemon, '1,2\r\n');
    assert.equal(lines[0], '1,2:ERROR:NO-USER');
    assert.equal(daemon.process.exitCode, null);
  });

  test('a client that disconnects mid-line does not disturb the next query', async () => {
    const socket = connect({ host: daemon.host, port: daemon.port });
    await once(socket, 'connect');
    socket.write('12345,');
    socket.destroy();
    await once(socket, 'close');
    const { lines } = await exchange(daemon, '1,2\n');
    assert.equal(lines[0], '1,2:ERROR:NO-USER');
  });

  test('a client that half-closes after its query still gets the reply (as nc does)', async () => {
    const socket = connect({ host: daemon.host, port: daemon.port });
    socket.setEncoding('utf8');
    let reply = '';
    socket.on('data', (chunk: string) => (reply += chunk));
    await once(socket, 'connect');
    socket.end('1,2\r\n');
    await once(socket, 'close');
    assert.equal(reply, '1,2:ERROR:NO-USER\r\n');
  });

  test('a line without a port pair closes the connection without a reply', async () => {
    const result = await exchange(daemon, 'hello\r\n');
    assert.deepEqual(result.lines, []);
    assert.ok(result.closedByServer);
  });
});

describe('stopd on IPv6 and dual stack', () => {
  test('answers over IPv6 loopback about an IPv6 connection', async () => {
    const daemon = await startDaemon([], { listen: ['[::1]:0'] });
    const service = await listen('::1');
    const client = await spawnClient('::1', service.port);
    try {
      assert.equal(daemon.host, '::1');
      const { lines } = await exchange(daemon, `${client.localPort},${service.port}\r\n`);
      assert.match(lines[0] ?? '', TOKEN);
      const inbound = await exchange(daemon, `${service.port},${client.localPort}\r\n`);
      assert.equal(inbound.lines[0], `${service.port},${client.localPort}:ERROR:NO-USER`);
    } finally {
      await client.stop();
      await service.close();
      await daemon.stop();
    }
  });

  test('an IPv4 client of a dual-stack listener is answered about its IPv4 connection', async () => {
    const daemon = await startDaemon([], { listen: ['[::]:0'] });
    const service = await listen('127.0.0.1');
    const client = await spawnClient('127.0.0.1', service.port);
    try {
      const { lines } = await exchange({ host: '127.0.0.1', port: daemon.port }, `${client.localPort},${service.port}\r\n`);
      assert.match(lines[0] ?? '', TOKEN);
      const entry = ledgerEntries(daemon.storeDir).at(-1);
      assert.deepEqual((entry?.requester as { address: string }).address, '127.0.0.1', 'v4-mapped requester is normalised');
    } finally {
      await client.stop();
      await service.close();
      await daemon.stop();
    }
  });
});

describe('stopd options', () => {
  test('--random-errors replies tokens instead of errors, and the ledger keeps the real error', async () => {
    const daemon = await startDaemon(['--random-errors']);
    try {
      const { lines } = await exchange(daemon, '1,2\r\n0,5\r\n', { expectLines: 2 });
      assert.match(lines[0] ?? '', TOKEN);
      assert.match(lines[1] ?? '', /^0,5:USERID:OTHER:[0-9a-f]{64}$/);
      const entries = ledgerEntries(daemon.storeDir);
      assert.deepEqual(entries.map((e) => e.replaces), ['NO-USER', 'INVALID-PORT']);
    } finally {
      await daemon.stop();
    }
  });

  test('--unknown-error hides which error it was', async () => {
    const daemon = await startDaemon(['--unknown-error']);
    try {
      const { lines } = await exchange(daemon, '1,2\r\n0,5\r\n', { expectLines: 2 });
      assert.deepEqual(lines, ['1,2:ERROR:UNKNOWN-ERROR', '0,5:ERROR:UNKNOWN-ERROR']);
    } finally {
      await daemon.stop();
    }
  });

  test('--max-connections closes connections beyond the limit without a reply', async () => {
    const daemon = await startDaemon(['--max-connections', '2']);
    const held = [connect({ host: daemon.host, port: daemon.port }), connect({ host: daemon.host, port: daemon.port })];
    try {
      await Promise.all(held.map((s) => once(s, 'connect')));
      // Make sure both are accepted (answered) before the third arrives.
      for (const socket of held) {
        socket.write('1,2\r\n');
        await once(socket, 'data');
      }
      const third = await exchange(daemon, '1,2\r\n');
      assert.deepEqual(third.lines, []);
      assert.ok(third.closedByServer);
      for (const socket of held) socket.destroy();
      // Once they are gone, new clients are served again (bounded retry while the daemon notices).
      let answered: string | undefined;
      for (let attempt = 0; attempt < 50 && answered === undefined; attempt++) {
        answered = (await exchange(daemon, '1,2\r\n')).lines[0];
      }
      assert.equal(answered, '1,2:ERROR:NO-USER');
    } finally {
      for (const socket of held) socket.destroy();
      await daemon.stop();
    }
  });

  test('--idle-timeout closes a silent client', async () => {
    const daemon = await startDaemon(['--idle-timeout', '1']);
    try {
      const socket = connect({ host: daemon.host, port: daemon.port });
      await once(socket, 'connect');
      const closed = once(socket, 'close');
      const deadline = setTimeout(() => socket.destroy(new Error('not closed by the daemon')), 10_000);
      let error: unknown;
      socket.on('error', (e) => (error = e));
      await closed;
      clearTimeout(deadline);
      assert.equal(error, undefined);
    } finally {
      await daemon.stop();
    }
  });

  test('SIGTERM answers the query in flight, then exits 0', async () => {
    const daemon = await startDaemon();
    const socket = connect({ host: daemon.host, port: daemon.port });
    socket.setEncoding('utf8');
    await once(socket, 'connect');
    socket.write('1,2\r\n');
    const [reply] = (await once(socket, 'data')) as [string];
    assert.equal(reply, '1,2:ERROR:NO-USER\r\n');
    const code = await daemon.stop();
    assert.equal(code, 0);
    assert.match(daemon.stderr(), /stopped/);
  });

  test('a second daemon on the same store refuses to start with a clear message', async () => {
    const first = await startDaemon();
    try {
      await assert.rejects(startDaemon([], { storeDir: first.storeDir }), /held by running process/);
    } finally {
      await first.stop();
    }
  });

  test('bad options are refused in one sentence', async () => {
    for (const [args, pattern] of [
      [['--listen', 'nowhere'], /--listen must be ADDR:PORT/],
      [['--max-lookups', '0'], /--max-lookups must be a whole number from 1/],
      [['--token-hash', 'md5'], /--token-hash must be sha256 or sha1/],
      [['--bogus'], /Unknown option '--bogus'/],
    ] as const) {
      const failure = await run(process.execPath, [join(import.meta.dirname, '../src/cli/stopd.js'), ...args]).then(
        () => assert.fail('stopd accepted bad options'),
        (error: { code: number; stderr: string }) => error,
      );
      assert.equal(failure.code, 64);
      assert.match(failure.stderr, pattern);
      assert.equal(failure.stderr.trim().split('\n').length, 1);
    }
  });
});
