import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { RequestSyntaxError } from './errors.js';
import { formatRequest, MAX_SID, mentionsClientIp, parseRequest, type Request } from './request.js';

/** Parses a line that must be rejected and returns the error. */
function rejectionOf(line: string): RequestSyntaxError {
  try {
    parseRequest(line);
  } catch (error: unknown) {
    if (error instanceof RequestSyntaxError) return error;
    throw error;
  }
  assert.fail(`expected ${JSON.stringify(line)} to be rejected`);
}

function assertRejected(
  line: string,
  errorToken: 'INVALID-PORT' | 'UNKNOWN-ERROR',
  ports?: { client: number; server: number },
): RequestSyntaxError {
  const error = rejectionOf(line);
  assert.equal(error.errorToken, errorToken, `${JSON.stringify(line)}: ${error.message}`);
  assert.deepEqual(error.ports, ports, `${JSON.stringify(line)}: ports`);
  assert.match(error.message, /^Cannot parse request: /);
  return error;
}

describe('parseRequest RFC 1413 form', () => {
  test('parseRequest reads a bare port pair as an RFC 1413 ID request', () => {
    assert.deepEqual(parseRequest('80,1234'), { type: 'ID', rfc1413: true, clientPort: 80, serverPort: 1234 });
  });

  test('parseRequest accepts spaces and tabs around every token', () => {
    for (const line of ['6191, 23', ' 6191,23', '6191 ,23 ', '\t6191\t,\t23\t', '  6191 \t , \t 23  ']) {
      assert.deepEqual(parseRequest(line), { type: 'ID', rfc1413: true, clientPort: 6191, serverPort: 23 }, line);
    }
  });

  test('parseRequest accepts leading zeros within five digits', () => {
    assert.deepEqual(parseRequest('00080,01234'), { type: 'ID', rfc1413: true, clientPort: 80, serverPort: 1234 });
  });

  test('parseRequest accepts ports 1 and 65535', () => {
    assert.deepEqual(parseRequest('1,65535'), { type: 'ID', rfc1413: true, clientPort: 1, serverPort: 65535 });
  });
});

describe('parseRequest STOP form', () => {
  test('parseRequest reads ID and SV without SID', () => {
    assert.deepEqual(parseRequest('80,1234:ID'), { type: 'ID', rfc1413: false, clientPort: 80, serverPort: 1234 });
    assert.deepEqual(parseRequest('80,1234:SV'), { type: 'SV', rfc1413: false, clientPort: 80, serverPort: 1234 });
  });

  test('parseRequest reads the paper example SV_REC request with its 11-digit SID', () => {
    assert.deepEqual(parseRequest('968, 23 : SV_REC : 92847523456'), {
      type: 'SV_REC',
      rfc1413: false,
      clientPort: 968,
      serverPort: 23,
      sid: 92847523456n,
    });
  });

  test('parseRequest reads the paper example SV_REC request with CL_IP', () => {
    assert.deepEqual(parseRequest('1885, 8000 : SV_REC : 1485730682 : 1.1.1.1'), {
      type: 'SV_REC',
      rfc1413: false,
      clientPort: 1885,
      serverPort: 8000,
      sid: 1485730682n,
      clientIp: { family: 4, address: '1.1.1.1' },
    });
  });

  test('parseRequest accepts spaces and tabs around every STOP token', () => {
    const expected = {
      type: 'ID_REC',
      rfc1413: false,
      clientPort: 80,
      serverPort: 23,
      sid: 7n,
      clientIp: { family: 4, address: '192.0.2.10' },
    };
    assert.deepEqual(parseRequest('\t80\t,\t23\t:\tID_REC\t:\t7\t:\t192.0.2.10\t'), expected);
    assert.deepEqual(parseRequest(' 80 , 23 : ID_REC : 7 : 192.0.2.10 '), expected);
    assert.deepEqual(parseRequest('80,23:ID_REC:7:192.0.2.10'), expected);
  });

  test('parseRequest reads CL_IP on ID and SV', () => {
    assert.deepEqual(parseRequest('80,23:ID:192.0.2.1'), {
      type: 'ID',
      rfc1413: false,
      clientPort: 80,
      serverPort: 23,
      clientIp: { family: 4, address: '192.0.2.1' },
    });
    assert.deepEqual(parseRequest('80,23 : SV : 0.0.0.0'), {
      type: 'SV',
      rfc1413: false,
      clientPort: 80,
      serverPort: 23,
      clientIp: { family: 4, address: '0.0.0.0' },
    });
  });

  test('parseRequest reads bracketed IPv6 CL_IP in canonical lower-case compressed form', () => {
    assert.deepEqual(parseRequest('80,23:SV_REC:1: [2001:DB8:0:0:0:0:0:1] '), {
      type: 'SV_REC',
      rfc1413: false,
      clientPort: 80,
      serverPort: 23,
      sid: 1n,
      clientIp: { family: 6, address: '2001:db8::1' },
    });
  });

  test('parseRequest reads v4-mapped IPv6 CL_IP as the IPv4 address', () => {
    const request = parseRequest('80,23:ID:[::ffff:1.2.3.4]');
    assert.ok(!request.rfc1413);
    assert.deepEqual(request.clientIp, { family: 4, address: '1.2.3.4' });
  });

  test('parseRequest accepts SID 0 and 2^64-1', () => {
    const zero = parseRequest('80,23:ID_REC:0');
    assert.ok(zero.type === 'ID_REC');
    assert.equal(zero.sid, 0n);
    const max = parseRequest('80,23:SV_REC:18446744073709551615');
    assert.ok(max.type === 'SV_REC');
    assert.equal(max.sid, MAX_SID);
  });

  test('parseRequest accepts a SID with leading zeros up to 20 digits', () => {
    const request = parseRequest('80,23:ID_REC:00000000000000000042');
    assert.ok(request.type === 'ID_REC');
    assert.equal(request.sid, 42n);
  });
});

