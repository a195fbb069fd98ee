/**
 * Least privilege (deployment): stopd as a dedicated user needs exactly CAP_SYS_PTRACE (to
 * read other users' fd links) and CAP_DAC_READ_SEARCH (to list their /proc/PID/fd); netlink
 * socket lookups need nothing. Found by this test: with both, SV resolves another user's
 * processes; without them, SV fails with a clear message instead of saving less.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { exchange, startDaemon, STOPD } from './support/daemon.js';
import { listen, spawnClient, type TestListener } from './support/peers.js';
import { redeemVerified } from './support/sv-record.js';

const isRoot = process.getuid?.() === 0;
const USER = 'stopd-lp-test';

describe('stopd as a dedicated user', { skip: isRoot ? false : 'needs root: creates a user and drops privileges with setpriv' }, () => {
  let uid: number;
  let service: TestListener;
  const stores: string[] = [];
  // The checkout may sit where the dedicated user cannot read (a 0700 home): run a copy of the
  // built package from a world-readable temporary directory, as an installed package would be.
  let install: string;

  before(async () => {
    try {
      execFileSync('id', ['-u', USER], { stdio: 'ignore' });
    } catch {
      execFileSync('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', USER]);
    }
    uid = Number(execFileSync('id', ['-u', USER], { encoding: 'utf8' }).trim());
    service = await listen('127.0.0.1');
    install = mkdtempSync(join(tmpdir(), 'stopd-lp-install-'));
    chmodSync(install, 0o755);
    const root = resolve(STOPD, '../../../..');
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };
    const runtime = Object.keys(pkg.dependencies ?? {}).map((name) => `node_modules/${name}`);
    for (const part of ['package.json', 'dist/src', 'build/Release', ...runtime]) {
      cpSync(join(root, part), join(install, part), { recursive: true });
    }
  });
  after(async () => {
    await service.close();
    for (const dir of [...stores, install]) rmSync(dir, { recursive: true, force: true });
    execFileSync('userdel', [USER]);
  });

  function storeFor(): string {
    const dir = mkdtempSync(join(tmpdir(), 'stopd-lp-'));
    chownSync(dir, uid, uid);
    stores.push(dir);
    return dir;
  }

  function asUser(caps: string | undefined): string[] {
    const base = ['setpriv', `--reuid=${uid}`, `--regid=${uid}`, '--clear-groups'];
    const withCaps = caps === undefined ? [...base, '--'] : [...base, `--inh-caps=${caps}`, `--ambient-caps=${caps}`, '--'];
    // startDaemon appends `node <checkout>/dist/src/cli/stopd.js ...`: run the copy instead.
    return [...withCaps, 'sh', '-c', `shift; exec "$0" ${JSON.stringify(join(install, 'dist/src/cli/stopd.js'))} "$@"`];
  }

  test('with CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH only, SV resolves a root process', async () => {
    const daemon = await startDaemon([], { storeDir: storeFor(), wrap: asUser('+sys_ptrace,+dac_read_search') });
    // The client runs as root: another user, from the daemon's point of view.
    const client = await spawnClient('127.0.0.1', service.port);
    try {
      assert.doesNotMatch(daemon.stderr(), /Cannot read other users/);
      const { lines } = await exchange(daemon, `${client.localPort},${service.port}:SV\r\n`);
      const token = /:USERID:OTHER:([0-9a-f]{64})$/.exec(lines[0] ?? '')?.[1];
      assert.ok(token, `expected a token, got ${lines[0]}`);
      const record = await redeemVerified(daemon.storeDir, token);
      const holder = record.processes.find((p) => p.pid === client.pid);
      assert.ok(holder, 'the root-owned client process is in the record');
      assert.equal(holder.uid.real, 0);
      assert.equal(holder.role, 'primary');
    } finally {
      await client.stop();
      await daemon.stop();
    }
  });

  test('--nat needs CAP_NET_ADMIN: it starts with it, and without it refuses to start saying why', async () => {
    // Only reads conntrack (one GET of a flow that cannot exist, and the event subscription).
    const daemon = await startDaemon(['--nat'], { storeDir: storeFor(), wrap: asUser('+sys_ptrace,+dac_read_search,+net_admin') });
    try {
      assert.doesNotMatch(daemon.stderr(), /conntrack/i);
    } finally {
      await daemon.stop();
    }
    await assert.rejects(
      startDaemon(['--nat'], { storeDir: storeFor(), wrap: asUser('+sys_ptrace,+dac_read_search') }),
      /Cannot use --nat: the kernel refused the conntrack request: stopd needs CAP_NET_ADMIN/,
    );
  });

  test('without those capabilities it says so at start, and SV fails with a clear message', async () => {
    const daemon = await startDaemon([], { storeDir: storeFor(), wrap: asUser(undefined) });
    const client = await spawnClient('127.0.0.1', service.port);
    try {
      assert.match(daemon.stderr(), /Cannot read other users' open files without CAP_DAC_READ_SEARCH and CAP_SYS_PTRACE/);
      const { lines } = await exchange(daemon, `${client.localPort},${service.port}:SV\r\n`);
      assert.equal(lines[0], `${client.localPort},${service.port}:ERROR:UNKNOWN-ERROR`);
      assert.match(daemon.stderr(), /Cannot analyse .*permission denied/i);
      // ID requests need no privilege at all: netlink lookups work for any user.
      const id = await exchange(daemon, `${client.localPort},${service.port}\r\n`);
      assert.match(id.lines[0] ?? '', /:USERID:OTHER:[0-9a-f]{64}$/);
    } finally {
      await client.stop();
      await daemon.stop();
    }
  });
});
