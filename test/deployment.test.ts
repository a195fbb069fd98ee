/**
 * Deployment: the configuration file, SIGHUP reload, systemd socket activation, inetd mode,
 * and the shipped unit files and example configuration.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { exchange, startDaemon, STOPCTL, STOPD } from './support/daemon.js';

const run = promisify(execFile);
const ROOT = resolve(STOPD, '../../../..');
const dir = mkdtempSync(join(tmpdir(), 'stopd-deploy-'));
after(() => rmSync(dir, { recursive: true, force: true }));

let files = 0;
function configFile(text: string): string {
  files += 1;
  const path = join(dir, `stopd-${files}.toml`);
  writeFileSync(path, text);
  return path;
}

async function checkConfig(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [STOPD, ...args, '--check-config']);
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failure = error as { code: number; stdout: string; stderr: string };
    return { code: failure.code, stdout: failure.stdout, stderr: failure.stderr };
  }
}

/** A free loopback port (closed again: the activation tools bind it themselves). */
async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  server.close();
  await once(server, 'close');
  if (address === null || typeof address !== 'object') throw new Error('no port');
  return address.port;
}

/** Retries `exchange` until the port answers (the activation tool binds it after it starts), bounded. */
async function exchangeWhenUp(port: number, payload: string, expectLines = 1): Promise<string[]> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      return (await exchange({ host: '127.0.0.1', port }, payload, { expectLines, timeoutMs: 10_000 })).lines;
    } catch (error) {
      if (Date.now() > deadline || (error as NodeJS.ErrnoException).code !== 'ECONNREFUSED') throw error;
      await new Promise((resolvePromise) => setTimeout(resolvePromise, 50));
    }
  }
}

async function verifyStore(storeDir: string): Promise<void> {
  const { stdout } = await run(process.execPath, [STOPCTL, 'verify', '--store', storeDir, '--json']);
  assert.equal((JSON.parse(stdout) as { clean: boolean }).clean, true, stdout);
}

describe('configuration file', () => {
  test('the example configuration in deploy/ is valid', async () => {
    const result = await checkConfig(['--config', join(ROOT, 'deploy/stopd.toml')]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /configuration is valid/);
  });

  test('every setting of stopd --help is accepted in the file', async () => {
    const { stdout } = await run(process.execPath, [STOPD, '--help']);
    const names = [...stdout.matchAll(/^ {2}--([a-z-]+)/gm)].map((m) => m[1] ?? '');
    const settings = names.filter((name) => !['config', 'check-config', 'inetd', 'log-file', 'version', 'help'].includes(name));
    assert.ok(settings.length >= 20, `found ${settings.join(', ')}`);
    const example = readFileSync(join(ROOT, 'deploy/stopd.toml'), 'utf8');
    for (const name of settings) assert.match(example, new RegExp(`^#? ?${name} =`, 'm'), `deploy/stopd.toml documents ${name}`);
  });

  test('errors name the file, the line and the key, and say what is expected', async () => {
    const cases: [string, RegExp][] = [
      ['# limits\nmax-lookups = 0\n', /stopd-\d+\.toml:2: max-lookups must be a whole number from 1 to 10000, not 0/],
      ['maxlookups = 3\n', /:1: unknown setting "maxlookups"; did you mean max-lookups\?/],
      ['random-errors = "yes"\n', /:1: random-errors must be true or false, not "yes"/],
      ['listen = ["nowhere"]\n', /:1: listen must be ADDR:PORT/],
      ['token-hash = "md5"\n', /:1: token-hash must be sha256 or sha1, not "md5"/],
      ['save = ["processes", "secrets"]\n', /:1: save .*secrets/],
      ['listen = [\n', /:\d+: .*the file must be TOML/],
    ];
    for (const [text, pattern] of cases) {
      const result = await checkConfig(['--config', configFile(text)]);
      assert.equal(result.code, 64, text);
      assert.match(result.stderr, pattern);
      assert.equal(result.stderr.trim().split('\n').length, 1, 'one sentence');
    }
    const missing = await checkConfig(['--config', join(dir, 'absent.toml')]);
    assert.equal(missing.code, 64);
    assert.match(missing.stderr, /Cannot read configuration file .*absent\.toml/);
  });

  test('the daemon follows the file, and flags override it', async () => {
    const path = configFile('listen = ["127.0.0.1:1"]\nrandom-errors = true\n');
    const daemon = await startDaemon(['--config', path]);
    try {
      const { lines } = await exchange(daemon, '1,2\r\n');
      assert.match(lines[0] ?? '', /^1,2:USERID:OTHER:[0-9a-f]{64}$/, 'random-errors from the file');
      assert.notEqual(daemon.port, 1, '--listen on the command line wins');
    } finally {
      await daemon.stop();
    }
  });
});

