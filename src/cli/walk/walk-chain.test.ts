import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { HostUnreachableError, isWalkableHost, walkChain, type CommandOutput, type StoreReader, type WalkOptions } from './walk-chain.js';
import type { WalkStart, WalkUpstreamEntry } from './walk-document.js';

/** One token's store on a fake host: what its stopctl prints for redeem, trace and verify. */
interface FakeToken {
  request: string;
  local: { address: string; port: number };
  remote: { address: string; port: number };
  verdict?: 'verified' | 'integrity-failure';
  upstream?: WalkUpstreamEntry[];
  /** Trace reads that still show this many questions pending, one fewer each read. */
  pending?: number;
  processes?: { pid: number; name: string; role: string; sockets: unknown[] }[];
}

const tok = (c: string): string => c.repeat(64);

/** A fake network: host -> token -> store contents; `unreachable` hosts reject like a failed ssh. */
function fakeReader(hosts: Record<string, Record<string, FakeToken>>, options: { unreachable?: string[]; onRun?: (host: string, args: readonly string[]) => void } = {}): StoreReader & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    access: (host) => (host === 'local-host' ? 'local' : 'ssh'),
    run(host, args, { signal }) {
      calls.push(`${host} ${args.join(' ')}`);
      options.onRun?.(host, args);
      // As the real reader does: an abort kills the command, which fails.
      if (signal.aborted) return Promise.reject(new HostUnreachableError(`ssh to ${host} interrupted`));
      if (options.unreachable?.includes(host)) return Promise.reject(new HostUnreachableError(`ssh to ${host} failed: Connection refused`));
      const store = hosts[host] ?? {};
      const out = (status: number, json: unknown): Promise<CommandOutput> => Promise.resolve({ status, stdout: JSON.stringify(json), stderr: '' });
      const [command, token = ''] = args;
      const entry = store[token];
      if (command === 'verify') {
        const clean = Object.values(store).every((t) => t.verdict !== 'integrity-failure');
        return out(clean ? 0 : 3, { clean, findings: clean ? [] : [{ kind: 'record-altered', where: 'records/x.json', detail: 'altered' }] });
      }
      if (entry === undefined) return out(2, { token, verdict: 'unknown-token', problems: [`not in the store of ${host}`] });
      if (command === 'redeem') {
        const sid = entry.request.split(':')[2] ?? null;
        return out(entry.verdict === 'integrity-failure' ? 3 : 0, {
          token,
          verdict: entry.verdict ?? 'verified',
          type: entry.request.split(':')[1],
          sid,
          time: '2026-12-06T10:00:00.000Z',
          request: { line: entry.request, requester: entry.remote },
          connection: { local: entry.local, remote: entry.remote, user: 'alice', uid: 1000 },
          host: { hostname: host },
          processes: entry.processes ?? [],
          problems: entry.verdict === 'integrity-failure' ? ["the record's bytes hash to 00, not to the token"] : [],
        });
      }
      const pending = entry.pending ?? 0;
      if (pending > 0) entry.pending = pending - 1;
      return out(0, { token, verdict: 'verified', upstream: pending > 0 ? [] : (entry.upstream ?? []), pending });
    },
  };
}

/** The upstream entry `from` records after asking `to` about the connection `from:fromPort` <- `to:toPort`. */
function upstreamEntry(to: string, token: string | null, options: { request: string; from: string; fromPort: number; toPort: number; outcome?: WalkUpstreamEntry['outcome'] }): WalkUpstreamEntry {
  return {
    host: to,
    port: 113,
    request: options.request,
    connection: { local: { address: options.from, port: options.fromPort }, remote: { address: to, port: options.toPort }, communityId: null },
    direction: 'inbound',
    outcome: options.outcome ?? 'token',
    token,
    reply: null,
    error: null,
    message: options.outcome === 'refused' ? 'connection refused' : null,
    elapsedMs: 3,
    time: '2026-12-06T10:00:00.100Z',
  };
}

function walk(start: WalkStart, reader: StoreReader, options: Partial<WalkOptions> = {}): ReturnType<typeof walkChain> {
  return walkChain(start, { reader, maxHops: 16, maxHosts: 32, signal: new AbortController().signal, wait: () => Promise.resolve(), ...options });
}

