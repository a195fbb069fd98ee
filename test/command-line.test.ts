/**
 * Bad input at start and on the command line, tried as a new user would (issue 13, item 7):
 * every mistake gets one sentence on stderr and the documented exit status (README "Exit
 * codes"), and a start that fails leaves nothing behind.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { exchange, startDaemon, STOPCTL, STOPD, type DaemonHandle } from './support/daemon.js';

const work = mkdtempSync(join(tmpdir(), 'stopd-cli-'));
after(() => rmSync(work, { recursive: true, force: true }));

const UNKNOWN = 'ab'.repeat(32);

/** Runs one of the programs; resolves with its exit status and output (bounded in time). */
function runProgram(program: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [program, ...args], { timeout: 30_000 }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : -1, stdout, stderr });
    });
  });
}

/** One line on stderr, no stack trace. */
function assertOneSentence(stderr: string, pattern: RegExp): void {
  assert.match(stderr, pattern);
  assert.equal(stderr.trim().split('\n').length, 1, `more than one line:\n${stderr}`);
  assert.doesNotMatch(stderr, /\n\s+at |unexpected failure/, 'a stack trace');
}

describe('stopd refuses a listen address it cannot bind', () => {
  let holder: Server;
  let port: number;

  before(async () => {
    holder = createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    const address = holder.address();
    assert.ok(address !== null && typeof address === 'object');
    port = address.port;
  });
  after(() => new Promise<void>((resolve) => holder.close(() => resolve())));

  test('an address in use: exit 1, one sentence, and the new store directory is gone', async () => {
    const store = join(work, 'in-use', 'store');
    const result = await runProgram(STOPD, ['--listen', `127.0.0.1:${port}`, '--store', store]);
    assert.equal(result.code, 1, result.stderr);
    assertOneSentence(result.stderr, new RegExp(`^stopd: Cannot listen on 127\\.0\\.0\\.1:${port}: the address is already in use`));
    assert.equal(existsSync(join(work, 'in-use')), false, 'the directories the start made are removed');
  });

  test('an address of no interface of this host: exit 1, one sentence, and the new store directory is gone', async () => {
    // 192.0.2.1 (RFC 5737 documentation range) is assigned to no interface: binding fails with
    // EADDRNOTAVAIL before any packet could be sent.
    const store = join(work, 'not-ours');
    const result = await runProgram(STOPD, ['--listen', '192.0.2.1:0', '--store', store]);
    assert.equal(result.code, 1, result.stderr);
    assertOneSentence(result.stderr, /^stopd: Cannot listen on 192\.0\.2\.1:0: no interface of this host has that address/);
    assert.equal(existsSync(store), false);
  });

  test('a failed start leaves an existing store as it was', async () => {
    const daemon = await startDaemon();
    try {
      const { lines } = await exchange(daemon, '1,2\r\n');
      assert.equal(lines[0], '1,2:ERROR:NO-USER');
      const result = await runProgram(STOPD, ['--listen', `127.0.0.1:${port}`, '--store', daemon.storeDir]);
      assert.equal(result.code, 1);
      assert.equal(existsSync(join(daemon.storeDir, 'ledger')), true, 'the store of the running daemon stays');
    } finally {
      await daemon.stop();
    }
  });
});

describe('stopd refuses a bad configuration file in one sentence (exit 64)', () => {
  const cases: [string, string, RegExp][] = [
    ['unterminated string', 'store = "/var/lib/stopd\nmax-lookups = 4\n', /:1: a quoted value is not closed: end it with its quote on the same line;/],
    ['whole number written as a string', 'idle-timeout = "60"\n', /:1: idle-timeout must be a whole number from 1 to 86400 written without quotes, not "60"$/],
  ];
  for (const [name, text, pattern] of cases) {
    test(name, async () => {
      const file = join(work, `${name.replaceAll(' ', '-')}.toml`);
      writeFileSync(file, text);
      const result = await runProgram(STOPD, ['--check-config', '--config', file]);
      assert.equal(result.code, 64, result.stderr);
      assertOneSentence(result.stderr.trimEnd(), pattern);
      assert.ok(result.stderr.startsWith(`stopd: ${file}:`), 'names the file');
    });
  }
});

describe('stopctl names the store it read', () => {
  let daemon: DaemonHandle;
  before(async () => {
    daemon = await startDaemon();
    await exchange(daemon, '1,2\r\n'); // one ledger entry
  });
  after(() => daemon.stop());

  test('redeem of an unknown token says which store it looked in, and exits 2', async () => {
    const result = await runProgram(STOPCTL, ['redeem', UNKNOWN, '--store', daemon.storeDir]);
    assert.equal(result.code, 2, result.stderr);
    assert.match(result.stdout, new RegExp(`^Unknown {5}the token is not in the ledger of ${daemon.storeDir};`, 'm'));
    assert.doesNotMatch(result.stdout, /this store/);
  });

  test('trace of an unknown token says which store it looked in, claims nothing about upstream hosts, and exits 2', async () => {
    const result = await runProgram(STOPCTL, ['trace', UNKNOWN, '--store', daemon.storeDir]);
    assert.equal(result.code, 2, result.stderr);
    assert.match(result.stdout, new RegExp(`^Unknown {5}the token is not in the ledger of ${daemon.storeDir};`, 'm'));
    assert.doesNotMatch(result.stdout, /Upstream|chain starts here/);
  });

  test('redeem, trace, verify and prune all exit 1 on a missing store, naming it in one sentence', async () => {
    const missing = join(work, 'no-such-store');
    for (const args of [['redeem', UNKNOWN], ['trace', UNKNOWN], ['verify'], ['prune', '--older-than', '1']]) {
      const result = await runProgram(STOPCTL, [...args, '--store', missing]);
      assert.equal(result.code, 1, `${args[0]}: ${result.stderr}`);
      assertOneSentence(result.stderr, new RegExp(`^stopctl: Cannot read the store ${missing}: the directory does not exist; give the daemon's store directory with --store$`, 'm'));
      assert.equal(existsSync(missing), false, `${args[0]} made the store`);
    }
  });
});

describe('stopctl COMMAND --help', () => {
  const commands = ['query', 'redeem', 'trace', 'verify', 'keygen', 'prune'];
  for (const command of commands) {
    test(`stopctl ${command} --help prints that command's help only`, async () => {
      const result = await runProgram(STOPCTL, [command, '--help']);
      assert.equal(result.code, 0, result.stderr);
      assert.ok(result.stdout.startsWith(`Usage: stopctl ${command} `), result.stdout);
      assert.match(result.stdout, /Exit status/);
      for (const other of commands.filter((name) => name !== command)) {
        assert.doesNotMatch(result.stdout, new RegExp(`^ {2}${other} `, 'm'), `${command} --help shows ${other}`);
      }
    });
  }
});
