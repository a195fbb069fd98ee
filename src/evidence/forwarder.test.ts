import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, test } from 'node:test';
import { createServer as createTlsServer } from 'node:tls';
import { Ledger, readLedger } from './ledger.js';
import {
  SyslogForwarder,
  formatSyslogMessage,
  frameOctetCounted,
  parseSyslogTarget,
  type SyslogForwarderOptions,
} from './forwarder.js';

const dir = mkdtempSync(join(tmpdir(), 'stopd-forwarder-'));
after(() => rmSync(dir, { recursive: true, force: true }));
/** A fresh directory's ledger path (each has its own forward-state beside it). */
function newStore(): string {
  return join(mkdtempSync(join(dir, 'store-')), 'ledger');
}

/** One message received by the fake collector. */
interface Received {
  readonly seq: number;
  readonly line: string;
  readonly connection: number;
}

const MESSAGE = /^<85>1 (\S+) (\S+) stopd (\S+) ledger \[stopd@32473 seq="(\d+)"\] \uFEFF(.*)$/s;

/** A syslog collector in this process: RFC 6587 octet-counted frames over TCP (or TLS). */
class Collector {
  readonly received: Received[] = [];
  readonly sockets = new Set<Socket>();
  #connections = 0;
  #server: Server;
  port = 0;

  private constructor(server: Server) {
    this.#server = server;
  }

  static async start(port = 0, tls?: { key: string; cert: string }): Promise<Collector> {
    const server = tls === undefined ? createServer() : createTlsServer(tls);
    const collector = new Collector(server);
    server.on(tls === undefined ? 'connection' : 'secureConnection', (socket: Socket) => collector.accept(socket));
    server.listen(port, '127.0.0.1');
    await once(server, 'listening');
    collector.port = (server.address() as AddressInfo).port;
    return collector;
  }

