import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decideConnection, decideError, type ReplyPolicy } from './policy.js';

const plain: ReplyPolicy = { randomErrors: false, unknownError: false };

test('decideConnection gives a token for an outbound connection', () => {
  assert.deepEqual(decideConnection({ kind: 'outbound' }, { policy: plain, clientIp: false, optedIn: false }), {
    reply: 'token',
    reason: 'outbound',
  });
});

test('decideConnection never answers an inbound connection with a token or a user', () => {
  const decision = decideConnection({ kind: 'inbound' }, { policy: plain, clientIp: false, optedIn: true });
  assert.deepEqual(decision, { reply: 'error', error: 'NO-USER', precise: 'NO-USER' });
});

test('decideConnection answers unknown and half-gone connections with NO-USER', () => {
  for (const finding of [{ kind: 'not-found' } as const, { kind: 'not-established', state: 'TIME_WAIT' } as const]) {
    assert.deepEqual(decideConnection(finding, { policy: plain, clientIp: false, optedIn: false }), {
      reply: 'error',
      error: 'NO-USER',
      precise: 'NO-USER',
    });
  }
});

test('decideConnection gives the user name only when opted in and without CL_IP', () => {
  assert.deepEqual(decideConnection({ kind: 'outbound' }, { policy: plain, clientIp: false, optedIn: true }), {
    reply: 'user',
  });
  assert.equal(decideConnection({ kind: 'outbound' }, { policy: plain, clientIp: true, optedIn: true }).reply, 'token');
});

test('decideError turns every error into a token when CL_IP is given', () => {
  for (const error of ['INVALID-PORT', 'NO-USER', 'UNKNOWN-ERROR'] as const) {
    assert.deepEqual(decideError(error, { policy: { randomErrors: false, unknownError: true }, clientIp: true }), {
      reply: 'token',
      reason: 'cl-ip',
      replaces: error,
    });
  }
});

test('decideError honours --random-errors and --unknown-error', () => {
  assert.deepEqual(decideError('NO-USER', { policy: { randomErrors: true, unknownError: false }, clientIp: false }), {
    reply: 'token',
    reason: 'random-errors',
    replaces: 'NO-USER',
  });
  assert.deepEqual(decideError('INVALID-PORT', { policy: { randomErrors: false, unknownError: true }, clientIp: false }), {
    reply: 'error',
    error: 'UNKNOWN-ERROR',
    precise: 'INVALID-PORT',
  });
});
