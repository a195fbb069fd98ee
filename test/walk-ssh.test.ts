/**
 * `stopctl walk` over real SSH (issue 16): four test hosts with a real sshd each, a user who
 * hops H1 -> H2 -> H3 with ssh, and an IDS on H4 that asks H2 (with CL_IP) about H2's
 * connection to H3 and walks the chain back, reading every host's store over SSH.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { STOPCTL } from './support/daemon.js';
import { eventually, peerPort } from './support/chain.js';
import { createSshKit, HAS_OPENSSH, startSshd, type SshKit } from './support/ssh-hosts.js';
import { createTestNet, type TestHost, type TestNet, type TestStopd } from './support/testnet.js';
import { validateCase } from './support/case-validate.js';
import type { WalkDocument } from '../src/cli/walk/walk-document.js';

const isRoot = process.getuid?.() === 0;
const skip = !isRoot ? 'needs root: creates network and PID namespaces' : !HAS_OPENSSH ? 'needs openssh-server and openssh-client' : false;

describe('stopctl walk follows a chain of ssh logins over real SSH', { skip }, () => {
  let net: TestNet;
  let kit: SshKit;
  let h1: TestHost, h2: TestHost, h3: TestHost, h4: TestHost;
  const stopd = new Map<string, TestStopd>();
  const sshd = new Map<string, ChildProcess>();
  let clientPort: number;

  /** Runs `stopctl walk ARGS` on H4 (the IDS) with the test's ssh and remote stopctl. */
  async function walkFromH4(args: readonly string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return h4.exec([process.execPath, STOPCTL, 'walk', ...args, '--ssh', kit.sshLine, '--remote-stopctl', kit.remoteStopctl, '--timeout', '30'], {
      timeoutMs: 120_000,
    });
  }

  before(async () => {
    net = await createTestNet({ hosts: [1, 2, 3, 4].map((n) => ({ name: `walk${n}`, address: `203.0.113.${n}` })) });
    [h1, h2, h3, h4] = net.hosts as [TestHost, TestHost, TestHost, TestHost];
    kit = createSshKit(net.hosts);
    for (const host of [h1, h2, h3]) {
      const daemon = await host.startStopd();
      stopd.set(host.name, daemon);
      sshd.set(host.name, await startSshd(host, kit, { storeDir: daemon.storeDir }));
    }
    // The user sits at H1, logs into H2 with ssh and from there into H3.
    const login = h1.spawn([...kit.sshWords, h2.address, `${kit.sshLine} ${h3.address} sleep 600`], { stdio: ['ignore', 'ignore', 'pipe'] });
    let sshErrors = '';
    login.stderr?.on('data', (chunk: Buffer) => (sshErrors += chunk.toString()));
    try {
      // Two ssh logins on a busy two-CPU machine: key exchange alone can take seconds each.
      clientPort = await peerPort(h3, 22, { fromAddress: h2.address, timeoutMs: 60_000 });
    } catch (error) {
      throw new Error(`${(error as Error).message}; the ssh client said: ${sshErrors.trim() || '(nothing)'}`);
    }
  });
  after(async () => {
    await net?.destroy();
    kit?.remove();
  });

  let h2Token: string;
  let h1Token: string;

  test('walk --ask from the IDS prints the chain H2 -> H1, both hops verified, with the ssh client on H1', async () => {
    const result = await walkFromH4(['--ask', h2.address, String(clientPort), '22', '--ip', h3.address, '--type', 'SV_REC']);
    assert.equal(result.code, 0, `${result.stdout}\n${result.stderr}`);
    const text = result.stdout;
    assert.match(text, new RegExp(`^Chain {7}${h2.address.replaceAll('.', '\\.')} -> ${h1.address.replaceAll('.', '\\.')}$`, 'm'));
    assert.match(text, /^Verdict {5}verified: all 2 hops verified where they live$/m);
    // Stdout is not a terminal here: no progress line anywhere.
    assert.doesNotMatch(result.stderr + text, /walk: \d+ reached/);
    const [, hop1 = '', hop2 = ''] = text.split(/^Hop \d/m);
    assert.match(hop1, new RegExp(`^ +${h2.address.replaceAll('.', '\\.')} \\(start\\) via ssh`));
    assert.match(hop1, new RegExp(`Connection ${h2.address.replaceAll('.', '\\.')}:${clientPort} -> ${h3.address.replaceAll('.', '\\.')}:22`));
    assert.match(hop2, new RegExp(`^ +${h1.address.replaceAll('.', '\\.')} \\(upstream of ${h2.address.replaceAll('.', '\\.')}\\) via ssh`));
    assert.match(hop2, /^ {2}Process {3}\d+ ssh \(root/m, 'H1 names the ssh client the user ran');
    assert.match(hop2, /^ {4}link {4}ok/m);
    assert.match(text, /^ {2}origin +the chain starts at 203\.0\.113\.1/m);
    h2Token = /Token {5}([0-9a-f]{64})/.exec(hop1)?.[1] ?? '';
    h1Token = /Token {5}([0-9a-f]{64})/.exec(hop2)?.[1] ?? '';
    assert.match(h2Token, /^[0-9a-f]{64}$/);
    assert.match(h1Token, /^[0-9a-f]{64}$/);
  });

  test('walk HOST TOKEN --json gives the hops with their redeem documents, trace entries and checks; --html and --case in the same run', async () => {
    const htmlFile = join(kit.dir, 'walk.html');
    const caseFile = join(kit.dir, 'walk.jsonld');
    const result = await walkFromH4([h2.address, h2Token, '--json', '--html', htmlFile, '--case', caseFile]);
    assert.equal(result.code, 0, result.stderr);
    const doc = JSON.parse(result.stdout) as WalkDocument;
    assert.equal(doc.verdict, 'verified');
    assert.deepEqual(doc.hops.map((hop) => [hop.host, hop.token, hop.verified]), [
      [h2.address, h2Token, true],
      [h1.address, h1Token, true],
    ]);
    const [first, second] = doc.hops as [WalkDocument['hops'][number], WalkDocument['hops'][number]];
    assert.equal(first.redeem?.token, h2Token);
    assert.equal(first.redeem?.verdict, 'verified');
    assert.equal(first.checks.link.ok, null, 'a start token from the command line has nothing to link to');
    assert.equal(first.upstream.length, 1);
    assert.equal(first.upstream[0]?.token, h1Token);
    assert.equal(first.upstream[0]?.host, h1.address);
    assert.equal(second.parent, 0);
    assert.equal(second.checks.link.ok, true);
    assert.equal(second.checks.ledger.ok, true);
    assert.equal(second.verify?.clean, true);
    assert.ok(second.summary?.keyProcesses.some((p) => p.name === 'ssh'));
    assert.deepEqual(doc.ends.map((end) => [end.reason, end.host]), [['origin', h1.address]]);
    // The report is rendered from the same document (its own checks are in walk-html.test.ts).
    const html = readFileSync(htmlFile, 'utf8');
    assert.match(html, /^<!DOCTYPE html>/i);
    assert.ok(html.includes(h2Token) && html.includes(h1Token), 'the report names both tokens');
    assert.match(html, /<svg/);
    // Community ID joins the hops: H2's trace entry about the connection from H1 and H1's own
    // record of that connection (seen from its other end) name the same flow.
    assert.match(second.summary?.communityId ?? '', /^1:[A-Za-z0-9+/]{27}=$/);
    assert.equal(first.upstream[0]?.connection.communityId, second.summary?.communityId);
    // The CASE bundle of the same run validates (test/support/case-validate.ts) and names both records.
    const bundle = JSON.parse(readFileSync(caseFile, 'utf8')) as object;
    const report = await validateCase(bundle);
    assert.deepEqual(report.problems.filter((problem) => problem.severity !== 'Info'), []);
    const exhibits = report.quads.filter((q) => q.predicate.value.endsWith('/investigation/exhibitNumber')).map((q) => q.object.value);
    assert.deepEqual(exhibits.sort(), [h2Token, h1Token].sort());
  });

  test('an unreachable H1 ends the walk with the reason and H1\'s token', async () => {
    const h1Sshd = sshd.get(h1.name);
    assert.ok(h1Sshd);
    const exited = new Promise((resolve) => h1Sshd.once('exit', resolve));
    h1Sshd.kill('SIGTERM');
    await exited;
    try {
      const result = await walkFromH4([h2.address, h2Token, '--json']);
      assert.equal(result.code, 4, result.stderr);
      const doc = JSON.parse(result.stdout) as WalkDocument;
      assert.equal(doc.verdict, 'incomplete');
      assert.deepEqual(doc.hops.map((hop) => hop.host), [h2.address]);
      const end = doc.ends.find((e) => e.reason === 'unreachable');
      assert.ok(end, JSON.stringify(doc.ends));
      assert.equal(end.host, h1.address);
      assert.equal(end.token, h1Token);
      assert.match(end.message, /Connection refused/);
      assert.ok(end.message.includes(h1Token));
    } finally {
      sshd.set(h1.name, await startSshd(h1, kit, { storeDir: (stopd.get(h1.name) as TestStopd).storeDir }));
    }
  });

  test('a tampered record on H1 marks that hop and the walk exits 3', async () => {
    const store = (stopd.get(h1.name) as TestStopd).storeDir;
    const file = readdirSync(join(store, 'records')).find((name) => name.startsWith(h1Token));
    assert.ok(file, 'H1 saved a record for its token');
    const path = join(store, 'records', file);
    const record = readFileSync(path, 'utf8');
    // Someone with root on H1 renames the client the user ran.
    assert.match(record, /"name":"ssh"/);
    writeFileSync(path, record.replace('"name":"ssh"', '"name":"scp"'));
    const result = await walkFromH4([h2.address, h2Token]);
    assert.equal(result.code, 3, result.stdout + result.stderr);
    assert.match(result.stdout, new RegExp(`^Chain {7}203\\.0\\.113\\.2 -> 203\\.0\\.113\\.1 \\(FAILED\\)$`, 'm'));
    const [, hop1 = '', hop2 = ''] = result.stdout.split(/^Hop \d/m);
    assert.match(hop1, /^ {2}Verdict {3}verified$/m);
    assert.match(hop2, /^ {2}Verdict {3}FAILED VERIFICATION/m);
    assert.match(hop2, /^ {4}record {2}FAILED +integrity failure/m);
    assert.match(hop2, /^ {4}ledger {2}FAILED +the store has 1 verification finding/m);
    assert.match(result.stdout, /^Verdict {5}FAILED: 1 hop failed verification$/m);
  });

  test('Ctrl-C ends the walk and prints what was gathered', async () => {
    // H1's stopctl hangs (as a slow host would): the walk has read H2 and waits on H1.
    const marker = join(kit.dir, 'h1-reached');
    const slow = join(kit.dir, 'stopctl-slow-on-walk1');
    writeFileSync(slow, `#!/bin/sh\nif [ "$(hostname)" = walk1 ]; then touch ${marker}; exec sleep 120; fi\nexec ${kit.remoteStopctl} "$@"\n`, { mode: 0o755 });
    const walk = h4.spawn([process.execPath, STOPCTL, 'walk', h2.address, h2Token, '--json', '--ssh', kit.sshLine, '--remote-stopctl', slow], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    walk.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => walk.once('exit', (code) => resolve(code)));
    await eventually('the walk to reach H1', () => existsSync(marker), 60_000);
    walk.kill('SIGINT');
    assert.equal(await exited, 130);
    const doc = JSON.parse(stdout) as WalkDocument;
    assert.equal(doc.interrupted, true);
    assert.equal(doc.verdict, 'incomplete');
    assert.deepEqual(doc.hops.map((hop) => [hop.host, hop.verified]), [[h2.address, true]]);
    assert.deepEqual(doc.ends.map((end) => [end.reason, end.host, end.token]), [['interrupted', h1.address, h1Token]]);
  });
});