/** H2 (192.0.2.2) got a request about its ssh to 192.0.2.3 and asked H1 (192.0.2.1) about its login. */
function chainOfTwo(): Record<string, Record<string, FakeToken>> {
  return {
    '192.0.2.2': {
      [tok('b')]: {
        request: '40000,22:SV_REC:7:192.0.2.3',
        local: { address: '192.0.2.2', port: 40000 },
        remote: { address: '192.0.2.3', port: 22 },
        upstream: [upstreamEntry('192.0.2.1', tok('a'), { request: '50000,22:SV_REC:7', from: '192.0.2.2', fromPort: 22, toPort: 50000 })],
      },
    },
    '192.0.2.1': {
      [tok('a')]: {
        request: '50000,22:SV_REC:7',
        local: { address: '192.0.2.1', port: 50000 },
        remote: { address: '192.0.2.2', port: 22 },
        processes: [
          { pid: 1, name: 'init', role: 'primary', sockets: [] },
          { pid: 300, name: 'bash', role: 'primary', sockets: [] },
          { pid: 301, name: 'ssh', role: 'primary', sockets: [{ kind: 'tcp' }] },
        ],
      },
    },
  };
}

describe('walkChain', () => {
  test('walkChain follows the upstream token to its host and verifies both hops and the link', async () => {
    const doc = await walk({ host: '192.0.2.2', token: tok('b') }, fakeReader(chainOfTwo()));
    assert.deepEqual(doc.hops.map((hop) => [hop.host, hop.token, hop.depth, hop.parent, hop.verified]), [
      ['192.0.2.2', tok('b'), 0, null, true],
      ['192.0.2.1', tok('a'), 1, 0, true],
    ]);
    assert.equal(doc.hops[0]?.checks.link.ok, null);
    assert.equal(doc.hops[1]?.checks.link.ok, true);
    assert.equal(doc.verdict, 'verified');
    assert.deepEqual(doc.ends.map((end) => [end.reason, end.host, end.token]), [['origin', '192.0.2.1', null]]);
    // The holder of the socket is named first; init is left out.
    assert.deepEqual(doc.hops[1]?.summary?.keyProcesses.map((p) => p.name), ['ssh', 'bash']);
    assert.equal(doc.hops[1]?.summary?.user, 'alice');
  });

  test('walkChain fails the link when the upstream host issued its token for another connection', async () => {
    const hosts = chainOfTwo();
    const a = hosts['192.0.2.1']?.[tok('a')];
    assert.ok(a);
    a.local = { address: '192.0.2.1', port: 50001 };
    const doc = await walk({ host: '192.0.2.2', token: tok('b') }, fakeReader(hosts));
    assert.equal(doc.hops[1]?.verified, false);
    assert.equal(doc.hops[1]?.checks.link.ok, false);
    assert.match(doc.hops[1]?.checks.link.detail ?? '', /starts at 192\.0\.2\.1:50001, the previous host's ends at 192\.0\.2\.1:50000/);
    assert.equal(doc.verdict, 'failed');
  });

  test('walkChain fails the link when the token answers another request (SID)', async () => {
    const hosts = chainOfTwo();
    const a = hosts['192.0.2.1']?.[tok('a')];
    assert.ok(a);
    a.request = '50000,22:SV_REC:8';
    const doc = await walk({ host: '192.0.2.2', token: tok('b') }, fakeReader(hosts));
    assert.equal(doc.hops[1]?.checks.link.ok, false);
    assert.match(doc.hops[1]?.checks.link.detail ?? '', /issued for "50000,22:SV_REC:8", but the previous host asked "50000,22:SV_REC:7"/);
  });

  test('walkChain marks a tampered hop and does not follow its upstream tokens', async () => {
    const hosts = chainOfTwo();
    const b = hosts['192.0.2.2']?.[tok('b')];
    assert.ok(b);
    b.verdict = 'integrity-failure';
    const reader = fakeReader(hosts);
    const doc = await walk({ host: '192.0.2.2', token: tok('b') }, reader);
    assert.equal(doc.hops.length, 1);
    assert.equal(doc.hops[0]?.checks.record.ok, false);
    assert.equal(doc.hops[0]?.checks.ledger.ok, false);
    assert.deepEqual(doc.ends.map((end) => [end.reason, end.host, end.token]), [['verification-failed', '192.0.2.1', tok('a')]]);
    assert.ok(!reader.calls.some((call) => call.startsWith('192.0.2.1')), 'the untrusted token was not taken anywhere');
    assert.equal(doc.verdict, 'failed');
  });

  test('walkChain ends a branch at an unreachable host with the reason and the token', async () => {
    const doc = await walk({ host: '192.0.2.2', token: tok('b') }, fakeReader(chainOfTwo(), { unreachable: ['192.0.2.1'] }));
    assert.equal(doc.hops.length, 1);
    const [end] = doc.ends;
    assert.equal(end?.reason, 'unreachable');
    assert.equal(end?.host, '192.0.2.1');
    assert.equal(end?.token, tok('a'));
    assert.match(end?.message ?? '', /Connection refused; take token a{64} to the administrator of 192\.0\.2\.1/);
    assert.equal(doc.verdict, 'incomplete');
  });

  test('walkChain ends at once when the start host is unreachable', async () => {
    const doc = await walk({ host: '192.0.2.2', token: tok('b') }, fakeReader(chainOfTwo(), { unreachable: ['192.0.2.2'] }));
    assert.deepEqual(doc.hops, []);
    assert.deepEqual(doc.ends.map((end) => [end.hop, end.reason, end.token]), [[null, 'unreachable', tok('b')]]);
    assert.equal(doc.verdict, 'incomplete');
  });

  test('walkChain goes breadth-first over a fan-out and never visits a (host, token) twice', async () => {
    const entry = (from: string, to: string, token: string, port: number): WalkUpstreamEntry =>
      upstreamEntry(to, token, { request: `${port},22:SV_REC:9`, from, fromPort: 22, toPort: port });
    const node = (self: string, from: string, port: number, upstream: WalkUpstreamEntry[]): FakeToken => ({
      request: `${port},22:SV_REC:9`,
      local: { address: self, port },
      remote: { address: from, port: 22 },
      upstream,
    });
    // X was reached from two hosts; Y lists X again with X's token (a loop written by a bad ledger).
    const hosts = {
      '192.0.2.10': { [tok('0')]: { request: '1,22:SV_REC:9', local: { address: '192.0.2.10', port: 1 }, remote: { address: '192.0.2.99', port: 22 }, upstream: [entry('192.0.2.10', '192.0.2.11', tok('1'), 1001), entry('192.0.2.10', '192.0.2.12', tok('2'), 1002)] } },
      '192.0.2.11': { [tok('1')]: node('192.0.2.11', '192.0.2.10', 1001, [entry('192.0.2.11', '192.0.2.13', tok('3'), 1003)]) },
      '192.0.2.12': { [tok('2')]: node('192.0.2.12', '192.0.2.10', 1002, [entry('192.0.2.12', '192.0.2.11', tok('1'), 1001)]) },
      '192.0.2.13': { [tok('3')]: node('192.0.2.13', '192.0.2.11', 1003, []) },
    };
    const doc = await walk({ host: '192.0.2.10', token: tok('0') }, fakeReader(hosts));
    assert.deepEqual(doc.hops.map((hop) => [hop.host, hop.depth]), [
      ['192.0.2.10', 0],
      ['192.0.2.11', 1],
      ['192.0.2.12', 1],
      ['192.0.2.13', 2],
    ]);
    assert.ok(doc.ends.some((end) => end.reason === 'already-visited' && end.host === '192.0.2.11' && end.hop === 2));
    assert.equal(doc.verdict, 'verified');
  });

  test('walkChain stops at --max-hops and --max-hosts and names the token not followed', async () => {
    const byHops = await walk({ host: '192.0.2.2', token: tok('b') }, fakeReader(chainOfTwo()), { maxHops: 0 });
    assert.equal(byHops.hops.length, 1);
    assert.deepEqual(byHops.ends.map((end) => [end.reason, end.token]), [['hop-limit', tok('a')]]);
    const byHosts = await walk({ host: '192.0.2.2', token: tok('b') }, fakeReader(chainOfTwo()), { maxHosts: 1 });
    assert.deepEqual(byHosts.ends.map((end) => [end.reason, end.token]), [['host-limit', tok('a')]]);
    assert.equal(byHosts.verdict, 'incomplete');
  });

  test('walkChain reads a trace again while its upstream questions are pending', async () => {
    const hosts = chainOfTwo();
    const b = hosts['192.0.2.2']?.[tok('b')];
    assert.ok(b);
    b.pending = 2;
    const waits: number[] = [];
    const reader = fakeReader(hosts);
    const doc = await walk({ host: '192.0.2.2', token: tok('b') }, reader, { wait: (ms) => (waits.push(ms), Promise.resolve()) });
    assert.equal(waits.length, 2);
    assert.equal(reader.calls.filter((call) => call.startsWith(`192.0.2.2 trace`)).length, 3);
    assert.equal(doc.hops.length, 2);
  });

  test('walkChain ends a branch as pending when the questions stay unanswered past the settle time', async () => {
    const hosts = chainOfTwo();
    const b = hosts['192.0.2.2']?.[tok('b')];
    assert.ok(b);
    b.pending = 1000;
    const doc = await walk({ host: '192.0.2.2', token: tok('b') }, fakeReader(hosts), { settleMs: 0 });
    assert.deepEqual(doc.ends.map((end) => end.reason), ['pending']);
    assert.equal(doc.verdict, 'incomplete');
  });

  test('walkChain returns what it gathered when interrupted', async () => {
    const controller = new AbortController();
    const reader = fakeReader(chainOfTwo(), {
      onRun: (host) => {
        if (host === '192.0.2.1') controller.abort();
      },
    });
    const doc = await walk({ host: '192.0.2.2', token: tok('b') }, reader, { signal: controller.signal });
    assert.equal(doc.interrupted, true);
    assert.deepEqual(doc.hops.map((hop) => hop.host), ['192.0.2.2']);
    assert.deepEqual(doc.ends.map((end) => [end.reason, end.token]), [['interrupted', tok('a')]]);
    assert.equal(doc.verdict, 'incomplete');
  });

  test('walkChain ends with unknown-token when the host does not know the token', async () => {
    const doc = await walk({ host: '192.0.2.2', token: tok('c') }, fakeReader(chainOfTwo()));
    assert.equal(doc.hops[0]?.verified, false);
    assert.deepEqual(doc.ends.map((end) => end.reason), ['unknown-token']);
  });

  test('walkChain does not pass a hostile upstream host name to SSH', async () => {
    const hosts = chainOfTwo();
    const b = hosts['192.0.2.2']?.[tok('b')];
    assert.ok(b?.upstream?.[0]);
    b.upstream[0] = { ...b.upstream[0], host: '-oProxyCommand=touch /tmp/x' };
    const reader = fakeReader(hosts);
    const doc = await walk({ host: '192.0.2.2', token: tok('b') }, reader);
    assert.equal(doc.hops.length, 1);
    assert.equal(reader.calls.length, 3);
    assert.deepEqual(doc.ends.map((end) => end.reason), ['upstream-outcome']);
  });

  test('walkChain ends a branch at an upstream host that refused', async () => {
    const hosts = chainOfTwo();
    const b = hosts['192.0.2.2']?.[tok('b')];
    assert.ok(b);
    b.upstream = [upstreamEntry('192.0.2.1', null, { request: '50000,22:SV_REC:7', from: '192.0.2.2', fromPort: 22, toPort: 50000, outcome: 'refused' })];
    const doc = await walk({ host: '192.0.2.2', token: tok('b') }, fakeReader(hosts));
    assert.deepEqual(doc.ends.map((end) => [end.reason, end.host]), [['upstream-outcome', '192.0.2.1']]);
    assert.match(doc.ends[0]?.message ?? '', /got refused: connection refused/);
    assert.equal(doc.verdict, 'verified');
  });
});

describe('isWalkableHost', () => {
  test('isWalkableHost takes addresses and DNS names and refuses options and shell text', () => {
    for (const host of ['192.0.2.1', '2001:db8::1', 'h1.example.org', 'h-2']) assert.equal(isWalkableHost(host), true, host);
    for (const host of ['-oProxyCommand=x', 'a b', 'h1;rm', '', 'x$(id)', '.h']) assert.equal(isWalkableHost(host), false, host);
  });
});
