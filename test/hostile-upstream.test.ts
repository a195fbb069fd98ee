/**
 * Hostile upstream hosts (issue 13, item 5): recursion connects to whatever host the attacker
 * connected from, so that host may answer anything. A fake upstream daemon in a test host
 * misbehaves in every way the issue lists; the daemon under test must give up within its
 * upstream timeout, keep a small ledger entry with an honest outcome, keep no token that is
 * not a plain token for the right port pair, and let nothing reach stopctl's output raw.
 *
 * Chain: `evil` logs in to `victim` (a shell behind socat), and from there on to `inv`; the
 * investigator on `inv` asks victim SV_REC about victim's connection to inv, so victim asks
 * evil (its upstream candidate) on port 113, where the fake upstream answers by SID.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { STOPCTL } from './support/daemon.js';
import { eventually, hopThrough, queryFrom, SHELL_PORT, shellConnectionPort, startShellService } from './support/chain.js';
import { FAKE_UPSTREAM_TOKEN, HOSTILE_CASES, startFakeUpstream, type FakeUpstream } from './support/fake-upstream.js';
import { createTestNet, readLedger, type TestHost, type TestNet, type TestStopd } from './support/testnet.js';

const run = promisify(execFile);
const isRoot = process.getuid?.() === 0;
const skip = isRoot ? false : 'needs root: creates network and PID namespaces';
const TOKEN_REPLY = /^(\d+),(\d+):USERID:OTHER:([0-9a-f]{64})$/;
/** The daemon's --upstream-timeout, in seconds: short, so the drip and silent cases end quickly. */
const UPSTREAM_TIMEOUT_SEC = 1;
/** Generous bound on one upstream question: the timeout plus scheduling on a loaded machine. */
const MAX_ELAPSED_MS = UPSTREAM_TIMEOUT_SEC * 1000 + 4000;
/** Bound on one upstream ledger entry as JSON: 600 characters of reply, 300 of message, the rest fixed. */
const MAX_ENTRY_BYTES = 2048;
/** Anything a terminal could act on, except the line feeds that end stopctl's lines. */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const RAW_CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/u;

type Entry = Record<string, unknown>;

interface Case {
  readonly name: keyof typeof HOSTILE_CASES;
  readonly outcome: string;
  /** What `stopctl trace` says about it. */
  readonly says: RegExp;
  /** What the ledger keeps of the reply, when it keeps one. */
  readonly reply?: RegExp;
}

const CASES: readonly Case[] = [
  { name: 'drip', outcome: 'timeout', says: /no answer in time: No complete reply from .* within 1000 ms: \d+ bytes without an end of line/ },
  { name: 'flood', outcome: 'line-too-long', says: /answered a line too long to be a reply, not read further/ },
  {
    name: 'controlToken',
    outcome: 'bad-token',
    says: /answered a token that is not a plain token, not kept: .*; reply "\d+,2222:USERID:OTHER:ok\\x1b\]0;owned\\x07\\x1b\[2J\\x9b31m\\x7fend"/,
    // Escaped, not lost: the evidence still shows what the host sent.
    reply: /^\d+,2222:USERID:OTHER:ok\\x1b\]0;owned\\x07\\x1b\[2J\\x9b31m\\x7fend$/,
  },
  { name: 'longToken', outcome: 'line-too-long', says: /answered a line too long to be a reply/ },
  { name: 'silent', outcome: 'timeout', says: /no answer in time: No reply from .* within 1000 ms/ },
  { name: 'answerAndHold', outcome: 'token', says: new RegExp(`token ${FAKE_UPSTREAM_TOKEN}: take it to the administrator of`) },
  { name: 'wrongPorts', outcome: 'wrong-ports', says: /answered for another connection, not kept: The reply is for port pair \d+,2222, not \d+,2222 as asked/ },
  { name: 'overlongToken', outcome: 'bad-token', says: /answered a token that is not a plain token, not kept: An OTHER id of 600 characters/ },
];

async function stopctl(args: readonly string[]): Promise<string> {
  const { stdout } = await run(process.execPath, [STOPCTL, ...args], { maxBuffer: 1 << 20 });
  return stdout;
}

