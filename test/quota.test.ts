/**
 * Store quotas and retention against a real daemon (issue 5, part 4): at the limit SV replies
 * go on as usual and the ledger says which records were not kept; `stopctl prune` removes or
 * gzips old records with a ledger note, and redeem tells pruned and not-kept records apart
 * from tampering.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { STOPCTL, startDaemon, type DaemonHandle } from './support/daemon.js';
import { listen, type TestListener } from './support/peers.js';
import { requestSv, runRedeem } from './support/sv-record.js';

const isRoot = process.getuid?.() === 0;
const NEEDS_ROOT = 'needs root: SV requests read /proc of every process';
const DAY = 86_400_000;

const dir = mkdtempSync(join(tmpdir(), 'stopd-quota-'));
after(() => rmSync(dir, { recursive: true, force: true }));

interface Entry {
  readonly seq: number;
  readonly kind: string;
  readonly record?: string;
  readonly token?: string;
  readonly reason?: string;
  readonly action?: string;
  readonly [field: string]: unknown;
}

function ledgerEntries(storeDir: string): Entry[] {
  return readFileSync(join(storeDir, 'ledger'), 'utf8')
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as Entry);
}

function recordFiles(storeDir: string): string[] {
  return readdirSync(join(storeDir, 'records')).filter((name) => !name.startsWith('.')).sort();
}

function runStopctl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [STOPCTL, ...args], { timeout: 20_000 }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : -1, stdout, stderr });
    });
  });
}

function age(storeDir: string, token: string, days: number): void {
  const when = new Date(Date.now() - days * DAY);
  utimesSync(join(storeDir, 'records', `${token}.json`), when, when);
}

describe('store quota and retention with a real daemon', { skip: isRoot ? false : NEEDS_ROOT }, () => {
  let next: TestListener;
  let client: Socket;
  let ports: { local: number; remote: number };
  const storeDir = mkdtempSync(join(dir, 'store-'));
  let daemon: DaemonHandle | undefined;
  const tokens: string[] = [];

  before(async () => {
    // A connection this test process makes: the SV requests ask about it (RFC 1413 rule:
    // the daemon's address and <cl_port>, the requester's address and <sv_port>).
    next = await listen('127.0.0.2');
    client = connect({ host: '127.0.0.2', port: next.port });
    await once(client, 'connect');
    await next.nextAccepted();
    ports = { local: client.localPort ?? 0, remote: next.port };
  });
  after(async () => {
    client.destroy();
    await next.close();
    await daemon?.stop();
  });

  test('stopd --max-records 3 answers 5 SV requests with tokens, keeps 3 records, and the ledger names the 2 not kept', async () => {
    daemon = await startDaemon(['--max-records', '3', '--max-requester-share', '100'], { storeDir });
    for (let index = 0; index < 5; index += 1) tokens.push(await requestSv(daemon, ports));
    assert.equal(new Set(tokens).size, 5, 'five distinct tokens of the same form');
    assert.deepEqual(recordFiles(storeDir), tokens.slice(0, 3).map((token) => `${token}.json`).sort());
    const notKept = ledgerEntries(storeDir).filter((entry) => entry.kind === 'record-not-kept');
    assert.deepEqual(
      notKept.map((entry) => entry.record),
      tokens.slice(3),
    );
    assert.ok(notKept.every((entry) => entry.reason === 'max-records' && entry.limit === 3));
    // Each not-kept note comes before the reply that sent its token (duty 9).
    const entries = ledgerEntries(storeDir);
    for (const token of tokens.slice(3)) {
      const note = entries.find((entry) => entry.kind === 'record-not-kept' && entry.record === token);
      const reply = entries.find((entry) => entry.kind === 'reply' && entry.token === token);
      assert.ok(note !== undefined && reply !== undefined && note.seq < reply.seq, `note before reply for ${token}`);
    }
    assert.match(daemon.stderr(), /Store quota reached \(max-records 3\)/);
  });

  test('stopctl redeem says "record not kept: store quota" for a token past the limit, not an integrity failure', async () => {
    const notKept = tokens[4] ?? '';
    const json = await runRedeem(storeDir, notKept);
    assert.equal(json.code, 0, json.stderr);
    const body = JSON.parse(json.stdout) as { verdict: string; problems: string[]; recordAbsent: { reason: string; note: string } };
    assert.equal(body.verdict, 'verified');
    assert.deepEqual(body.problems, []);
    assert.equal(body.recordAbsent.reason, 'not-kept');
    const text = await runStopctl(['redeem', notKept, '--store', storeDir]);
    assert.equal(text.code, 0);
    assert.match(text.stdout, /record not kept: store quota \(--max-records 3 reached\)/);
    assert.doesNotMatch(text.stdout, /INTEGRITY FAILURE/);
    const kept = await runRedeem(storeDir, tokens[0] ?? '');
    assert.equal(kept.code, 0);
    assert.equal((JSON.parse(kept.stdout) as { verdict: string }).verdict, 'verified');
  });

  test('stopctl prune refuses while stopd runs, and says why', async () => {
    const refused = await runStopctl(['prune', '--store', storeDir, '--older-than', '0']);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /Cannot prune .*: stopd \(pid \d+\) holds the store.*stop stopd, prune, then start it again/);
    assert.equal(recordFiles(storeDir).length, 3, 'nothing was removed');
  });

  test('stopctl prune removes old records, notes them in the ledger, and redeem then says "pruned"', async () => {
    assert.equal(await daemon?.stop(), 0);
    daemon = undefined;
    const [oldest = '', older = '', recent = ''] = tokens;
    age(storeDir, oldest, 40);
    age(storeDir, older, 31);
    const pruned = await runStopctl(['prune', '--store', storeDir, '--older-than', '30']);
    assert.equal(pruned.code, 0, pruned.stderr);
    assert.match(pruned.stdout, /2 removed; noted in the ledger/);
    assert.deepEqual(recordFiles(storeDir), [`${recent}.json`]);
    const notes = ledgerEntries(storeDir).filter((entry) => entry.kind === 'prune');
    assert.deepEqual(notes.map((entry) => entry.record), [oldest, older], 'oldest first');
    assert.ok(notes.every((entry) => entry.action === 'removed' && entry.verified === true));
    assert.equal(ledgerEntries(storeDir).at(-1)?.kind, 'prune-run');

    const redeemed = await runStopctl(['redeem', oldest, '--store', storeDir]);
    assert.equal(redeemed.code, 0, redeemed.stdout);
    assert.match(redeemed.stdout, /record pruned: removed by stopctl prune at \S+ \(older than 30 days\)/);
    assert.doesNotMatch(redeemed.stdout, /INTEGRITY FAILURE/);
    const verify = await runStopctl(['verify', '--store', storeDir]);
    assert.equal(verify.code, 0, `verify accepts records the ledger says were pruned or not kept:\n${verify.stdout}`);
  });

  test('stopd counts the records on disk again at start: after a prune it keeps records up to the limit', async () => {
    daemon = await startDaemon(['--max-records', '3', '--max-requester-share', '100'], { storeDir });
    const fresh = [await requestSv(daemon, ports), await requestSv(daemon, ports), await requestSv(daemon, ports)];
    // One record survived the prune: two more fit under 3, the third does not.
    assert.ok(existsSync(join(storeDir, 'records', `${fresh[0]}.json`)));
    assert.ok(existsSync(join(storeDir, 'records', `${fresh[1]}.json`)));
    assert.ok(!existsSync(join(storeDir, 'records', `${fresh[2]}.json`)));
    assert.equal(ledgerEntries(storeDir).filter((entry) => entry.kind === 'record-not-kept').at(-1)?.record, fresh[2]);
    assert.equal(await daemon.stop(), 0);
    daemon = undefined;
    tokens.push(...fresh);
  });

  test('stopctl prune --gzip compresses old records, which redeem still verifies byte for byte', async () => {
    const [, , survivor = '', , , first = '', second = ''] = tokens;
    for (const token of [survivor, first, second]) age(storeDir, token, 100);
    const gz = await runStopctl(['prune', '--store', storeDir, '--older-than', '90', '--gzip']);
    assert.equal(gz.code, 0, gz.stderr);
    assert.match(gz.stdout, /3 gzipped/);
    assert.deepEqual(recordFiles(storeDir), [survivor, first, second].map((token) => `${token}.json.gz`).sort());
    for (const token of [survivor, first, second]) {
      const redeemed = await runRedeem(storeDir, token);
      assert.equal(redeemed.code, 0, `${token}: ${redeemed.stdout}`);
      assert.equal((JSON.parse(redeemed.stdout) as { verdict: string }).verdict, 'verified');
    }
    const redeemed = JSON.parse((await runRedeem(storeDir, first)).stdout) as { token: string; type: string };
    assert.equal(redeemed.type, 'SV');
    const notes = ledgerEntries(storeDir).filter((entry) => entry.kind === 'prune' && entry.action === 'gzipped');
    assert.deepEqual(notes.map((entry) => entry.record).sort(), [survivor, first, second].sort());
    const verify = await runStopctl(['verify', '--store', storeDir]);
    assert.equal(verify.code, 0, `verify checks gzipped records:\n${verify.stdout}`);
  });

  test('stopd --max-store-bytes keeps no record that would pass the size limit, and says so', async () => {
    const small = await startDaemon(['--max-store-bytes', '1', '--max-requester-share', '100']);
    try {
      const token = await requestSv(small, ports);
      assert.deepEqual(recordFiles(small.storeDir), []);
      const note = ledgerEntries(small.storeDir).find((entry) => entry.kind === 'record-not-kept');
      assert.equal(note?.record, token);
      assert.equal(note.reason, 'max-store-bytes');
      const text = await runStopctl(['redeem', token, '--store', small.storeDir]);
      assert.equal(text.code, 0);
      assert.match(text.stdout, /record not kept: store quota \(--max-store-bytes 1 reached\)/);
    } finally {
      await small.stop();
    }
  });
});