  accept(socket: Socket): void {
    this.#connections += 1;
    const connection = this.#connections;
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => undefined);
    let buffer = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      for (;;) {
        const space = buffer.indexOf(0x20);
        if (space < 0) return;
        const length = Number(buffer.toString('ascii', 0, space));
        assert.ok(Number.isSafeInteger(length) && length > 0, `frame starts with an octet count: ${buffer.toString('utf8', 0, 40)}`);
        if (buffer.length < space + 1 + length) return;
        const text = buffer.toString('utf8', space + 1, space + 1 + length);
        buffer = buffer.subarray(space + 1 + length);
        const match = MESSAGE.exec(text);
        assert.ok(match, `RFC 5424 message: ${JSON.stringify(text.slice(0, 120))}`);
        this.received.push({ seq: Number(match[4]), line: match[5] ?? '', connection });
      }
    });
  }

  get connections(): number {
    return this.#connections;
  }

  /** Stops listening and closes every connection with a FIN, as a collector shutting down cleanly. */
  async closeGracefully(): Promise<void> {
    this.#server.close();
    for (const socket of this.sockets) socket.end();
    await once(this.#server, 'close');
  }

  /** Stops listening and resets every connection, as a collector that crashed. */
  async reset(): Promise<void> {
    this.#server.close();
    for (const socket of this.sockets) socket.resetAndDestroy();
    await once(this.#server, 'close');
  }
}

/** Polls `condition` until it holds, failing after `timeoutMs`. */
async function waitFor(what: string, condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function ledgerLines(path: string): string[] {
  return readFileSync(path, 'utf8').split('\n').filter((line) => line !== '');
}

const FAST: Partial<SyslogForwarderOptions> = { minBackoffMs: 20, maxBackoffMs: 100, peerCloseGraceMs: 100, closeTimeoutMs: 2000 };

async function openForwarded(
  path: string,
  options: Partial<SyslogForwarderOptions> & { port: number },
): Promise<{ ledger: Ledger; forwarder: SyslogForwarder; logs: string[] }> {
  const logs: string[] = [];
  const forwarder = new SyslogForwarder({
    ...FAST,
    ...options,
    target: { host: '127.0.0.1', port: options.port },
    ledgerPath: path,
    log: { info: (message) => logs.push(`info: ${message}`), warn: (message) => logs.push(`warn: ${message}`) },
  });
  const ledger = await Ledger.open(path, { onDurable: (lines) => forwarder.push(lines) });
  forwarder.start();
  return { ledger, forwarder, logs };
}

async function appendMany(ledger: Ledger, count: number, from = 0): Promise<void> {
  for (let index = from; index < from + count; index += 1) await ledger.append({ kind: 'test', index, text: 'évidence ✓' });
}

/** Asserts that `received` holds every ledger line exactly once, in ledger order. */
function assertExactlyOnce(received: readonly Received[], path: string): void {
  const lines = ledgerLines(path);
  assert.deepEqual(
    received.map((message) => message.seq),
    lines.map((_, index) => index + 1),
  );
  assert.deepEqual(
    received.map((message) => message.line),
    lines,
  );
}

test('formatSyslogMessage writes an RFC 5424 message with the entry time, seq and a BOM before the line', () => {
  const message = formatSyslogMessage(
    { seq: 7, time: '2024-05-01T10:20:30.123Z', line: '{"seq":7,"kind":"reply"}' },
    { hostname: 'bastion', procId: '4242' },
  );
  assert.deepEqual(
    message,
    Buffer.concat([
      Buffer.from('<85>1 2024-05-01T10:20:30.123Z bastion stopd 4242 ledger [stopd@32473 seq="7"] '),
      Buffer.from([0xef, 0xbb, 0xbf]),
      Buffer.from('{"seq":7,"kind":"reply"}'),
    ]),
  );
});

test('formatSyslogMessage puts a nil timestamp for a malformed time and cleans header fields', () => {
  const message = formatSyslogMessage({ seq: 1, time: 'yesterday', line: '{}' }, { hostname: 'my host', procId: '' }).toString('utf8');
  assert.ok(message.startsWith('<85>1 - my_host stopd - ledger [stopd@32473 seq="1"] \uFEFF{}'), message);
});

test('frameOctetCounted counts octets, not characters', () => {
  const framed = frameOctetCounted(Buffer.from('é✓', 'utf8'));
  assert.equal(framed.toString('utf8'), '5 é✓');
});

test('parseSyslogTarget accepts host names, IPv4 and bracketed IPv6, and rejects port 0', () => {
  assert.deepEqual(parseSyslogTarget('logs.example.net:6514'), { host: 'logs.example.net', port: 6514 });
  assert.deepEqual(parseSyslogTarget('192.0.2.1:514'), { host: '192.0.2.1', port: 514 });
  assert.deepEqual(parseSyslogTarget('[2001:db8::1]:514'), { host: '2001:db8::1', port: 514 });
  for (const bad of ['logs:0', 'logs', 'logs:70000', '2001:db8::1:514', '']) {
    assert.throws(() => parseSyslogTarget(bad), { code: 'ERR_USAGE' }, bad);
  }
});

test('SyslogForwarder sends entries written before it started, then new ones, in order, exactly once', async () => {
  const path = newStore();
  const before = await Ledger.open(path);
  await appendMany(before, 5);
  await before.close();
  const collector = await Collector.start();
  const { ledger, forwarder } = await openForwarded(path, { port: collector.port });
  await appendMany(ledger, 20, 5);
  await waitFor('25 messages', () => collector.received.length >= 25);
  await ledger.close();
  await forwarder.close();
  assertExactlyOnce(collector.received, path);
  assert.equal(forwarder.status().deliveredSeq, 25, 'a clean close proves delivery of everything');
  assert.equal((JSON.parse(readFileSync(join(dirname(path), 'forward-state'), 'utf8')) as { seq: number }).seq, 25);
  await collector.closeGracefully();
});

test('SyslogForwarder resumes after a restart from the delivered seq in forward-state', async () => {
  const path = newStore();
  const collector = await Collector.start();
  const first = await openForwarded(path, { port: collector.port });
  await appendMany(first.ledger, 10);
  await waitFor('10 messages', () => collector.received.length >= 10);
  await first.ledger.close();
  await first.forwarder.close();
  // Entries written while no forwarder runs: the ledger is the queue.
  const offline = await Ledger.open(path);
  await appendMany(offline, 4, 10);
  await offline.close();
  const second = await openForwarded(path, { port: collector.port });
  await appendMany(second.ledger, 3, 14);
  await waitFor('17 messages', () => collector.received.length >= 17);
  await second.ledger.close();
  await second.forwarder.close();
  assertExactlyOnce(collector.received, path);
  assert.equal(collector.connections, 2);
  await collector.closeGracefully();
});

test('SyslogForwarder queues while the collector is down and delivers everything once after it returns', async () => {
  const path = newStore();
  let collector = await Collector.start();
  const port = collector.port;
  const { ledger, forwarder, logs } = await openForwarded(path, { port });
  await appendMany(ledger, 10);
  await waitFor('10 messages', () => collector.received.length >= 10);
  const received = [...collector.received];
  await collector.closeGracefully();
  await waitFor('the forwarder to notice', () => !forwarder.status().connected);
  await appendMany(ledger, 10, 10);
  assert.equal(forwarder.status().ledgerSeq, 20);
  collector = await Collector.start(port);
  await appendMany(ledger, 5, 20);
  await waitFor('the rest', () => collector.received.length >= 15);
  await ledger.close();
  await forwarder.close();
  assertExactlyOnce([...received, ...collector.received], path);
  assert.ok(
    logs.some((line) => line.includes('closed the connection')),
    logs.join('\n'),
  );
  await collector.closeGracefully();
});

test('SyslogForwarder reads entries back from the ledger when they overflow the memory bound', async () => {
  const path = newStore();
  const probe = await Collector.start();
  const port = probe.port;
  await probe.closeGracefully();
  // No collector yet: 200 entries of ~200 bytes against a 1 KiB memory bound.
  const { ledger, forwarder } = await openForwarded(path, { port, maxQueuedBytes: 1024 });
  await appendMany(ledger, 200);
  const collector = await Collector.start(port);
  await appendMany(ledger, 50, 200);
  await waitFor('250 messages', () => collector.received.length >= 250);
  await ledger.close();
  await forwarder.close();
  assertExactlyOnce(collector.received, path);
  await collector.closeGracefully();
});

test('SyslogForwarder sends again what was written shortly before a reset, and not what had settled', async () => {
  const path = newStore();
  let collector = await Collector.start();
  const port = collector.port;
  // A long settle time: nothing written is known delivered when the reset comes.
  const { ledger, forwarder } = await openForwarded(path, { port, settleMs: 60_000 });
  await appendMany(ledger, 8);
  await waitFor('8 messages', () => collector.received.length >= 8);
  await collector.reset();
  collector = await Collector.start(port);
  await waitFor('the resend', () => collector.received.length >= 8);
  await ledger.close();
  await forwarder.close();
  // At-least-once: the unsettled entries come again, with the same seq and bytes.
  assertExactlyOnce(collector.received, path);
  await collector.closeGracefully();

  const settledPath = newStore();
  collector = await Collector.start();
  const settled = await openForwarded(settledPath, { port: collector.port, settleMs: 50 });
  await appendMany(settled.ledger, 8);
  await waitFor('8 delivered', () => settled.forwarder.status().deliveredSeq === 8);
  const before = [...collector.received];
  await collector.reset();
  collector = await Collector.start(collector.port);
  await appendMany(settled.ledger, 2, 8);
  await waitFor('2 more', () => collector.received.length >= 2);
  await settled.ledger.close();
  await settled.forwarder.close();
  assertExactlyOnce([...before, ...collector.received], settledPath);
  await collector.closeGracefully();
});

test('SyslogForwarder connects over TLS with a given CA and never sends to an untrusted server', async () => {
  const keyPath = join(dir, 'key.pem');
  const certPath = join(dir, 'cert.pem');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', keyPath, '-out', certPath, '-days', '1', '-subj', '/CN=collector.test', '-addext', 'subjectAltName=IP:127.0.0.1',
  ], { stdio: 'ignore' });
  const tls = { key: readFileSync(keyPath, 'utf8'), cert: readFileSync(certPath, 'utf8') };
  const collector = await Collector.start(0, tls);

  const untrustedPath = newStore();
  const untrusted = await openForwarded(untrustedPath, { port: collector.port, tls: {} });
  await appendMany(untrusted.ledger, 2);
  await waitFor('a refused handshake', () => untrusted.logs.some((line) => line.includes('Cannot forward')));
  await untrusted.ledger.close();
  await untrusted.forwarder.close();
  assert.equal(collector.received.length, 0, 'nothing is sent to a server whose certificate is not trusted');

  const path = newStore();
  const { ledger, forwarder } = await openForwarded(path, { port: collector.port, tls: { ca: tls.cert } });
  await appendMany(ledger, 6);
  await waitFor('6 messages', () => collector.received.length >= 6);
  await ledger.close();
  await forwarder.close();
  assertExactlyOnce(collector.received, path);
  assert.equal(forwarder.status().deliveredSeq, 6);
  await collector.closeGracefully();
});

