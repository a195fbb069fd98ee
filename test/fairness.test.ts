/**
 * Fairness against a real daemon (issue 13, items 1 and 2; DESIGN duty 10): idle connections
 * from one address cannot take the slots others need (the Slowloris attack), and a flood of
 * requests from one requester is refused by its own rate limit while others are still served,
 * with a bounded number of `rate-limited` ledger entries.
 *
 * Requesters are told apart by the client's local address: 127.0.0.1 to 127.0.0.4 are all
 * loopback, and each is a requester group of its own (IPv4: one group per address).
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { exchange, startDaemon, type DaemonHandle } from './support/daemon.js';
import { listen, spawnClient } from './support/peers.js';

const isRoot = process.getuid?.() === 0;
const TOKEN = /^(\d+),(\d+):USERID:OTHER:([0-9a-f]{64})$/;

function ledgerEntries(storeDir: string): Record<string, unknown>[] {
  return readFileSync(join(storeDir, 'ledger'), 'utf8')
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

/** Idle connections from one address, and how many of them the daemon has closed so far. */
interface IdleCrowd {
  readonly sockets: readonly Socket[];
  closed(): number;
  /** Resolves once `count` of them are closed; rejects after `timeoutMs`. */
  closedAtLeast(count: number, timeoutMs: number): Promise<void>;
  destroy(): void;
}

/**
 * Opens `count` connections from `localAddress` that never send anything, and waits (bounded)
 * until each is connected or already closed by the daemon.
 */
async function openIdleCrowd(daemon: DaemonHandle, count: number, localAddress: string): Promise<IdleCrowd> {
  let closed = 0;
  const waiters: { count: number; resolve: () => void }[] = [];
  const sockets: Socket[] = [];
  const settled: Promise<void>[] = [];
  for (let i = 0; i < count; i++) {
    const socket = connect({ host: daemon.host, port: daemon.port, localAddress });
    socket.on('error', () => socket.destroy()); // a reset is the daemon closing it
    socket.once('close', () => {
      closed += 1;
      for (const waiter of waiters.filter((w) => closed >= w.count)) waiter.resolve();
    });
    settled.push(
      new Promise<void>((resolve) => {
        socket.once('connect', () => resolve());
        socket.once('close', () => resolve());
      }),
    );
    sockets.push(socket);
  }
  await Promise.all(settled);
  return {
    sockets,
    closed: () => closed,
    closedAtLeast(wanted, timeoutMs) {
      if (closed >= wanted) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`only ${closed} of ${count} idle connections closed, expected ${wanted}`)), timeoutMs);
        waiters.push({
          count: wanted,
          resolve: () => {
            clearTimeout(timer);
            resolve();
          },
        });
      });
    },
    destroy() {
      for (const socket of sockets) socket.destroy();
    },
  };
}

/** An ID request about no connection from `localAddress`: answered NO-USER when served at all. */
async function askFrom(daemon: DaemonHandle, localAddress: string): Promise<string | undefined> {
  const { lines } = await exchange(daemon, '1,2\r\n', { localAddress, timeoutMs: 10_000 });
  return lines[0];
}

