import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { ReplySyntaxError } from './errors.js';
import { formatReply, isPlainToken, isValidToken, isValidUserId, parseReply, type ReceivedReply, type Reply } from './reply.js';

function rejectionOf(line: string): ReplySyntaxError {
  try {
    parseReply(line);
  } catch (error: unknown) {
    if (error instanceof ReplySyntaxError) return error;
    throw error;
  }
  assert.fail(`expected ${JSON.stringify(line)} to be rejected`);
}

describe('formatReply', () => {
  test('formatReply writes a token reply with opsys OTHER', () => {
    assert.equal(formatReply({ kind: 'token', clientPort: 80, serverPort: 1234, token: 'a1b2c3' }), '80,1234:USERID:OTHER:a1b2c3');
  });

  test('formatReply writes an opted-in user name with opsys UNIX', () => {
    assert.equal(formatReply({ kind: 'user', clientPort: 80, serverPort: 1234, user: 'alice' }), '80,1234:USERID:UNIX:alice');
  });

  test('formatReply writes every error token', () => {
    for (const error of ['INVALID-PORT', 'NO-USER', 'UNKNOWN-ERROR', 'XOVERLOAD', `X${'A'.repeat(63)}`] as const) {
      assert.equal(formatReply({ kind: 'error', clientPort: 80, serverPort: 1234, error }), `80,1234:ERROR:${error}`);
    }
  });

  test('formatReply echoes out-of-range ports of the query', () => {
    assert.equal(formatReply({ kind: 'error', clientPort: 0, serverPort: 70000, error: 'INVALID-PORT' }), '0,70000:ERROR:INVALID-PORT');
    // --random-errors answers a bad port pair with a token (DESIGN duty 4).
    assert.equal(formatReply({ kind: 'token', clientPort: 0, serverPort: 5, token: 'ab' }), '0,5:USERID:OTHER:ab');
  });

  test('formatReply rejects tokens that are not 1 to 512 token characters', () => {
    for (const token of ['', 'a:b', 'a b', 'a\tb', 'a\r', 'a\n', 'a\0', '\u00e9', 'x'.repeat(513)]) {
      assert.throws(() => formatReply({ kind: 'token', clientPort: 1, serverPort: 2, token }), RangeError, JSON.stringify(token));
    }
    assert.equal(formatReply({ kind: 'token', clientPort: 1, serverPort: 2, token: 'x'.repeat(512) }).length, 'x'.repeat(512).length + 17);
  });

  test('formatReply rejects user ids it cannot send', () => {
    for (const user of ['', 'a:b', 'a\r', 'a\n', 'a\0', ' alice', 'alice ', 'a\tb', '\u0100', 'x'.repeat(513)]) {
      assert.throws(() => formatReply({ kind: 'user', clientPort: 1, serverPort: 2, user }), RangeError, JSON.stringify(user));
    }
  });

  test('formatReply rejects HIDDEN-USER and malformed error tokens', () => {
    for (const error of ['HIDDEN-USER', 'X', `X${'A'.repeat(64)}`, 'X A', 'X:A', 'FOO', 'no-user']) {
      assert.throws(() => formatReply({ kind: 'error', clientPort: 1, serverPort: 2, error: error as `X${string}` }), RangeError, error);
    }
  });

  test('formatReply rejects ports out of range', () => {
    assert.throws(() => formatReply({ kind: 'token', clientPort: 1.5, serverPort: 2, token: 'a' }), RangeError);
    assert.throws(() => formatReply({ kind: 'user', clientPort: 1, serverPort: 100000, user: 'a' }), RangeError);
    assert.throws(() => formatReply({ kind: 'error', clientPort: 100000, serverPort: 2, error: 'NO-USER' }), RangeError);
    assert.throws(() => formatReply({ kind: 'error', clientPort: -1, serverPort: 2, error: 'NO-USER' }), RangeError);
  });
});

describe('isValidToken and isValidUserId', () => {
  test('isValidToken accepts 64 lowercase hex characters', () => {
    assert.ok(isValidToken('0123456789abcdef'.repeat(4)));
  });

  test('isPlainToken accepts hex, base64 and base64url tokens up to 512 characters', () => {
    assert.ok(isPlainToken('0123456789abcdef'.repeat(4)));
    assert.ok(isPlainToken('AZaz09+/=-_.~'));
    assert.ok(isPlainToken('a'.repeat(512)));
  });

  test('isPlainToken rejects shell and terminal metacharacters, controls and overlong tokens', () => {
    for (const token of ['', 'a'.repeat(513), 'a;b', '$(id)', '`id`', 'a"b', "a'b", 'a\\b', 'a\x1b[31m', 'a b', 'a:b', 'j\u00f6rg']) {
      assert.equal(isPlainToken(token), false, JSON.stringify(token));
    }
  });

  test('isValidUserId accepts latin1 names and inner spaces', () => {
    assert.ok(isValidUserId('j\u00f6rg'));
    assert.ok(isValidUserId('john smith'));
  });
});

