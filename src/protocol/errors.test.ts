import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isErrorToken, quoteForMessage, ReplySyntaxError, RequestSyntaxError } from './errors.js';

describe('isErrorToken', () => {
  test('isErrorToken accepts the three RFC 1413 errors STOP sends and X tokens', () => {
    for (const token of ['INVALID-PORT', 'NO-USER', 'UNKNOWN-ERROR', 'XA', `X${'!'.repeat(63)}`]) assert.ok(isErrorToken(token), token);
  });

  test('isErrorToken rejects HIDDEN-USER, lower case and malformed X tokens', () => {
    for (const token of ['HIDDEN-USER', 'no-user', 'X', `X${'A'.repeat(64)}`, 'X A', 'X:A', 'x-foo', 'X\u00e9', '']) {
      assert.ok(!isErrorToken(token), token);
    }
  });
});

describe('RequestSyntaxError', () => {
  test('RequestSyntaxError is a SyntaxError carrying the token and ports', () => {
    const error = new RequestSyntaxError('Cannot parse request: port 0 is out of range', {
      errorToken: 'INVALID-PORT',
      ports: { client: 0, server: 23 },
    });
    assert.ok(error instanceof SyntaxError);
    assert.equal(error.name, 'RequestSyntaxError');
    assert.equal(error.errorToken, 'INVALID-PORT');
    assert.deepEqual(error.ports, { client: 0, server: 23 });
  });

  test('RequestSyntaxError has no ports property when none were read', () => {
    const error = new RequestSyntaxError('Cannot parse request: no port pair', { errorToken: 'UNKNOWN-ERROR' });
    assert.ok(!('ports' in error));
  });
});

describe('ReplySyntaxError', () => {
  test('ReplySyntaxError is a SyntaxError with its own name', () => {
    const error = new ReplySyntaxError('Cannot parse reply: no port pair');
    assert.ok(error instanceof SyntaxError);
    assert.equal(error.name, 'ReplySyntaxError');
  });
});

describe('quoteForMessage', () => {
  test('quoteForMessage escapes control characters and truncates', () => {
    assert.equal(quoteForMessage('a\0b'), '"a\\u0000b"');
    assert.equal(quoteForMessage('x'.repeat(30), 4), '"xxxx"...');
  });
});
