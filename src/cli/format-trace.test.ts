import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatTraceText, type TraceView } from './format-trace.js';
import { showStored } from './show.js';

// eslint-disable-next-line no-control-regex -- matching control characters is the point
const RAW_CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/u;
const EVIL = '\x1b]0;owned\x07\x1b[2J\x9b31m\u202e';

/** A trace view whose local fields all carry `EVIL`, with these upstream outcomes. */
function view(upstream: Partial<TraceView['upstream'][number]>[]): TraceView {
  return {
    token: 'ab'.repeat(32),
    verdict: 'verified',
    problems: [],
    local: {
      type: `SV_REC${EVIL}`,
      sid: `7${EVIL}`,
      time: '2024-01-02T10:00:00.000Z',
      request: `1,2:SV_REC:7${EVIL}`,
      requester: { address: '192.0.2.1', port: 4000 },
      connection: null,
      user: `root${EVIL}`,
      uid: 0,
      processes: 1,
      record: true,
      processed: true,
      analysisProblems: [{ code: `no-visible-holder${EVIL}`, reason: `other-pid-namespace${EVIL}`, message: `No process visible${EVIL}` }],
    },
    upstream: upstream.map((u) => ({
      host: '192.0.2.66',
      port: 113,
      request: '4000,22:SV_REC:7',
      connection: { local: { address: '192.0.2.2', port: 22 }, remote: { address: '192.0.2.66', port: 4000 }, communityId: '1:Qhn7bI2I7PLvI+8X0ZzQWGCaS3s=' },
      direction: `inbound${EVIL}`,
      outcome: 'token',
      token: null,
      reply: null,
      error: null,
      message: null,
      elapsedMs: 5,
      time: '2024-01-02T10:00:01.000Z',
      ...u,
    })),
    pending: 0,
  };
}

test('formatTraceText escapes every ledger field, even from an altered ledger', () => {
  const text = formatTraceText(
    view([
      { outcome: 'token', token: `tok${EVIL}` },
      { outcome: 'error', error: `XBAD${EVIL}` },
      { outcome: 'bad-token', reply: `4000,22:USERID:OTHER:${EVIL}`, message: `bad${EVIL}` },
      { outcome: 'user', reply: `4000,22:USERID:UNIX:${EVIL}` },
      { outcome: 'wrong-ports', reply: EVIL, message: EVIL },
      { outcome: `new-outcome${EVIL}` as 'token', message: EVIL },
    ]),
  );
  assert.doesNotMatch(text, RAW_CONTROL);
  assert.match(text, /answered a token that is not a plain token, not kept: bad\\x1b\]0;owned\\x07/);
  assert.match(text, /answered for another connection, not kept/);
  assert.match(text, /outcome "new-outcome\\x1b/);
  assert.match(text, /\nPROBLEM {5}No process visible\\x1b.* \(no-visible-holder\\x1b.*: other-pid-namespace\\x1b/);
});

test('formatTraceText shows text the daemon stored escaped without doubling its backslashes', () => {
  const text = formatTraceText(view([{ outcome: 'bad-token', reply: '4000,22:USERID:OTHER:ok\\x1b[2J', message: 'm' }]));
  assert.match(text, /reply "4000,22:USERID:OTHER:ok\\x1b\[2J" \(5 ms\)/);
});

test('formatTraceText names line-too-long and the time each question took', () => {
  const text = formatTraceText(view([{ outcome: 'line-too-long', message: 'Reply from 192.0.2.66:113 is longer than 1024 bytes', elapsedMs: 8 }]));
  assert.match(text, /answered a line too long to be a reply, not read further: Reply from 192\.0\.2\.66:113 is longer than 1024 bytes \(8 ms\)/);
});

test('showStored keeps stored escapes as they are and still escapes raw controls', () => {
  assert.equal(showStored('ok\\x1b'), 'ok\\x1b');
  assert.equal(showStored('ok\x1b'), 'ok\\x1b');
  assert.doesNotMatch(showStored('\\\x1b\\\\\x9b'), RAW_CONTROL);
});

test('formatTraceText shows the Community ID of each connection it names', () => {
  const base = view([{ outcome: 'token', token: 'cd'.repeat(32) }]);
  const local = base.local;
  assert.ok(local);
  const connection = { local: { address: '192.0.2.66', port: 4000 }, remote: { address: '198.51.100.9', port: 22 }, communityId: '1:local+id=' };
  const text = formatTraceText({ ...base, local: { ...local, connection } });
  assert.match(text, /\nCommunity {3}1:local\+id=\n/);
  assert.match(text, /\n {6}community ID 1:Qhn7bI2I7PLvI\+8X0ZzQWGCaS3s=\n/);
  const without = formatTraceText({ ...base, upstream: base.upstream.map((u) => ({ ...u, connection: { ...u.connection, communityId: null } })) });
  assert.doesNotMatch(without, /community ID/i);
});
