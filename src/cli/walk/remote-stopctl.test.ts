import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { UsageError } from '../../errors.js';
import { createStoreReader, splitCommandLine } from './remote-stopctl.js';
import { HostUnreachableError } from './walk-chain.js';
import { createWalkProgress, formatWalkProgress } from './walk-progress.js';

describe('remote stopctl', () => {
  test('splitCommandLine splits words with quotes and backslashes as a shell does', () => {
    assert.deepEqual(splitCommandLine(`ssh -i 'my key' -o "User=a b" x\\ y ""`), ['ssh', '-i', 'my key', '-o', 'User=a b', 'x y', '']);
    assert.throws(() => splitCommandLine(`ssh -i 'key`), UsageError);
    assert.throws(() => splitCommandLine('   '), UsageError);
  });

  test('createStoreReader runs the ssh command with the host after -- and the remote stopctl line', async () => {
    // `echo` stands in for ssh: what it prints is the argument vector ssh would get.
    const reader = createStoreReader({ ssh: ['echo', '-o', 'BatchMode=yes'], remoteStopctl: 'sudo stopctl', localHosts: new Set(['h0']), localStopctl: ['echo', 'LOCAL'], localStore: '/s', timeoutMs: 5000 });
    const signal = new AbortController().signal;
    const remote = await reader.run('192.0.2.1', ['redeem', 'a'.repeat(64), '--json'], { signal });
    assert.equal(remote.stdout, `-o BatchMode=yes -- 192.0.2.1 sudo stopctl redeem ${'a'.repeat(64)} --json\n`);
    const local = await reader.run('H0', ['verify', '--json'], { signal });
    assert.equal(local.stdout, 'LOCAL verify --json --store /s\n');
    assert.equal(reader.access('h0'), 'local');
  });

  test('createStoreReader turns a command that cannot start or hangs into an unreachable host', async () => {
    const signal = new AbortController().signal;
    const missing = createStoreReader({ ssh: ['/nonexistent/ssh'], remoteStopctl: 'stopctl', localHosts: new Set(), localStopctl: [], localStore: '/s', timeoutMs: 5000 });
    await assert.rejects(missing.run('192.0.2.1', ['verify'], { signal }), HostUnreachableError);
    // A command that sleeps stands in for a host that never answers.
    const hanging = createStoreReader({ ssh: ['sh', '-c', 'exec sleep 5', 'sh'], remoteStopctl: 'x', localHosts: new Set(), localStopctl: [], localStore: '/s', timeoutMs: 200 });
    await assert.rejects(hanging.run('192.0.2.1', ['verify'], { signal }), /took longer than 0\.2 s/);
  });

  test('createWalkProgress writes only to a terminal and clears its line', () => {
    const written: string[] = [];
    const progress = { reached: 2, verified: 1, failed: 1, pending: 3, current: '192.0.2.1\x1b[2J' };
    createWalkProgress({ isTTY: false, write: (text) => (written.push(text), true) }).update(progress);
    assert.equal(written.length, 0);
    const line = createWalkProgress({ isTTY: true, write: (text) => (written.push(text), true) });
    line.update(progress);
    line.clear();
    assert.deepEqual(written, [`\r\x1b[K${formatWalkProgress(progress)}`, '\r\x1b[K']);
    assert.equal(formatWalkProgress(progress), 'walk: 2 reached, 1 verified, 1 failed, 3 pending; now 192.0.2.1??2J');
  });
});