describe('SIGHUP reload', () => {
  test('applies a valid file without dropping connections or entries, and keeps the old one when invalid', async () => {
    const path = configFile('unknown-error = false\n');
    const daemon = await startDaemon(['--config', path], { keepStore: true });
    const socket = connect({ host: daemon.host, port: daemon.port });
    socket.setEncoding('utf8');
    const received: string[] = [];
    let buffer = '';
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      const lines = buffer.split('\r\n');
      buffer = lines.pop() ?? '';
      received.push(...lines);
    });
    const ask = async (line: string): Promise<string> => {
      const before = received.length;
      socket.write(`${line}\r\n`);
      const deadline = Date.now() + 5000;
      while (received.length === before) {
        if (Date.now() > deadline) throw new Error(`no reply to ${line}`);
        await new Promise((resolvePromise) => setTimeout(resolvePromise, 10));
      }
      return received[before] ?? '';
    };
    const waitForLog = async (pattern: RegExp, count: number): Promise<void> => {
      const deadline = Date.now() + 5000;
      while ((daemon.stderr().match(new RegExp(pattern, 'g')) ?? []).length < count) {
        if (Date.now() > deadline) throw new Error(`no ${pattern} in the log:\n${daemon.stderr()}`);
        await new Promise((resolvePromise) => setTimeout(resolvePromise, 10));
      }
    };
    try {
      await once(socket, 'connect');
      assert.equal(await ask('0,5'), '0,5:ERROR:INVALID-PORT');

      writeFileSync(path, 'unknown-error = true\nmax-lookups = 3\n');
      daemon.process.kill('SIGHUP');
      await waitForLog(/configuration reloaded/, 1);
      assert.match(daemon.stderr(), /need a restart were kept as they are: max-lookups/);
      assert.equal(await ask('0,5'), '0,5:ERROR:UNKNOWN-ERROR', 'the same connection, the new policy');

      writeFileSync(path, 'unknown-error = maybe\n');
      daemon.process.kill('SIGHUP');
      await waitForLog(/Configuration not reloaded, the running one stays/, 1);
      assert.equal(await ask('0,5'), '0,5:ERROR:UNKNOWN-ERROR', 'the running configuration stayed');
      assert.equal(socket.destroyed, false);
    } finally {
      socket.destroy();
      await daemon.stop();
    }
    await verifyStore(daemon.storeDir);
    const entries = readFileSync(join(daemon.storeDir, 'ledger'), 'utf8').trim().split('\n').map((line) => JSON.parse(line) as { kind: string });
    assert.equal(entries.filter((e) => e.kind === 'reply').length, 3, 'every request is in the ledger');
    rmSync(daemon.storeDir, { recursive: true, force: true });
  });
});

describe('systemd and inetd', () => {
  test('socket activation: stopd serves the listening socket systemd passes (LISTEN_FDS)', async () => {
    const port = await freePort();
    const store = mkdtempSync(join(dir, 'store-'));
    const child = spawn('systemd-socket-activate', ['-l', `127.0.0.1:${port}`, process.execPath, STOPD, '--store', store], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    try {
      const lines = await exchangeWhenUp(port, '1,2\r\n0,5\r\n', 2);
      assert.deepEqual(lines, ['1,2:ERROR:NO-USER', '0,5:ERROR:INVALID-PORT']);
      assert.match(stderr, new RegExp(`listening on 127\\.0\\.0\\.1:${port}`), 'the inherited socket');
    } finally {
      child.kill('SIGTERM');
      await once(child, 'exit');
    }
    await verifyStore(store);
  });

  test('inetd mode: one process per connection, taking turns on the store', async () => {
    const port = await freePort();
    const store = mkdtempSync(join(dir, 'store-'));
    const logFile = join(dir, 'inetd.log');
    const child = spawn(
      'systemd-socket-activate',
      ['--inetd', '-a', '-l', `127.0.0.1:${port}`, process.execPath, STOPD, '--inetd', '--store', store, '--log-file', logFile],
      { stdio: 'ignore' },
    );
    try {
      assert.deepEqual(await exchangeWhenUp(port, '1,2\r\n'), ['1,2:ERROR:NO-USER']);
      const together = await Promise.all(
        [1, 2, 3].map((n) => exchange({ host: '127.0.0.1', port }, `${n},9\r\n`, { timeoutMs: 20_000 })),
      );
      assert.deepEqual(
        together.map((r) => r.lines[0]),
        ['1,9:ERROR:NO-USER', '2,9:ERROR:NO-USER', '3,9:ERROR:NO-USER'],
      );
    } finally {
      child.kill('SIGTERM');
      await once(child, 'exit');
    }
    await verifyStore(store);
    const ledger = readFileSync(join(store, 'ledger'), 'utf8').trim().split('\n');
    assert.equal(ledger.length, 4);
  });

  test('the unit files pass systemd-analyze verify', async () => {
    const units = mkdtempSync(join(dir, 'units-'));
    const service = readFileSync(join(ROOT, 'deploy/stopd.service'), 'utf8').replace('/usr/bin/stopd', `${process.execPath} ${STOPD}`);
    writeFileSync(join(units, 'stopd.service'), service);
    writeFileSync(join(units, 'stopd.socket'), readFileSync(join(ROOT, 'deploy/stopd.socket')));
    const { stderr } = await run('systemd-analyze', ['verify', '--man=no', join(units, 'stopd.socket'), join(units, 'stopd.service')]);
    assert.equal(stderr.trim(), '', 'no warnings');
    assert.match(service, /AmbientCapabilities=CAP_SYS_PTRACE CAP_DAC_READ_SEARCH CAP_BPF CAP_PERFMON$/m);
    assert.match(service, /^SystemCallFilter=bpf$/m);
  });
});