describe('parseRequest port errors', () => {
  test('parseRequest rejects port 0 with INVALID-PORT and echoes the pair', () => {
    assertRejected('0,23', 'INVALID-PORT', { client: 0, server: 23 });
    assertRejected('80,0', 'INVALID-PORT', { client: 80, server: 0 });
    assertRejected('0,23:SV_REC:5', 'INVALID-PORT', { client: 0, server: 23 });
  });

  test('parseRequest rejects port 65536 with INVALID-PORT', () => {
    assertRejected('80,65536', 'INVALID-PORT', { client: 80, server: 65536 });
  });

  test('parseRequest says which port is out of range', () => {
    const error = assertRejected('70000,23', 'INVALID-PORT', { client: 70000, server: 23 });
    assert.equal(error.message, 'Cannot parse request: port 70000 is out of range');
  });

  test('parseRequest rejects port -1 with INVALID-PORT', () => {
    assertRejected('-1,23', 'INVALID-PORT');
    assertRejected('80,-1', 'INVALID-PORT');
  });

  test('parseRequest rejects port 1.5 with INVALID-PORT', () => {
    assertRejected('1.5,23', 'INVALID-PORT');
  });

  test('parseRequest rejects an empty port with INVALID-PORT', () => {
    assertRejected(',23', 'INVALID-PORT');
    assertRejected('80,', 'INVALID-PORT');
    assertRejected(' , ', 'INVALID-PORT');
    assertRejected('80, :ID', 'INVALID-PORT');
  });

  test('parseRequest rejects a six-digit port with INVALID-PORT', () => {
    assertRejected('000080,23', 'INVALID-PORT');
    assertRejected('80,100000', 'INVALID-PORT');
  });

  test('parseRequest rejects ports in hex, with a sign or glued to text with INVALID-PORT', () => {
    for (const line of ['0x50,23', '+80,23', '80,23x', '80,23,24', 'a,b']) assertRejected(line, 'INVALID-PORT');
  });
});

