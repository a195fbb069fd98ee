/**
 * Remote forwarding against a real rsyslog (issue 5, part 3): every ledger entry arrives as an
 * RFC 5424 message over TCP with octet counting (RFC 6587), intact and in order; while the
 * collector is stopped, entries wait and are delivered once it returns, none lost, none twice.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { exchange, startDaemon, type DaemonHandle } from './support/daemon.js';

const RSYSLOGD = ['/usr/sbin/rsyslogd', '/sbin/rsyslogd'].find((path) => existsSync(path));
// The ledger counts below are the requests' own entries: no history journal anchors in them.
const NO_HISTORY = ['--history', 'off'];
const SKIP = RSYSLOGD === undefined ? 'needs rsyslog (apt-get install rsyslog)' : false;

const dir = mkdtempSync(join(tmpdir(), 'stopd-syslog-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** A real rsyslogd listening with imtcp on loopback, writing each raw message as one line. */
interface Rsyslog {
  readonly port: number;
  readonly output: string;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  server.close();
  await once(server, 'close');
  return port;
}

/** Starts rsyslogd in the foreground on `port` (a free one by default), appending to `output`. */
async function startRsyslog(options: { port?: number; output?: string } = {}): Promise<Rsyslog> {
  const home = mkdtempSync(join(dir, 'rsyslog-'));
  const work = join(home, 'work');
  mkdirSync(work);
  const port = options.port ?? (await freePort());
  const output = options.output ?? join(home, 'messages');
  const config = join(home, 'rsyslog.conf');
  writeFileSync(
    config,
    [
      `global(workDirectory="${work}" maxMessageSize="64k")`,
      'module(load="imtcp")',
      // The whole message as received (without the octet-count frame), one per line.
      'template(name="raw" type="string" string="%rawmsg%\\n")',
      'ruleset(name="stopd") {',
      `  action(type="omfile" file="${output}" template="raw")`,
      '}',
      `input(type="imtcp" port="${port}" address="127.0.0.1" ruleset="stopd")`,
      '',
    ].join('\n'),
  );
  const child: ChildProcess = spawn(RSYSLOGD ?? 'rsyslogd', ['-n', '-f', config, '-i', join(home, 'rsyslogd.pid')], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    stderr += chunk;
  });
  await waitFor(`rsyslogd to listen on ${port}`, () => child.exitCode === null && canConnect(port), 15_000, () => stderr);
  return {
    port,
    output,
    async stop() {
      if (child.exitCode !== null) return;
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Whether something accepts TCP connections on 127.0.0.1:`port` (the probe sends nothing). */
function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.end();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Polls `condition` (sync or async) until it holds; fails after `timeoutMs` with `detail()`. */
async function waitFor(what: string, condition: () => boolean | Promise<boolean>, timeoutMs: number, detail?: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}${detail === undefined ? '' : `:\n${detail()}`}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** One message as rsyslog wrote it. */
interface Arrived {
  readonly seq: number;
  readonly line: string;
  readonly host: string;
}

// RFC 5424: <PRI>VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG; authpriv.notice = 85.
const MESSAGE = /^<85>1 (\S+) (\S+) stopd (\d+) ledger \[stopd@32473 seq="(\d+)"\] \uFEFF(.*)$/;

function readArrived(output: string): Arrived[] {
  if (!existsSync(output)) return [];
  const text = readFileSync(output, 'utf8');
  return text
    .split('\n')
    .filter((line) => line !== '')
    .map((raw) => {
      const match = MESSAGE.exec(raw);
      assert.ok(match, `rsyslog received an RFC 5424 message: ${JSON.stringify(raw.slice(0, 160))}`);
      const [, time = '', host = '', , seq = '', line = ''] = match;
      assert.equal(time, (JSON.parse(line) as { time: string }).time, 'TIMESTAMP is the entry time');
      return { seq: Number(seq), line, host };
    });
}

function ledgerLines(storeDir: string): string[] {
  return readFileSync(join(storeDir, 'ledger'), 'utf8')
    .split('\n')
    .filter((line) => line !== '');
}

/** Sends `count` bare RFC 1413 queries (each is answered and becomes one ledger entry). */
async function burst(daemon: DaemonHandle, count: number, first = 1): Promise<void> {
  for (let index = first; index < first + count; index += 1) {
    const started = Date.now();
    const { lines } = await exchange(daemon, `${index},${index}\r\n`, { timeoutMs: 5000 });
    assert.match(lines[0] ?? '', new RegExp(`^${index},${index}:`), 'the daemon replies as usual');
    // Forwarding must never hold a reply up, whatever the collector does.
    assert.ok(Date.now() - started < 3000, `reply ${index} took ${Date.now() - started} ms`);
  }
}

/** Asserts that rsyslog holds every ledger line exactly once, in ledger order, byte for byte. */
function assertExactlyOnce(arrived: readonly Arrived[], storeDir: string): void {
  const lines = ledgerLines(storeDir);
  assert.deepEqual(
    arrived.map((message) => message.seq),
    lines.map((line) => (JSON.parse(line) as { seq: number }).seq),
    'every entry once, in order',
  );
  assert.deepEqual(
    arrived.map((message) => message.line),
    lines,
    'each ledger line arrives intact',
  );
}

async function waitForAll(output: string, storeDir: string, daemon: DaemonHandle): Promise<Arrived[]> {
  await waitFor(
    'every ledger entry at rsyslog',
    () => new Set(readArrived(output).map((message) => message.seq)).size >= ledgerLines(storeDir).length,
    45_000,
    () => `arrived ${readArrived(output).length} of ${ledgerLines(storeDir).length}; stopd stderr:\n${daemon.stderr()}`,
  );
  return readArrived(output);
}

describe('stopd --syslog with a real rsyslog', { skip: SKIP }, () => {
  test('stopd --syslog delivers every ledger entry to rsyslog intact, in order, exactly once', async () => {
    const rsyslog = await startRsyslog();
    const daemon = await startDaemon([...NO_HISTORY, '--syslog', `127.0.0.1:${rsyslog.port}`]);
    try {
      await burst(daemon, 40);
      const arrived = await waitForAll(rsyslog.output, daemon.storeDir, daemon);
      assertExactlyOnce(arrived, daemon.storeDir);
      assert.equal(arrived.length, 40);
      assert.ok(arrived.every((message) => message.host !== '-' && message.host !== ''), 'HOSTNAME is set');
    } finally {
      await daemon.stop();
      await rsyslog.stop();
    }
  });

  test('stopd --syslog queues while rsyslog is stopped mid-burst and delivers everything once after it restarts', async () => {
    let rsyslog = await startRsyslog();
    const { port, output } = rsyslog;
    const daemon = await startDaemon([...NO_HISTORY, '--syslog', `127.0.0.1:${port}`]);
    try {
      await burst(daemon, 20, 1);
      await waitFor('the first 20 entries', () => readArrived(output).length >= 20, 20_000);
      await rsyslog.stop();
      // The collector is gone: the daemon answers as usual and the entries wait.
      await burst(daemon, 25, 21);
      assert.equal(readArrived(output).length, 20, 'nothing arrives while rsyslog is stopped');
      rsyslog = await startRsyslog({ port, output });
      await burst(daemon, 15, 46);
      const arrived = await waitForAll(output, daemon.storeDir, daemon);
      assertExactlyOnce(arrived, daemon.storeDir);
      assert.equal(arrived.length, 60);
      assert.match(daemon.stderr(), /syslog collector 127\.0\.0\.1:\d+ closed the connection/);
    } finally {
      await daemon.stop();
      await rsyslog.stop();
    }
  });

  test('stopd --syslog sends entries written while rsyslog was down after a daemon restart, from forward-state', async () => {
    const storeDir = mkdtempSync(join(dir, 'store-'));
    const port = await freePort();
    const output = join(dir, `restart-${port}.log`);
    let daemon = await startDaemon([...NO_HISTORY, '--syslog', `127.0.0.1:${port}`], { storeDir });
    let rsyslog: Rsyslog | undefined;
    try {
      await burst(daemon, 15);
      assert.equal(await daemon.stop(), 0, 'stopd stops promptly with the collector unreachable');
      rsyslog = await startRsyslog({ port, output });
      daemon = await startDaemon([...NO_HISTORY, '--syslog', `127.0.0.1:${port}`], { storeDir });
      await burst(daemon, 10, 16);
      const arrived = await waitForAll(output, storeDir, daemon);
      assertExactlyOnce(arrived, storeDir);
      assert.equal(arrived.length, 25);
      await daemon.stop();
      const state = JSON.parse(readFileSync(join(storeDir, 'forward-state'), 'utf8')) as { seq: number };
      assert.equal(state.seq, 25, 'the delivered seq is saved on a clean stop');
    } finally {
      await daemon.stop();
      await rsyslog?.stop();
    }
  });

  test('stopd --syslog loses nothing when rsyslog is stopped while entries stream, and repeats only with the same seq', async (t) => {
    let rsyslog = await startRsyslog();
    const { port, output } = rsyslog;
    const daemon = await startDaemon([...NO_HISTORY, '--syslog', `127.0.0.1:${port}`]);
    try {
      // Queries keep coming while rsyslog shuts down: writes race its close, which then resets.
      const streaming = burst(daemon, 60, 1);
      await waitFor('the stream to reach rsyslog', () => readArrived(output).length >= 10, 20_000);
      await rsyslog.stop();
      await streaming;
      rsyslog = await startRsyslog({ port, output });
      const arrived = await waitForAll(output, daemon.storeDir, daemon);
      const lines = ledgerLines(daemon.storeDir);
      const firstOf = new Map<number, string>();
      for (const message of arrived) {
        const seen = firstOf.get(message.seq);
        if (seen === undefined) firstOf.set(message.seq, message.line);
        else assert.equal(message.line, seen, `a repeat of seq ${message.seq} is the same entry`);
      }
      assert.deepEqual(
        [...firstOf.values()],
        lines,
        'every entry arrives, first occurrences in ledger order',
      );
      assert.ok(arrived.length - lines.length <= 60, 'repeats are bounded by what was in flight');
      t.diagnostic(`${arrived.length - lines.length} entries arrived twice around the reset`);
    } finally {
      await daemon.stop();
      await rsyslog.stop();
    }
  });
});
