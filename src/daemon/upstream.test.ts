import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { PeerProtocolError, PeerReplyTooLongError, PeerTimeoutError, PeerUnreachableError } from '../errors.js';
import { Ledger, readLedger } from '../evidence/ledger.js';
import { formatRequest, parseReply, type Request } from '../protocol/index.js';
import type { UpstreamCandidate } from '../trace/index.js';
import type { QueryOptions, QueryResult } from './client.js';
import { LoopTable } from './loop-table.js';
import { describeUpstreamFailure, describeUpstreamReply, escapeUpstreamText, UpstreamDispatcher } from './upstream.js';

const dir = mkdtempSync(join(tmpdir(), 'stopd-upstream-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const silent = { info: () => undefined, warn: () => undefined, error: () => undefined };

function candidate(remoteAddress: string, remotePort: number): UpstreamCandidate {
  return {
    local: { address: '198.51.100.2', port: 22 },
    remote: { address: remoteAddress, port: remotePort },
    inode: remotePort,
    state: 'ESTABLISHED',
    direction: 'inbound',
    pids: [100],
  };
}

async function entries(path: string): Promise<Record<string, unknown>[]> {
  const out: Record<string, unknown>[] = [];
  for await (const line of readLedger(path)) if (line.entry !== undefined) out.push(line.entry);
  return out;
}

test('UpstreamDispatcher asks each candidate from the connection local address and records every outcome', async () => {
  const path = join(dir, 'outcomes');
  const ledger = await Ledger.open(path);
  const asked: { line: string; options: QueryOptions }[] = [];
  const query = (request: Request, options: QueryOptions): Promise<QueryResult> => {
    asked.push({ line: formatRequest(request), options });
    const port = request.clientPort;
    if (port === 1001) return Promise.resolve({ reply: { kind: 'token', clientPort: port, serverPort: 22, token: 'a'.repeat(64) }, line: 'x' });
    if (port === 1002) return Promise.resolve({ reply: { kind: 'error', clientPort: port, serverPort: 22, error: 'NO-USER' }, line: 'y' });
    if (port === 1003) {
      const refused = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
      return Promise.reject(new PeerUnreachableError('Cannot reach', { cause: refused }));
    }
    return Promise.reject(new PeerTimeoutError('No reply'));
  };
  const dispatcher = new UpstreamDispatcher({
    port: 113,
    connectTimeoutMs: 100,
    replyTimeoutMs: 100,
    maxFanOut: 16,
    maxConcurrent: 2,
    ledger,
    loops: new LoopTable({ windowMs: 120_000 }),
    log: silent,
    query,
  });
  const candidates = [1001, 1002, 1003, 1004].map((port, i) => candidate(`192.0.2.${i + 1}`, port));
  dispatcher.dispatch('f'.repeat(64), { type: 'SV_REC', sid: 7n }, candidates);
  await dispatcher.close();
  await ledger.close();

  assert.deepEqual(asked.map((a) => a.line).sort(), ['1001,22:SV_REC:7', '1002,22:SV_REC:7', '1003,22:SV_REC:7', '1004,22:SV_REC:7']);
  assert.ok(asked.every((a) => a.options.localAddress === '198.51.100.2' && a.options.port === 113));
  const recorded = await entries(path);
  const byPeer = new Map(recorded.map((e) => [(e.peer as { address: string }).address, e]));
  assert.equal(byPeer.get('192.0.2.1')?.outcome, 'token');
  assert.equal(byPeer.get('192.0.2.1')?.token, 'a'.repeat(64));
  assert.equal(byPeer.get('192.0.2.2')?.outcome, 'error');
  assert.equal(byPeer.get('192.0.2.2')?.error, 'NO-USER');
  assert.equal(byPeer.get('192.0.2.3')?.outcome, 'refused');
  assert.equal(byPeer.get('192.0.2.4')?.outcome, 'timeout');
  assert.ok(recorded.every((e) => e.kind === 'upstream' && e.parentToken === 'f'.repeat(64) && e.sid === '7'));
});

test('UpstreamDispatcher asks at most maxFanOut hosts and records the rest as skipped', async () => {
  const path = join(dir, 'fanout');
  const ledger = await Ledger.open(path);
  let asked = 0;
  const dispatcher = new UpstreamDispatcher({
    port: 113,
    connectTimeoutMs: 100,
    replyTimeoutMs: 100,
    maxFanOut: 3,
    maxConcurrent: 8,
    ledger,
    loops: new LoopTable({ windowMs: 120_000 }),
    log: silent,
    query: (request) => {
      asked += 1;
      return Promise.resolve({ reply: { kind: 'token', clientPort: request.clientPort, serverPort: 22, token: 'b'.repeat(64) }, line: '' });
    },
  });
  dispatcher.dispatch('e'.repeat(64), { type: 'ID_REC', sid: 9n }, Array.from({ length: 10 }, (_, i) => candidate('192.0.2.9', 2000 + i)));
  await dispatcher.close();
  await ledger.close();
  assert.equal(asked, 3);
  const outcomes = (await entries(path)).map((e) => e.outcome);
  assert.equal(outcomes.filter((o) => o === 'token').length, 3);
  assert.equal(outcomes.filter((o) => o === 'skipped').length, 7);
});

test('UpstreamDispatcher stops at the work budget of a SID', async () => {
  const path = join(dir, 'budget');
  const ledger = await Ledger.open(path);
  const loops = new LoopTable({ windowMs: 120_000, maxWorkPerSid: 4 });
  let asked = 0;
  const dispatcher = new UpstreamDispatcher({
    port: 113,
    connectTimeoutMs: 100,
    replyTimeoutMs: 100,
    maxFanOut: 16,
    maxConcurrent: 8,
    ledger,
    loops,
    log: silent,
    query: (request) => {
      asked += 1;
      return Promise.resolve({ reply: { kind: 'error', clientPort: request.clientPort, serverPort: 22, error: 'NO-USER' }, line: '' });
    },
  });
  for (let round = 0; round < 3; round++) {
    dispatcher.dispatch('d'.repeat(64), { type: 'SV_REC', sid: 5n }, [candidate('192.0.2.5', 3000 + round * 2), candidate('192.0.2.5', 3001 + round * 2)]);
  }
  await dispatcher.close();
  await ledger.close();
  assert.equal(asked, 4);
  assert.equal((await entries(path)).filter((e) => e.outcome === 'skipped').length, 2);
});

const ASKED = { clientPort: 4000, serverPort: 22 };

test('describeUpstreamReply keeps a plain token for the port pair asked', () => {
  const token = 'ab'.repeat(32);
  const line = `4000,22:USERID:OTHER:${token}`;
  assert.deepEqual(describeUpstreamReply(ASKED, { reply: parseReply(line), line }), { outcome: 'token', token, reply: line });
});

test('describeUpstreamReply names a reply for another port pair wrong-ports and keeps no token', () => {
  const line = `4001,22:USERID:OTHER:${'cd'.repeat(32)}`;
  const result = describeUpstreamReply(ASKED, { reply: parseReply(line), line });
  assert.equal(result.outcome, 'wrong-ports');
  assert.equal(result.token, undefined);
  assert.match(result.message ?? '', /4001,22, not 4000,22/);
});

test('describeUpstreamReply names an OTHER id with control characters bad-token and stores it escaped', () => {
  const line = '4000,22:USERID:OTHER:ok\x1b]0;owned\x07\x9b31m';
  const result = describeUpstreamReply(ASKED, { reply: parseReply(line), line });
  assert.equal(result.outcome, 'bad-token');
  assert.equal(result.token, undefined);
  assert.equal(result.reply, '4000,22:USERID:OTHER:ok\\x1b]0;owned\\x07\\x9b31m');
});

test('describeUpstreamReply names a printable token with shell metacharacters bad-token', () => {
  const line = '4000,22:USERID:OTHER:$(touch${IFS}/tmp/x)';
  const result = describeUpstreamReply(ASKED, { reply: parseReply(line), line });
  assert.equal(result.outcome, 'bad-token');
  assert.equal(result.token, undefined);
});

test('describeUpstreamReply names an OTHER id over 512 characters bad-token and bounds what it stores', () => {
  const line = `4000,22:USERID:OTHER:${'a'.repeat(900)}`;
  const result = describeUpstreamReply(ASKED, { reply: parseReply(line), line });
  assert.equal(result.outcome, 'bad-token');
  assert.ok((result.reply ?? '').length <= 603);
  assert.equal(result.replyLength, line.length);
});

test('describeUpstreamReply keeps a user name of a plain IDENT daemon, escaped', () => {
  const line = '4000,22:USERID:UNIX:j\u00f6rg\x1b[2J';
  const result = describeUpstreamReply(ASKED, { reply: parseReply(line), line });
  assert.equal(result.outcome, 'user');
  assert.equal(result.user, 'j\\xf6rg\\x1b[2J');
});

test('describeUpstreamFailure names replies too long line-too-long and timeouts timeout', () => {
  assert.equal(describeUpstreamFailure(new PeerReplyTooLongError('Reply from x is longer than 1024 bytes')).outcome, 'line-too-long');
  assert.equal(describeUpstreamFailure(new PeerTimeoutError('No reply')).outcome, 'timeout');
  assert.equal(describeUpstreamFailure(new PeerProtocolError('Reply from x is malformed: "\u009b"')).message, 'Reply from x is malformed: "\\x9b"');
});

test('escapeUpstreamText escapes reversibly and cuts at the bound', () => {
  assert.equal(escapeUpstreamText('a\\b\n\u2028', 100), 'a\\\\b\\x0a\\u{2028}');
  assert.equal(escapeUpstreamText('\x1b'.repeat(100), 10), '\\x1b\\x1b...');
  assert.equal(escapeUpstreamText('plain', 5), 'plain');
});
