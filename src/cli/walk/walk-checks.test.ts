import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { checkLedger, checkRecord, checkStartLink, isVerified, parseRequestLine, readIssuedFor, sameAddress } from './walk-checks.js';
import type { WalkStart } from './walk-document.js';

const askStart: WalkStart = {
  host: '192.0.2.2',
  token: 'b'.repeat(64),
  ask: {
    target: { address: '192.0.2.2', port: 113 },
    request: '40000,22:SV_REC:7:192.0.2.3',
    reply: `40000,22:USERID:OTHER:${'b'.repeat(64)}`,
    connection: { local: { address: '192.0.2.2', port: 40000 }, remote: { address: '192.0.2.3', port: 22 } },
    sid: '7',
    type: 'SV_REC',
  },
};

const redeemOf = (line: string, local: { address: string; port: number }, remote: { address: string; port: number }): Record<string, unknown> => ({
  verdict: 'verified',
  request: { line, requester: { address: '192.0.2.4', port: 5000 } },
  connection: { local, remote },
});

describe('walk checks', () => {
  test('checkStartLink accepts the token replied to our request about that connection', () => {
    const issued = readIssuedFor(redeemOf('40000 , 22 : SV_REC : 7 : 192.0.2.3', { address: '::ffff:192.0.2.2', port: 40000 }, { address: '192.0.2.3', port: 22 }));
    assert.equal(checkStartLink(askStart, issued).ok, true);
  });

  test('checkStartLink refuses a token the host issued for another connection', () => {
    const issued = readIssuedFor(redeemOf('40000,22:SV_REC:7:192.0.2.3', { address: '192.0.2.2', port: 40000 }, { address: '192.0.2.9', port: 22 }));
    const check = checkStartLink(askStart, issued);
    assert.equal(check.ok, false);
    assert.match(check.detail, /does not go to 192\.0\.2\.3:22 as asked/);
  });

  test('checkStartLink does not apply to a start token from the command line', () => {
    const check = checkStartLink({ host: '192.0.2.2', token: 'b'.repeat(64) }, readIssuedFor(null));
    assert.equal(check.ok, null);
  });

  test('checkRecord and checkLedger fail without JSON and on findings', () => {
    assert.equal(checkRecord(null, 1).ok, false);
    assert.match(checkRecord({ verdict: 'integrity-failure', problems: ['bytes differ'] }, 3).detail, /integrity failure: bytes differ/);
    assert.equal(checkLedger({ clean: true, findings: [] }, 0).ok, true);
    assert.match(checkLedger({ clean: false, findings: [{ kind: 'ledger-altered', where: 'ledger line 3', detail: 'hash' }] }, 3).detail, /1 verification finding, first: ledger-altered ledger line 3/);
  });

  test('isVerified needs record and ledger, and a link unless none applies', () => {
    const ok = { ok: true, detail: '' };
    const bad = { ok: false, detail: '' };
    const none = { ok: null, detail: '' };
    assert.equal(isVerified({ record: ok, ledger: ok, link: none }), true);
    assert.equal(isVerified({ record: ok, ledger: ok, link: bad }), false);
    assert.equal(isVerified({ record: ok, ledger: none, link: ok }), false);
  });

  test('parseRequestLine reads type and SID; sameAddress matches IPv4-mapped IPv6', () => {
    assert.deepEqual(parseRequestLine('1,2:ID_REC:99:192.0.2.1'), { type: 'ID_REC', sid: '99' });
    assert.deepEqual(parseRequestLine('1 , 2'), { type: 'ID', sid: null });
    assert.equal(sameAddress('::FFFF:192.0.2.1', '192.0.2.1'), true);
    assert.equal(sameAddress('192.0.2.1', '192.0.2.10'), false);
  });
});
