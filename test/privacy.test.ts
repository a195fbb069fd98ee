import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { exchange, startDaemon, type DaemonHandle } from './support/daemon.js';
import { listen, spawnClient, type ClientProcess, type TestListener } from './support/peers.js';

const isRoot = process.getuid?.() === 0;

type Kind = 'outbound' | 'inbound' | 'other';

/** One request and its reply, with what the request was about, for {@link assertPrivate}. */
interface Exchange {
  readonly request: string;
  readonly reply: string;
  readonly kind: Kind;
}

async function ask(daemon: DaemonHandle, request: string, seen: Exchange[], kind: Kind = 'other'): Promise<string> {
  const { lines } = await exchange(daemon, `${request}\r\n`);
  const reply = lines[0] ?? '';
  seen.push({ request, reply, kind });
  return reply;
}

/**
 * The privacy invariants (paper 3.1.2, DESIGN "Privacy"): every reply is well formed, no reply
 * names a user of this host, every token has the same length (64 hex digits), an inbound
 * connection never gets a token and an outbound one always does.
 */
function assertPrivate(seen: readonly Exchange[]): void {
  assert.ok(seen.length > 0, 'nothing was asked');
  const users = execFileSync('getent', ['passwd'], { encoding: 'utf8' })
    .split('\n')
    .map((line) => line.split(':')[0] ?? '')
    .filter((name) => name.length > 2);
  for (const { request, reply, kind } of seen) {
    const [, , , tag, os, id] = /^(\d+),(\d+):(USERID|ERROR):(?:([^:]+):)?(.*)$/.exec(reply) ?? [];
    assert.ok(tag !== undefined, `malformed reply ${reply} to ${request}`);
    if (tag === 'USERID') {
      assert.equal(os, 'OTHER', `${request} -> ${reply}`);
      assert.match(id ?? '', /^[0-9a-f]{64}$/, `${request} -> ${reply}: every token has 64 hex digits`);
      assert.ok(!users.includes(id ?? ''), `${reply} names a user`);
    }
    if (kind === 'inbound') assert.equal(tag, 'ERROR', `inbound ${request} got ${reply}`);
    if (kind === 'outbound') assert.equal(tag, 'USERID', `outbound ${request} got ${reply}`);
  }
}

describe('privacy invariants of ID replies', () => {
  let daemon: DaemonHandle;
  let service: TestListener;
  let other: TestListener;
  let clients: ClientProcess[];
  let toOther: ClientProcess;

  before(async () => {
    daemon = await startDaemon();
    service = await listen('127.0.0.1');
    // A listener on another loopback address: connections to it are what a gateway asks
    // about with CL_IP (the requester, 127.0.0.1, is not an end of them).
    other = await listen('127.0.0.2');
    clients = await Promise.all([0, 1, 2].map(() => spawnClient('127.0.0.1', service.port)));
    toOther = await spawnClient('127.0.0.2', other.port);
  });
  after(async () => {
    await Promise.all([...clients, toOther].map((c) => c.stop()));
    await service.close();
    await other.close();
    await daemon.stop();
  });

  test('CL_IP requests get a token for an existing connection', async () => {
    const seen: Exchange[] = [];
    const reply = await ask(daemon, `${toOther.localPort},${other.port}:ID:127.0.0.2`, seen);
    assert.match(reply, /^\d+,\d+:USERID:OTHER:[0-9a-f]{64}$/);
    assertPrivate(seen);
  });

  test('CL_IP requests get a token even where the answer would be an error', async () => {
    const seen: Exchange[] = [];
    for (const request of [
      `1,2:ID:127.0.0.2`, // no such connection
      `${other.port},${toOther.localPort}:ID:127.0.0.1`, // not ours to answer... still a token
      `${service.port},${clients[0]?.localPort}:SV:127.0.0.1`, // inbound
      `0,5:ID:192.0.2.1`, // invalid port
      `70000,5:ID:[2001:db8::1]`, // invalid port, IPv6 CL_IP
      `5,6:SV_REC:99999999999999999999:192.0.2.1`, // SID out of range
    ]) {
      const reply = await ask(daemon, request, seen);
      assert.match(reply, /:USERID:OTHER:[0-9a-f]{64}$/, `${request} -> ${reply}`);
    }
    assertPrivate(seen);
  });

  test('outbound, inbound and unknown connections in all request forms: no reply names a user, every token has the same length, inbound never gets a token', async () => {
    const seen: Exchange[] = [];
    for (const client of clients) {
      for (const suffix of ['', ':ID', ':SV', ':ID_REC:7', ':SV_REC:7']) {
        await ask(daemon, `${client.localPort},${service.port}${suffix}`, seen, 'outbound');
        await ask(daemon, `${service.port},${client.localPort}${suffix}`, seen, 'inbound');
      }
    }
    await ask(daemon, '4,5', seen);
    await ask(daemon, '0,0', seen);
    assert.equal(seen.length, clients.length * 10 + 2);
    assertPrivate(seen);
  });
});

describe('opt-in', { skip: isRoot ? false : 'needs root: creates a user and runs a process as that user' }, () => {
  const user = `stopdt${process.pid % 100000}`;
  let home: string;
  let uid: number;

  before(() => {
    home = mkdtempSync(join(tmpdir(), 'stopd-home-'));
    chmodSync(home, 0o755);
    execFileSync('useradd', ['--home-dir', home, '--no-create-home', '--shell', '/usr/sbin/nologin', user]);
    uid = Number(execFileSync('id', ['-u', user], { encoding: 'utf8' }).trim());
    chownSync(home, uid, uid);
  });
  after(() => {
    execFileSync('userdel', [user]);
    rmSync(home, { recursive: true, force: true });
  });

  async function askAs(options: { daemonArgs: string[]; identFile?: string; type?: string }): Promise<string> {
    rmSync(join(home, '.ident'), { force: true });
    if (options.identFile !== undefined) {
      writeFileSync(join(home, '.ident'), options.identFile, { mode: 0o644 });
      chownSync(join(home, '.ident'), uid, uid);
    }
    const daemon = await startDaemon(options.daemonArgs);
    const service = await listen('127.0.0.1');
    const client = await spawnClient('127.0.0.1', service.port, { uid, gid: uid });
    try {
      const { lines } = await exchange(daemon, `${client.localPort},${service.port}${options.type ?? ''}\r\n`);
      return lines[0] ?? '';
    } finally {
      await client.stop();
      await service.close();
      await daemon.stop();
    }
  }

  test('a user who lists the requester gets the user name in ID replies with --opt-in', async () => {
    const reply = await askAs({ daemonArgs: ['--opt-in'], identFile: '# irc server\n127.0.0.0/8\n' });
    assert.match(reply, new RegExp(`:USERID:UNIX:${user}$`));
  });

  test('the same list without --opt-in gives a token', async () => {
    const reply = await askAs({ daemonArgs: [], identFile: '127.0.0.1\n' });
    assert.match(reply, /:USERID:OTHER:[0-9a-f]{64}$/);
  });

  test('a list that does not name the requester gives a token', async () => {
    const reply = await askAs({ daemonArgs: ['--opt-in'], identFile: '192.0.2.0/24\nirc.example.invalid\n' });
    assert.match(reply, /:USERID:OTHER:[0-9a-f]{64}$/);
  });

  test('opt-in never applies to SV requests', async () => {
    const reply = await askAs({ daemonArgs: ['--opt-in'], identFile: '127.0.0.1\n', type: ':SV' });
    assert.match(reply, /:USERID:OTHER:[0-9a-f]{64}$/);
  });
});