describe('a hostile upstream host costs bounded time and ledger space and cannot inject output', { skip }, () => {
  let net: TestNet;
  let victim: TestHost;
  let evil: TestHost;
  let inv: TestHost;
  let daemon: TestStopd;
  let fake: FakeUpstream;
  let port: number;

  before(async () => {
    net = await createTestNet({
      hosts: [
        { name: 'evil', address: '203.0.113.66' },
        { name: 'victim', address: '203.0.113.10' },
        { name: 'inv', address: '203.0.113.20' },
      ],
    });
    [evil, victim, inv] = [net.host('evil'), net.host('victim'), net.host('inv')];
    daemon = await victim.startStopd(['--upstream-timeout', String(UPSTREAM_TIMEOUT_SEC)]);
    fake = await startFakeUpstream(evil);
    await startShellService(victim);
    await startShellService(inv);
    await hopThrough(evil, [victim, inv]);
    port = await shellConnectionPort(inv, victim.address);
  });
  after(async () => {
    await net?.destroy();
  });

  for (const c of CASES) {
    test(`${c.name}: recorded as ${c.outcome}, within the upstream timeout, escaped in trace, redeem and the picture`, async () => {
      const sid = HOSTILE_CASES[c.name];
      const { code, line } = await queryFrom(inv, victim.address, { client: port, server: SHELL_PORT }, { type: 'SV_REC', sid: String(sid) });
      assert.equal(code, 0, line);
      const token = TOKEN_REPLY.exec(line)?.[3];
      assert.ok(token, `victim replied ${line}`);

      const entry = await eventually(`victim to record the outcome of SID ${sid}`, () =>
        readLedger(daemon.storeDir).find((e: Entry) => e.kind === 'upstream' && e.parentToken === token),
      );
      assert.equal((entry.peer as { address: string }).address, evil.address);
      assert.equal(entry.outcome, c.outcome, JSON.stringify(entry));
      // Bounded time: the daemon gave up (or finished) on its own, within its timeout.
      assert.equal(typeof entry.elapsedMs, 'number');
      assert.ok((entry.elapsedMs as number) < MAX_ELAPSED_MS, `took ${String(entry.elapsedMs)} ms`);
      // Bounded ledger space, and nothing raw from the upstream host in it.
      const json = JSON.stringify(entry);
      assert.ok(Buffer.byteLength(json) < MAX_ENTRY_BYTES, `entry of ${Buffer.byteLength(json)} bytes`);
      for (const field of ['reply', 'user', 'error', 'message']) {
        const value = entry[field];
        if (typeof value === 'string') assert.doesNotMatch(value, RAW_CONTROL, `${field} stored raw`);
      }
      if (c.reply !== undefined) assert.match(String(entry.reply), c.reply);
      // Only a plain token for the right port pair is kept as a token.
      if (c.outcome === 'token') assert.equal(entry.token, FAKE_UPSTREAM_TOKEN);
      else assert.equal(entry.token, undefined);
      // The daemon closed the connection: the fake saw it go, long before its own minute is up.
      await eventually(`the fake upstream to see SID ${sid} closed`, () => fake.events().includes(`${sid} closed`));
      assert.deepEqual(fake.events().filter((e) => e.startsWith(`${sid} error`)), [], 'the fake upstream played its part');

      const trace = await stopctl(['trace', token, '--store', daemon.storeDir]);
      assert.match(trace, c.says);
      assert.doesNotMatch(trace, RAW_CONTROL);
      const dot = await stopctl(['trace', token, '--store', daemon.storeDir, '--format', 'dot']);
      assert.doesNotMatch(dot, RAW_CONTROL);
      const json2 = JSON.parse(await stopctl(['trace', token, '--store', daemon.storeDir, '--json'])) as { upstream: { outcome: string }[] };
      assert.deepEqual(json2.upstream.map((u) => u.outcome), [c.outcome]);
      const redeem = await stopctl(['redeem', token, '--store', daemon.storeDir]);
      assert.match(redeem, /Upstream candidates:/);
      assert.doesNotMatch(redeem, RAW_CONTROL);
    });
  }
});