describe('parseRequest other errors', () => {
  test('parseRequest rejects an empty or blank line with UNKNOWN-ERROR', () => {
    assertRejected('', 'UNKNOWN-ERROR');
    assertRejected(' \t ', 'UNKNOWN-ERROR');
  });

  test('parseRequest rejects a line without a port pair with UNKNOWN-ERROR', () => {
    assertRejected('hello', 'UNKNOWN-ERROR');
    assertRejected('80', 'UNKNOWN-ERROR');
    assertRejected('80:ID', 'UNKNOWN-ERROR');
  });

  test('parseRequest rejects trailing garbage with UNKNOWN-ERROR and echoes the ports', () => {
    const ports = { client: 80, server: 23 };
    for (const line of [
      '80,23 x',
      '80 x,23',
      '80,23:ID x',
      '80,23:ID:1.2.3.4 x',
      '80,23:ID:1.2.3.4:',
      '80,23:ID:1.2.3.4:x',
      '80,23:SV_REC:5 6',
      '80,23:SV_REC:5:1.2.3.4:9',
      '80,23:SV_REC:5:[::1]x',
      '80,23:SV_REC:5:[::1] [::2]',
      '80,23:ID:',
    ]) {
      assertRejected(line, 'UNKNOWN-ERROR', ports);
    }
  });

  test('parseRequest rejects unknown and lower-case request types with UNKNOWN-ERROR', () => {
    const ports = { client: 80, server: 23 };
    for (const line of ['80,23:', '80,23: ', '80,23:id', '80,23:Sv', '80,23:FOO', '80,23:I D', '80,23:USERID', '80,23::ID']) {
      assertRejected(line, 'UNKNOWN-ERROR', ports);
    }
  });

  test('parseRequest rejects _REC types without a SID', () => {
    const ports = { client: 80, server: 23 };
    for (const line of ['80,23:ID_REC', '80,23:SV_REC', '80,23:ID_REC:', '80,23:SV_REC: :1.2.3.4']) {
      assertRejected(line, 'UNKNOWN-ERROR', ports);
    }
  });

  test('parseRequest rejects a SID on ID and SV', () => {
    const ports = { client: 80, server: 23 };
    assert.match(assertRejected('80,23:ID:42', 'UNKNOWN-ERROR', ports).message, /ID takes no session identifier/);
    assertRejected('80,23:SV:42:1.2.3.4', 'UNKNOWN-ERROR', ports);
  });

  test('parseRequest rejects SIDs out of range or not plain decimal', () => {
    const ports = { client: 80, server: 23 };
    for (const sid of ['18446744073709551616', '99999999999999999999', '000000000000000000001', '-1', '+1', '0x10', '1e3', '1.0', 'abc']) {
      assertRejected(`80,23:ID_REC:${sid}`, 'UNKNOWN-ERROR', ports);
    }
  });

  test('parseRequest rejects invalid CL_IP', () => {
    const ports = { client: 80, server: 23 };
    for (const ip of [
      '256.1.1.1',
      '1.2.3',
      '1.2.3.4.5',
      '01.2.3.4',
      '1.2.3.-4',
      '2001:db8::1',
      '::1',
      '[1.2.3.4]',
      '[2001:db8::g]',
      '[1::2::3]',
      '[fe80::1%eth0]',
      '[ ::1 ]',
      '[::1',
      '::1]',
      '[]',
      'localhost',
    ]) {
      assertRejected(`80,23:SV_REC:5:${ip}`, 'UNKNOWN-ERROR', ports);
      assertRejected(`80,23:ID:${ip}`, 'UNKNOWN-ERROR', ports);
    }
  });

  test('parseRequest rejects control and non-ASCII characters with UNKNOWN-ERROR', () => {
    const ports = { client: 80, server: 23 };
    // After the port pair, the pair is echoed; inside it, there is no pair to echo.
    for (const line of ['80,23:ID\x0b', '80,23:ID\r', '80,23 :\n', '80,23:ID:1.2.3.4\u00e9', '80,23:\x7f', '80,23:SV\u2028']) {
      assertRejected(line, 'UNKNOWN-ERROR', ports);
    }
    for (const line of ['80,23\0', '80,23\n', '8\u00e90,23', '80\r,23:ID']) assertRejected(line, 'UNKNOWN-ERROR');
  });

  test('parseRequest quotes and truncates untrusted text in messages', () => {
    const error = rejectionOf(`80,23:${'A'.repeat(400)}`);
    assert.ok(error.message.length < 100, error.message);
    assert.match(error.message, /"A+"\.\.\./);
  });
});