describe('parseReply', () => {
  test('parseReply reads the RFC 1413 examples with their white space', () => {
    assert.deepEqual(parseReply('6193, 23 : USERID : UNIX : stjohns'), { kind: 'user', clientPort: 6193, serverPort: 23, user: 'stjohns', opsys: 'UNIX' });
    assert.deepEqual(parseReply('6195, 23 : ERROR : NO-USER'), { kind: 'error', clientPort: 6195, serverPort: 23, error: 'NO-USER' });
  });

  test('parseReply reads STOP token replies', () => {
    assert.deepEqual(parseReply('80,1234:USERID:OTHER:a1b2'), { kind: 'token', clientPort: 80, serverPort: 1234, token: 'a1b2' });
    assert.deepEqual(parseReply('\t80 ,\t1234 : userid : other : a1b2 \t'), { kind: 'token', clientPort: 80, serverPort: 1234, token: 'a1b2' });
  });

  test('parseReply accepts a charset after the opsys', () => {
    assert.deepEqual(parseReply('80,23:USERID:UNIX,US-ASCII:bob'), { kind: 'user', clientPort: 80, serverPort: 23, user: 'bob', opsys: 'UNIX' });
    assert.deepEqual(parseReply('80,23 : USERID : OTHER , UTF-8 : f00d'), { kind: 'token', clientPort: 80, serverPort: 23, token: 'f00d' });
  });

  test('parseReply reads an OTHER id that is not a token as a user reply', () => {
    assert.deepEqual(parseReply('80,23:USERID:OTHER:john smith'), { kind: 'user', clientPort: 80, serverPort: 23, user: 'john smith', opsys: 'OTHER' });
    assert.deepEqual(parseReply('80,23:USERID:OTHER:a:b'), { kind: 'user', clientPort: 80, serverPort: 23, user: 'a:b', opsys: 'OTHER' });
  });

  test('parseReply keeps octets beyond ASCII in user ids', () => {
    assert.deepEqual(parseReply('80,23:USERID:UNIX:j\u00f6rg'), { kind: 'user', clientPort: 80, serverPort: 23, user: 'j\u00f6rg', opsys: 'UNIX' });
  });

  test('parseReply reads every error token, HIDDEN-USER and X tokens included', () => {
    for (const error of ['INVALID-PORT', 'NO-USER', 'UNKNOWN-ERROR', 'HIDDEN-USER', 'XFOO']) {
      assert.deepEqual(parseReply(`80,23:ERROR:${error}`), { kind: 'error', clientPort: 80, serverPort: 23, error });
    }
    assert.deepEqual(parseReply('80,23:error:no-user'), { kind: 'error', clientPort: 80, serverPort: 23, error: 'NO-USER' });
  });

  test('parseReply reads echoed out-of-range ports', () => {
    assert.deepEqual(parseReply('0,70000:ERROR:INVALID-PORT'), { kind: 'error', clientPort: 0, serverPort: 70000, error: 'INVALID-PORT' });
    assert.deepEqual(parseReply('0,5:USERID:OTHER:ab'), { kind: 'token', clientPort: 0, serverPort: 5, token: 'ab' });
  });

  test('parseReply rejects malformed replies with ReplySyntaxError', () => {
    for (const line of [
      '',
      '80,23',
      '80,23:',
      '80,23:USERID',
      '80,23:USERID:OTHER',
      '80,23:USERID:OTHER:',
      '80,23:USERID:OTHER:  ',
      '80,23:USERID::abc',
      '80,23:USERID:O S:abc',
      '80,23:USERID:OTHER,:abc',
      '80,23:USERID:OTHER:a\0b',
      '80,23:USERID:OTHER:a\u0100',
      '80,23:FOO:bar',
      '80,23:ERROR:',
      '80,23:ERROR:BOGUS',
      '80,23:ERROR:X',
      '80,23:ERROR:NO USER',
      '80,23:ERROR:NO-USER\0',
      '-1,23:USERID:OTHER:abc',
      '80,100000:USERID:UNIX:abc',
      'a,23:ERROR:NO-USER',
      '80;23:ERROR:NO-USER',
      '800000,23:ERROR:NO-USER',
      '8 0,23:ERROR:NO-USER',
      '80,23 x:ERROR:NO-USER',
      '80\0,23:ERROR:NO-USER',
    ]) {
      const error = rejectionOf(line);
      assert.match(error.message, /^Cannot parse reply: /, line);
    }
  });
});

// --- property tests ---