/** Like {@link askFrom}, but the connection stays open after the reply; bounded wait. */
async function askAndStay(daemon: DaemonHandle, localAddress: string): Promise<{ socket: Socket; reply: string | undefined }> {
  const socket = connect({ host: daemon.host, port: daemon.port, localAddress });
  socket.setEncoding('utf8');
  socket.on('error', () => socket.destroy());
  let data = '';
  const reply = await new Promise<string | undefined>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no reply to ${localAddress} within 10 s; got ${JSON.stringify(data)}`)), 10_000);
    socket.once('connect', () => socket.write('1,2\r\n'));
    socket.on('data', (chunk: string) => {
      data += chunk;
      if (data.includes('\r\n')) {
        clearTimeout(timer);
        resolve(data.split('\r\n')[0]);
      }
    });
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(undefined);
    });
  });
  return { socket, reply };
}

describe('fair connection slots', () => {
  test('1000 idle connections from one address: the default share keeps 8, and three other addresses are answered', async () => {
    // --idle-timeout is raised so that no idle connection is closed by its timeout during the test.
    const daemon = await startDaemon(['--idle-timeout', '600']);
    let crowd: IdleCrowd | undefined;
    try {
      crowd = await openIdleCrowd(daemon, 1000, '127.0.0.1');
      // Default --max-connections-per-requester 8: the other 992 are closed at once.
      await crowd.closedAtLeast(992, 30_000);
      for (const address of ['127.0.0.2', '127.0.0.3', '127.0.0.4']) {
        assert.equal(await askFrom(daemon, address), '1,2:ERROR:NO-USER', `the request from ${address} is answered`);
      }
      assert.equal(crowd.closed(), 992, 'eight idle connections stay open: nothing needed their slots');
    } finally {
      crowd?.destroy();
      await daemon.stop();
    }
  });

  test('with the table full of one address\'s idle connections, newcomers evict them, one each', async () => {
    // The per-requester share is lifted to 1000 here so that one address fills the whole table
    // (256, the default): the case the eviction is for, many idle connections of a heavy requester.
    const daemon = await startDaemon(['--idle-timeout', '600', '--max-connections-per-requester', '1000']);
    let crowd: IdleCrowd | undefined;
    const held: Socket[] = [];
    try {
      crowd = await openIdleCrowd(daemon, 1000, '127.0.0.1');
      await crowd.closedAtLeast(1000 - 256, 30_000);
      // The three stay connected after their answer, so the table is full again afterwards.
      const legit = await Promise.all(['127.0.0.2', '127.0.0.3', '127.0.0.4'].map((address) => askAndStay(daemon, address)));
      held.push(...legit.map(({ socket }) => socket));
      assert.deepEqual(legit.map(({ reply }) => reply), ['1,2:ERROR:NO-USER', '1,2:ERROR:NO-USER', '1,2:ERROR:NO-USER'], 'every legitimate request is answered');
      // Each of the three took the slot of one idle connection of 127.0.0.1.
      await crowd.closedAtLeast(1000 - 256 + 3, 10_000);
      assert.equal(crowd.closed(), 1000 - 256 + 3);
      // The heavy address itself evicts nobody: with the table full, its newcomer is refused.
      const own = await exchange(daemon, '1,2\r\n', { localAddress: '127.0.0.1', timeoutMs: 10_000 });
      assert.deepEqual(own.lines, []);
      assert.ok(own.closedByServer);
      assert.ok(legit.every(({ socket }) => !socket.destroyed && socket.readyState === 'open'), 'the legitimate connections stay open');
      assert.equal(crowd.closed(), 1000 - 256 + 3);
    } finally {
      for (const socket of held) socket.destroy();
      crowd?.destroy();
      await daemon.stop();
    }
  });
  // That a connection with a request waiting for its reply is never the one evicted is shown by
  // the unit tests of ConnectionSlots: here no request can be held pending deterministically.
});

describe('per-requester rate limits', { skip: isRoot ? false : 'needs root: SV requests read /proc of other processes' }, () => {
  test('a flood of SV requests from one requester is refused while another requester is served; the ledger holds one entry per window', async () => {
    // One analysis every 10 s after a burst of 5, so that the flood outruns its allowance whatever the machine's speed.
    const daemon = await startDaemon(['--rate-analysis', '6', '--rate-analysis-burst', '5'], { keepStore: true });
    // The queried connections: from this host (127.0.0.1) to a listener on each requester's address.
    const services = await Promise.all(['127.0.0.1', '127.0.0.2', '127.0.0.3'].map((address) => listen(address)));
    const [flooderService, otherService, idsService] = services;
    assert.ok(flooderService !== undefined && otherService !== undefined && idsService !== undefined);
    const clients = await Promise.all(services.map((service, i) => spawnClient(`127.0.0.${i + 1}`, service.port)));
    const [flooderClient, otherClient] = clients;
    assert.ok(flooderClient !== undefined && otherClient !== undefined);
    const started = Date.now();
    let stopped = false;
    try {
      const flood = 50;
      const line = `${flooderClient.localPort},${flooderService.port}:SV\r\n`;
      const { lines } = await exchange(daemon, line.repeat(flood), { expectLines: flood, localAddress: '127.0.0.1', timeoutMs: 120_000 });
      assert.equal(lines.length, flood);
      const tokens = lines.filter((reply) => TOKEN.test(reply));
      const refused = lines.filter((reply) => reply === `${flooderClient.localPort},${flooderService.port}:ERROR:UNKNOWN-ERROR`);
      assert.equal(tokens.length + refused.length, flood, `every reply is a token or UNKNOWN-ERROR: ${lines.join(' | ')}`);
      const earned = Math.floor((Date.now() - started) / 10_000);
      assert.ok(tokens.length >= 5 && tokens.length <= 5 + earned + 1, `${tokens.length} processed: the burst of 5 plus what ${earned} × 10 s earned`);

      // Another requester is still processed: its SV requests get records.
      for (let i = 0; i < 3; i++) {
        const { lines: other } = await exchange(daemon, `${otherClient.localPort},${otherService.port}:SV\r\n`, { localAddress: '127.0.0.2', timeoutMs: 30_000 });
        assert.match(other[0] ?? '', TOKEN, 'the other requester is served');
      }

      // CL_IP requests count against the requester that sends them (127.0.0.3), not the CL_IP:
      // asked about the flooder's connection, 127.0.0.3 spends its own burst of 5, then gets
      // tokens (CL_IP is always answered with a token) that were not processed.
      const clIp = `${flooderClient.localPort},${flooderService.port}:SV:127.0.0.1\r\n`;
      const { lines: ids } = await exchange(daemon, clIp.repeat(8), { expectLines: 8, localAddress: '127.0.0.3', timeoutMs: 60_000 });
      assert.equal(ids.filter((reply) => TOKEN.test(reply)).length, 8, `CL_IP replies are tokens: ${ids.join(' | ')}`);

      assert.equal(await daemon.stop(), 0, daemon.stderr());
      stopped = true;
      const entries = ledgerEntries(daemon.storeDir);
      const limited = entries.filter((entry) => entry.kind === 'rate-limited');
      const minutes = Math.ceil((Date.now() - started) / 60_000);
      const of = (requester: string): Record<string, unknown>[] => limited.filter((entry) => entry.requester === requester);
      // One entry per requester and window (a minute; the last at shutdown): bounded by the time, not by the flood.
      assert.ok(of('127.0.0.1').length >= 1 && of('127.0.0.1').length <= minutes + 1, JSON.stringify(of('127.0.0.1')));
      const countRefused = (requester: string): number =>
        of(requester).reduce((sum, entry) => sum + ((entry.refused as { analysis: number }).analysis ?? 0), 0);
      assert.equal(countRefused('127.0.0.1'), refused.length, 'every refusal is counted');
      assert.equal(of('127.0.0.2').length, 0, 'the other requester was never limited');
      assert.ok(countRefused('127.0.0.3') >= 8 - 5 - 1 && countRefused('127.0.0.3') <= 3, `CL_IP refusals counted against 127.0.0.3: ${countRefused('127.0.0.3')}`);
      // Refused requests have no entry of their own: only processed ones are in the ledger.
      const processed = (address: string, clientIp: boolean): number =>
        entries.filter(
          (entry) =>
            entry.kind === 'reply' &&
            entry.type === 'SV' &&
            (entry.requester as { address: string }).address === address &&
            (entry.clientIp !== undefined) === clientIp,
        ).length;
      assert.equal(processed('127.0.0.1', false), tokens.length);
      assert.equal(processed('127.0.0.2', false), 3);
      assert.equal(processed('127.0.0.3', true), 8 - countRefused('127.0.0.3'));
      assert.match(daemon.stderr(), /Rate limit: refusing SV, SV_REC and ID_REC requests from 127\.0\.0\.1/);
    } finally {
      await Promise.all(clients.map((client) => client.stop()));
      await Promise.all(services.map((service) => service.close()));
      if (!stopped) await daemon.stop();
      rmSync(daemon.storeDir, { recursive: true, force: true });
    }
  });
});

describe('fairness settings on SIGHUP', () => {
  /** Resolves when the daemon's log has `pattern` after `from` characters; bounded. */
  function logLine(daemon: DaemonHandle, pattern: RegExp, from: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (!pattern.test(daemon.stderr().slice(from))) return;
        clearTimeout(timer);
        daemon.process.stderr?.off('data', check);
        resolve();
      };
      const timer = setTimeout(() => {
        daemon.process.stderr?.off('data', check);
        reject(new Error(`no ${pattern} in the log:\n${daemon.stderr()}`));
      }, 10_000);
      daemon.process.stderr?.on('data', check);
      check();
    });
  }

  test('the connection share and the ID rate limit change live', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'stopd-fair-config-'));
    const config = join(dir, 'stopd.toml');
    writeFileSync(config, 'max-connections-per-requester = 1\nrate-id = 1\nrate-id-burst = 1\n');
    const daemon = await startDaemon(['--config', config]);
    const held: Socket[] = [];
    try {
      const first = await askAndStay(daemon, '127.0.0.2');
      held.push(first.socket);
      assert.equal(first.reply, '1,2:ERROR:NO-USER');
      // Over the share of one connection: closed without a reply.
      assert.deepEqual((await exchange(daemon, '1,2\r\n', { localAddress: '127.0.0.2' })).lines, []);
      // Over the ID allowance (one, then one a minute): refused with UNKNOWN-ERROR.
      first.socket.write('1,2\r\n');
      const [refusal] = (await once(first.socket, 'data')) as [string];
      assert.equal(refusal, '1,2:ERROR:UNKNOWN-ERROR\r\n');

      writeFileSync(config, 'max-connections-per-requester = 2\nrate-id = 0\n');
      const logged = daemon.stderr().length;
      daemon.process.kill('SIGHUP');
      await logLine(daemon, /configuration reloaded/, logged);
      const second = await askAndStay(daemon, '127.0.0.2');
      held.push(second.socket);
      assert.equal(second.reply, '1,2:ERROR:NO-USER', 'a second connection is admitted, and ID is no longer limited');
    } finally {
      for (const socket of held) socket.destroy();
      await daemon.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