describe('formatRequest', () => {
  test('formatRequest writes no white space and no EOL', () => {
    assert.equal(formatRequest({ type: 'ID', rfc1413: true, clientPort: 80, serverPort: 1234 }), '80,1234');
    assert.equal(formatRequest({ type: 'SV', rfc1413: false, clientPort: 80, serverPort: 1234 }), '80,1234:SV');
    assert.equal(
      formatRequest({
        type: 'SV_REC',
        rfc1413: false,
        clientPort: 1885,
        serverPort: 8000,
        sid: 1485730682n,
        clientIp: { family: 4, address: '1.1.1.1' },
      }),
      '1885,8000:SV_REC:1485730682:1.1.1.1',
    );
  });

  test('formatRequest brackets IPv6 CL_IP in canonical form', () => {
    assert.equal(
      formatRequest({ type: 'ID', rfc1413: false, clientPort: 1, serverPort: 2, clientIp: { family: 6, address: '2001:DB8:0::1' } }),
      '1,2:ID:[2001:db8::1]',
    );
  });

  test('formatRequest throws RangeError on invalid fields', () => {
    const base = { rfc1413: false as const, clientPort: 80, serverPort: 23 };
    assert.throws(() => formatRequest({ ...base, type: 'ID', clientPort: 0 }), RangeError);
    assert.throws(() => formatRequest({ ...base, type: 'ID', serverPort: 65536 }), RangeError);
    assert.throws(() => formatRequest({ ...base, type: 'ID', clientPort: 1.5 }), RangeError);
    assert.throws(() => formatRequest({ ...base, type: 'ID_REC', sid: -1n }), RangeError);
    assert.throws(() => formatRequest({ ...base, type: 'ID_REC', sid: MAX_SID + 1n }), RangeError);
    assert.throws(() => formatRequest({ ...base, type: 'ID', clientIp: { family: 4, address: '256.0.0.1' } }), RangeError);
    assert.throws(() => formatRequest({ ...base, type: 'ID', clientIp: { family: 4, address: '::1' } }), RangeError);
    assert.throws(() => formatRequest({ ...base, type: 'FOO' } as unknown as Request), RangeError);
  });
});

// --- property tests ---

const portArb = fc.integer({ min: 1, max: 65535 });
const ipv4Arb = fc
  .tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255))
  .map((bytes) => ({ family: 4 as const, address: bytes.join('.') }));
/** Canonical IPv6 text per URL serialisation (RFC 5952 compression), never v4-mapped. */
const ipv6Arb = fc
  .array(fc.oneof(fc.constant(0), fc.nat(0xffff)), { minLength: 8, maxLength: 8 })
  .filter((groups) => !(groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff))
  .map((groups) => {
    const text = groups.map((g) => g.toString(16)).join(':');
    return { family: 6 as const, address: new URL(`http://[${text}]/`).hostname.slice(1, -1) };
  });
const clientIpArb = fc.option(fc.oneof(ipv4Arb, ipv6Arb), { nil: undefined });

const requestArb: fc.Arbitrary<Request> = fc.oneof(
  fc.record({ clientPort: portArb, serverPort: portArb }).map(
    (r): Request => ({ type: 'ID', rfc1413: true, ...r }),
  ),
  fc
    .record({ type: fc.constantFrom('ID' as const, 'SV' as const), clientPort: portArb, serverPort: portArb, clientIp: clientIpArb })
    .map(({ clientIp, ...r }): Request => (clientIp === undefined ? { ...r, rfc1413: false } : { ...r, rfc1413: false, clientIp })),
  fc
    .record({
      type: fc.constantFrom('ID_REC' as const, 'SV_REC' as const),
      clientPort: portArb,
      serverPort: portArb,
      sid: fc.bigInt({ min: 0n, max: MAX_SID }),
      clientIp: clientIpArb,
    })
    .map(({ clientIp, ...r }): Request => (clientIp === undefined ? { ...r, rfc1413: false } : { ...r, rfc1413: false, clientIp })),
);