test('SyslogForwarder reads across rotated segments, and forwards the segment-dropped entries of retention', async () => {
  const path = newStore();
  const probe = await Collector.start();
  const port = probe.port;
  await probe.closeGracefully();
  const logs: string[] = [];
  const forwarder = new SyslogForwarder({
    ...FAST,
    target: { host: '127.0.0.1', port },
    ledgerPath: path,
    maxQueuedBytes: 1024,
    log: { info: (message) => logs.push(message), warn: (message) => logs.push(message) },
  });
  // Small segments and no collector yet: the backlog spills to the files and spans rotations.
  const ledger = await Ledger.open(path, { onDurable: (lines) => forwarder.push(lines), retention: { segmentBytes: 2048 } });
  forwarder.start();
  await appendMany(ledger, 60);
  const collector = await Collector.start(port);
  await appendMany(ledger, 20, 60);
  const expected = forwarder.status().ledgerSeq;
  await waitFor(`${expected} messages`, () => collector.received.length >= expected);
  await ledger.close();
  await forwarder.close();
  const lines: string[] = [];
  for await (const line of readLedger(path)) lines.push(line.text);
  assert.deepEqual(collector.received.map((message) => message.line), lines, 'every line of every segment, once, in order');
  assert.ok(lines.some((line) => line.includes('"kind":"segment-start"')));
  await collector.closeGracefully();

  // Retention: the entries noting the drops are forwarded like any other.
  const second = await Collector.start();
  const again = await openForwardedWithRetention(path, second.port);
  await appendMany(again.ledger, 40, 80);
  await again.ledger.close();
  await again.forwarder.close();
  const drops = second.received.filter((message) => message.line.includes('"kind":"segment-dropped"'));
  assert.ok(drops.length > 0, 'segment-dropped entries reached the collector');
  assert.match(drops[0]?.line ?? '', /"lastHash":"[0-9a-f]{64}"/);
  await second.closeGracefully();
});

async function openForwardedWithRetention(path: string, port: number): Promise<{ ledger: Ledger; forwarder: SyslogForwarder }> {
  const forwarder = new SyslogForwarder({ ...FAST, target: { host: '127.0.0.1', port }, ledgerPath: path });
  const ledger = await Ledger.open(path, { onDurable: (lines) => forwarder.push(lines), retention: { segmentBytes: 2048, maxBytes: 6144 } });
  forwarder.start();
  return { ledger, forwarder };
}