const portArb = fc.oneof(fc.integer({ min: 1, max: 65535 }), fc.integer({ min: 0, max: 99999 }));
const tokenCharArb = fc.constantFrom(...Array.from({ length: 0x7f - 0x21 }, (_, i) => String.fromCharCode(0x21 + i)).filter((c) => c !== ':'));
const userCharArb = fc.constantFrom(
  ...Array.from({ length: 0x100 - 0x20 }, (_, i) => String.fromCharCode(0x20 + i)).filter((c) => c !== ':' && c !== '\x7f'),
);
const replyArb: fc.Arbitrary<Reply> = fc.oneof(
  fc.record({
    kind: fc.constant('token' as const),
    clientPort: portArb,
    serverPort: portArb,
    token: fc.string({ unit: tokenCharArb, minLength: 1, maxLength: 512 }),
  }),
  fc.record({
    kind: fc.constant('user' as const),
    clientPort: portArb,
    serverPort: portArb,
    user: fc.string({ unit: userCharArb, minLength: 1, maxLength: 512 }).filter(isValidUserId),
  }),
  fc.record({
    kind: fc.constant('error' as const),
    clientPort: portArb,
    serverPort: portArb,
    error: fc.oneof(
      fc.constantFrom('INVALID-PORT' as const, 'NO-USER' as const, 'UNKNOWN-ERROR' as const),
      fc.string({ unit: tokenCharArb, minLength: 1, maxLength: 63 }).map((s): `X${string}` => `X${s}`),
    ),
  }),
).map((reply): Reply => ({ ...reply })); // fc.record builds null-prototype objects; deepEqual compares prototypes

const replyCharArb = fc.constantFrom(...'0123456789,: \tUSERIDOTHERUNIXERRORNO-USERxX\0\r\n\u00e9\u0100'.split(''), 'USERID', 'ERROR', 'OTHER');

/** A sent reply as parseReply reads it back: user replies go out with opsys UNIX. */
function asReceived(reply: Reply): ReceivedReply {
  return reply.kind === 'user' ? { ...reply, opsys: 'UNIX' } : reply;
}

function parsesOrRejects(line: string): void {
  try {
    parseReply(line);
  } catch (error: unknown) {
    if (!(error instanceof ReplySyntaxError)) throw error;
  }
}

describe('parseReply properties', () => {
  test('parseReply inverts formatReply', () => {
    fc.assert(
      fc.property(replyArb, (reply) => {
        assert.deepEqual(parseReply(formatReply(reply)), asReceived(reply));
      }),
      { numRuns: 2000 },
    );
  });

  test('parseReply ignores white space around the tokens before the user id', () => {
    const blanks = fc.string({ unit: fc.constantFrom(' ', '\t'), maxLength: 3 });
    fc.assert(
      fc.property(replyArb, fc.array(blanks, { minLength: 8, maxLength: 8 }), (reply, ws) => {
        const line = formatReply(reply);
        const pairEnd = line.indexOf(':');
        const [first, second] = line.slice(0, pairEnd).split(',');
        const after = line.slice(pairEnd + 1);
        const keyword = after.slice(0, after.indexOf(':'));
        const value = after.slice(after.indexOf(':') + 1);
        const [opsys, ...idParts] = value.split(':');
        const body =
          keyword === 'ERROR'
            ? `${ws[4]}${value}${ws[5]}`
            : `${ws[4]}${opsys}${ws[5]}:${ws[6]}${idParts.join(':')}${ws[7]}`;
        const spaced = `${ws[0]}${first}${ws[1]},${ws[2]}${second}${ws[3]}:${ws[1]}${keyword}${ws[2]}:${body}`;
        assert.deepEqual(parseReply(spaced), asReceived(reply));
      }),
      { numRuns: 1000 },
    );
  });

  test('parseReply returns or throws ReplySyntaxError for arbitrary strings', () => {
    fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 80 }), parsesOrRejects), { numRuns: 3000 });
    fc.assert(fc.property(fc.string({ unit: replyCharArb, maxLength: 40 }), parsesOrRejects), { numRuns: 5000 });
  });

  test('formatReply of any parsed reply without HIDDEN-USER parses back the same', () => {
    fc.assert(
      fc.property(fc.string({ unit: replyCharArb, maxLength: 40 }), (line) => {
        let reply;
        try {
          reply = parseReply(line);
        } catch {
          return;
        }
        if (reply.kind === 'error' && reply.error === 'HIDDEN-USER') return;
        if (reply.kind === 'user' && !isValidUserId(reply.user)) return;
        const sent: Reply = reply.kind === 'user' ? { kind: 'user', clientPort: reply.clientPort, serverPort: reply.serverPort, user: reply.user } : (reply as Reply);
        assert.deepEqual(parseReply(formatReply(sent)), asReceived(sent));
      }),
      { numRuns: 5000 },
    );
  });
});