const blanksArb = fc.string({ unit: fc.constantFrom(' ', '\t'), maxLength: 3 });

/** Characters the grammar cares about, so random lines reach deep into the parser. */
const protocolCharArb = fc.constantFrom(
  ...'0123456789,:[]. \t-+IDSVREC_xXabcdefABCDEF%\r\n\0\u00e9'.split(''),
);

/** Calls parseRequest and fails the property on anything but a request or RequestSyntaxError. */
function parsesOrRejects(line: string): void {
  try {
    parseRequest(line);
  } catch (error: unknown) {
    if (!(error instanceof RequestSyntaxError)) throw error;
    assert.ok(error.errorToken === 'INVALID-PORT' || error.errorToken === 'UNKNOWN-ERROR');
    if (error.ports !== undefined) {
      assert.ok(Number.isInteger(error.ports.client) && error.ports.client >= 0 && error.ports.client <= 99999);
      assert.ok(Number.isInteger(error.ports.server) && error.ports.server >= 0 && error.ports.server <= 99999);
    }
  }
}

describe('parseRequest properties', () => {
  test('parseRequest inverts formatRequest', () => {
    fc.assert(
      fc.property(requestArb, (request) => {
        assert.deepEqual(parseRequest(formatRequest(request)), request);
      }),
      { numRuns: 2000 },
    );
  });

  test('parseRequest ignores spaces and tabs inserted around every token', () => {
    fc.assert(
      fc.property(requestArb, fc.array(blanksArb, { minLength: 20, maxLength: 20 }), (request, blanks) => {
        // Tokens of the canonical line: split at the separators, keeping brackets whole.
        const line = formatRequest(request);
        const tokens = line.match(/\[[^\]]*\]|[^,:]+|[,:]/g) ?? [];
        const spaced = tokens.map((token, i) => `${blanks[i] ?? ''}${token}`).join('') + (blanks[19] ?? '');
        assert.deepEqual(parseRequest(spaced), request);
      }),
      { numRuns: 1000 },
    );
  });

  test('parseRequest returns or throws RequestSyntaxError for arbitrary strings', () => {
    fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 80 }), parsesOrRejects), { numRuns: 3000 });
    fc.assert(fc.property(fc.string({ unit: protocolCharArb, maxLength: 60 }), parsesOrRejects), { numRuns: 5000 });
  });

  test('parseRequest returns or throws RequestSyntaxError for mutated valid lines', () => {
    fc.assert(
      fc.property(requestArb, fc.nat(), fc.nat(3), protocolCharArb, (request, at, op, ch) => {
        const line = formatRequest(request);
        const i = at % (line.length + 1);
        const mutated =
          op === 0 ? line.slice(0, i) + ch + line.slice(i) : op === 1 ? line.slice(0, i) + line.slice(i + 1) : op === 2 ? line.slice(0, i) : line.slice(i);
        parsesOrRejects(mutated);
      }),
      { numRuns: 5000 },
    );
  });

  test('formatRequest of any parsed line parses back to the same request', () => {
    fc.assert(
      fc.property(fc.string({ unit: protocolCharArb, maxLength: 60 }), (line) => {
        let request: Request;
        try {
          request = parseRequest(line);
        } catch {
          return;
        }
        assert.deepEqual(parseRequest(formatRequest(request)), request);
      }),
      { numRuns: 5000 },
    );
  });
});

test('mentionsClientIp finds a CL_IP field in lines that do not parse', () => {
  assert.equal(mentionsClientIp('0,5:ID:192.0.2.1'), true);
  assert.equal(mentionsClientIp('70000,5:ID:[2001:db8::1]'), true);
  assert.equal(mentionsClientIp('5,6:SV_REC:99999999999999999999: 192.0.2.1 '), true);
  assert.equal(mentionsClientIp('0,5'), false);
  assert.equal(mentionsClientIp('0,5:ID'), false);
  assert.equal(mentionsClientIp('0,5:ID:2001:db8::1'), false);
  assert.equal(mentionsClientIp('0,5:ID:256.1.1.1'), false);
});
