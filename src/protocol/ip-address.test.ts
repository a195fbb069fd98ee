import assert from 'node:assert/strict';
import { isIP, isIPv4, isIPv6, SocketAddress } from 'node:net';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  addressFamily,
  canonicalizeIpv6,
  formatIpBytes,
  formatIpv6Groups,
  formatRequesterGroup,
  isSameIpAddress,
  normaliseAddress,
  parseIpAddress,
  parseIpBytes,
  parseIpv4Bytes,
  parseIpv6Groups,
} from './ip-address.js';

const v4 = (text: string): Uint8Array => Uint8Array.from(text.split('.').map(Number));
const hex = (bytes: Uint8Array | undefined): string | undefined => (bytes === undefined ? undefined : Buffer.from(bytes).toString('hex'));

/** IPv4-compatible (RFC 4291 section 2.5.5.1, deprecated): `::a.b.c.d`, where inet_ntop switches to dotted text. */
const isV4Compatible = (bytes: Uint8Array): boolean => bytes.length === 16 && bytes.subarray(0, 12).every((b) => b === 0) && (bytes[12] !== 0 || bytes[13] !== 0);

/** Eight 16-bit groups, biased to 0, 1 and 0xffff so that runs, loopback and v4-mapped addresses occur. */
const groupsArbitrary = fc.array(fc.oneof(fc.constant(0), fc.constant(1), fc.constant(0xffff), fc.nat(0xffff)), { minLength: 8, maxLength: 8 });

/** Full uncompressed text of eight groups. */
const joinGroups = (groups: readonly number[]): string => groups.map((g) => g.toString(16)).join(':');


describe('parseIpv4Bytes', () => {
  test('parseIpv4Bytes reads dotted quads', () => {
    assert.deepEqual(parseIpv4Bytes('192.0.2.1'), [192, 0, 2, 1]);
    assert.deepEqual(parseIpv4Bytes('0.0.0.0'), [0, 0, 0, 0]);
    assert.deepEqual(parseIpv4Bytes('255.255.255.255'), [255, 255, 255, 255]);
  });

  test('parseIpv4Bytes rejects bytes over 255, leading zeros and wrong part counts', () => {
    for (const text of ['256.1.1.1', '1.2.3', '1.2.3.4.5', '01.2.3.4', '1.2.3.00', '1..3.4', '1.2.3.4 ', '+1.2.3.4', '0x1.2.3.4', '']) {
      assert.equal(parseIpv4Bytes(text), undefined, text);
    }
  });
});

describe('canonicalizeIpv6', () => {
  test('canonicalizeIpv6 lower-cases and compresses per RFC 5952', () => {
    const cases: [string, string][] = [
      ['2001:DB8:0:0:0:0:0:1', '2001:db8::1'],
      ['2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
      ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // RFC 5952 4.2.3: first of equal runs
      ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1'], // RFC 5952 4.2.3: longest run
      ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // RFC 5952 4.2.2: a single 0 is not compressed
      ['0:0:0:0:0:0:0:0', '::'],
      ['::', '::'],
      ['0:0:0:0:0:0:0:1', '::1'],
      ['1::', '1::'],
      ['1:0:0:0:0:0:0:0', '1::'],
      ['::ffff:1.2.3.4', '::ffff:1.2.3.4'],
      ['::FFFF:0102:0304', '::ffff:1.2.3.4'],
      ['64:ff9b::192.0.2.33', '64:ff9b::c000:221'],
      ['1:2:3:4:5:6:7::', '1:2:3:4:5:6:7:0'],
      ['::2:3:4:5:6:7:8', '0:2:3:4:5:6:7:8'],
    ];
    for (const [input, expected] of cases) assert.equal(canonicalizeIpv6(input), expected, input);
  });

  test('canonicalizeIpv6 rejects invalid text', () => {
    for (const text of [
      '',
      ':',
      ':::',
      '1::2::3',
      '1:2:3:4:5:6:7:8:9',
      '1:2:3:4:5:6:7',
      '1:2:3:4:5:6:7:8::',
      '::1:2:3:4:5:6:7:8',
      '12345::1',
      'g::1',
      'fe80::1%eth0',
      '[::1]',
      ' ::1',
      '1.2.3.4',
      '::1.2.3',
      '::1.2.3.4:5',
      '::256.1.1.1',
      '1:2:3:4:5:6:7:1.2.3.4',
      ':1::2',
      '1::2:',
    ]) {
      assert.equal(canonicalizeIpv6(text), undefined, text);
    }
  });

  test('canonicalizeIpv6 agrees with node:net on what is IPv6', () => {
    const unit = fc.constantFrom(...'0123456789abcdefABCDEF:.'.split(''), '::', 'ffff', '0:0');
    fc.assert(
      fc.property(fc.string({ unit, maxLength: 24 }), (text) => {
        assert.equal(canonicalizeIpv6(text) !== undefined, isIPv6(text), text);
      }),
      { numRuns: 20000 },
    );
  });

  test('formatIpv6Groups prints what the WHATWG URL serialiser prints', () => {
    const group = fc.oneof(fc.constant(0), fc.constant(1), fc.nat(0xffff));
    fc.assert(
      fc.property(fc.array(group, { minLength: 8, maxLength: 8 }), (groups) => {
        fc.pre(!(groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff));
        const expected = new URL(`http://[${groups.map((g) => g.toString(16)).join(':')}]/`).hostname.slice(1, -1);
        assert.equal(formatIpv6Groups(groups), expected);
        assert.deepEqual(parseIpv6Groups(expected), groups);
      }),
      { numRuns: 5000 },
    );
  });
});

describe('parseIpAddress', () => {
  test('parseIpAddress reads IPv4 and IPv6 and maps v4-mapped IPv6 to IPv4', () => {
    assert.deepEqual(parseIpAddress('10.1.2.3'), { family: 4, address: '10.1.2.3' });
    assert.deepEqual(parseIpAddress('2001:DB8::1'), { family: 6, address: '2001:db8::1' });
    assert.deepEqual(parseIpAddress('::ffff:10.1.2.3'), { family: 4, address: '10.1.2.3' });
    assert.deepEqual(parseIpAddress('::ffff:a01:203'), { family: 4, address: '10.1.2.3' });
  });

  test('parseIpAddress rejects host names, brackets and zones', () => {
    for (const text of ['localhost', '[::1]', 'fe80::1%1', '10.1.2.3/8', '']) assert.equal(parseIpAddress(text), undefined, text);
  });

  test('parseIpAddress agrees with node:net on strict IPv4', () => {
    const unit = fc.constantFrom(...'0123456789.'.split(''), '25', '255', '256');
    fc.assert(
      fc.property(fc.string({ unit, maxLength: 16 }), (text) => {
        assert.equal(parseIpAddress(text) !== undefined, isIPv4(text), text);
      }),
      { numRuns: 10000 },
    );
  });

  test('formatRequesterGroup groups IPv4 per address and IPv6 per /64', () => {
    assert.equal(formatRequesterGroup('192.0.2.7'), '192.0.2.7');
    assert.equal(formatRequesterGroup('::ffff:192.0.2.7'), '192.0.2.7');
    assert.equal(formatRequesterGroup('2001:db8:1:2:aaaa::1'), '2001:db8:1:2::/64');
    assert.equal(formatRequesterGroup('2001:DB8:1:2:ffff:ffff:ffff:ffff'), '2001:db8:1:2::/64');
    assert.notEqual(formatRequesterGroup('2001:db8:1:3::1'), formatRequesterGroup('2001:db8:1:2::1'));
    assert.equal(formatRequesterGroup('::1'), '::/64');
    for (const text of ['localhost', '[::1]', '']) assert.equal(formatRequesterGroup(text), undefined, text);
  });
});

describe('parseIpBytes and formatIpBytes', () => {
  test('parseIpBytes reads IPv4 and IPv6 text', () => {
    assert.deepEqual(parseIpBytes('192.0.2.1'), { family: 4, bytes: v4('192.0.2.1') });
    const six = parseIpBytes('2001:db8::1');
    assert.equal(six?.family, 6);
    assert.equal(hex(six?.bytes), '20010db8000000000000000000000001');
    assert.equal(hex(parseIpBytes('::')?.bytes), '0'.repeat(32));
    assert.equal(hex(parseIpBytes('1::')?.bytes), '0001' + '0'.repeat(28));
    assert.equal(hex(parseIpBytes('::2:3')?.bytes), '0'.repeat(24) + '00020003');
    assert.equal(hex(parseIpBytes('1:2:3:4:5:6:7:8')?.bytes), '00010002000300040005000600070008');
  });

  test('parseIpBytes turns v4-mapped IPv6 into IPv4, in dotted and hex forms', () => {
    assert.deepEqual(parseIpBytes('::ffff:127.0.0.1'), { family: 4, bytes: v4('127.0.0.1') });
    assert.deepEqual(parseIpBytes('::FFFF:7f00:1'), { family: 4, bytes: v4('127.0.0.1') });
  });

  test('parseIpBytes ignores an IPv6 zone and rejects non-addresses', () => {
    assert.equal(hex(parseIpBytes('fe80::1%eth0')?.bytes), 'fe80' + '0'.repeat(26) + '01');
    assert.equal(parseIpBytes('localhost'), undefined);
    assert.equal(parseIpBytes('1.2.3.256'), undefined);
    assert.equal(parseIpBytes(''), undefined);
  });

  test('formatIpBytes prints IPv4, and v4-mapped IPv6 as IPv4', () => {
    assert.equal(formatIpBytes(v4('192.0.2.10')), '192.0.2.10');
    assert.equal(formatIpBytes(Buffer.from('00000000000000000000ffff7f000001', 'hex')), '127.0.0.1');
  });

  test('formatIpBytes prints IPv6 exactly as net.SocketAddress does, IPv4-compatible addresses aside', () => {
    // Deterministic pseudo-random words, biased to zero so that runs of every length occur.
    let seed = 12345;
    const next = (): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed;
    };
    const samples = ['::', '::1', '1::', '::2:3', '1:0:0:1:0:0:0:1', '2001:db8:0:0:1:0:0:1', 'fe80::abcd'];
    for (let i = 0; i < 2000; i++) {
      const words = Array.from({ length: 8 }, () => (next() % 3 === 0 ? next() % 0x10000 : 0));
      samples.push(words.map((w) => w.toString(16)).join(':'));
    }
    for (const text of samples) {
      const bytes = parseIpBytes(text)?.bytes;
      assert.ok(bytes, text);
      if (bytes.length === 4) continue; // v4-mapped: deliberately printed as IPv4
      if (isV4Compatible(bytes)) continue; // inet_ntop's `::a.b.c.d`: deliberately hex (RFC 5952 section 5)
      const expected = new SocketAddress({ address: text, family: 'ipv6' }).address;
      assert.equal(formatIpBytes(bytes), expected, text);
    }
  });

  test('formatIpBytes prints an IPv4-compatible address in hex, as every other text form does', () => {
    // The decision of issue 12: RFC 5952 section 5 keeps mixed notation for well-known
    // prefixes; ::/96 is deprecated (RFC 4291 section 2.5.5.1), so it is plain RFC 5952 text.
    const bytes = parseIpBytes('::1.2.3.4')?.bytes;
    assert.equal(hex(bytes), '0'.repeat(24) + '01020304');
    assert.equal(new SocketAddress({ address: '::1.2.3.4', family: 'ipv6' }).address, '::1.2.3.4'); // inet_ntop differs
    assert.equal(formatIpBytes(bytes ?? new Uint8Array()), '::102:304');
    assert.equal(formatIpBytes(parseIpBytes('::0.2.0.3')?.bytes ?? new Uint8Array()), '::2:3');
    assert.equal(normaliseAddress('::1.2.3.4'), '::102:304');
    assert.deepEqual(parseIpAddress('::1.2.3.4'), { family: 6, address: '::102:304' });
    assert.equal(canonicalizeIpv6('::1.2.3.4'), '::102:304');
  });

  test('formatIpBytes refuses lengths other than 4 and 16', () => {
    for (const length of [0, 3, 5, 15, 17]) assert.throws(() => formatIpBytes(new Uint8Array(length)), RangeError, String(length));
  });

  test('parseIpBytes agrees with node:net on what is an IP address', () => {
    const unit = fc.constantFrom(...'0123456789abcdefABCDEF:.'.split(''), '::', 'ffff', '255', '0:0');
    fc.assert(
      fc.property(fc.string({ unit, maxLength: 24 }), (text) => {
        const parsed = parseIpBytes(text);
        assert.equal(parsed !== undefined, isIP(text) !== 0, text);
        if (parsed !== undefined) assert.equal(parsed.bytes.length, parsed.family === 4 ? 4 : 16, text);
      }),
      { numRuns: 20000 },
    );
  });

  test('formatIpBytes of parsed bytes is the normalised text, and parses back to the same bytes', () => {
    fc.assert(
      fc.property(groupsArbitrary, fc.boolean(), (groups, upper) => {
        const text = upper ? joinGroups(groups).toUpperCase() : joinGroups(groups);
        const parsed = parseIpBytes(text);
        assert.ok(parsed, text);
        const formatted = formatIpBytes(parsed.bytes);
        assert.equal(formatted, normaliseAddress(text), text);
        assert.deepEqual(parseIpBytes(formatted), parsed, text);
        assert.equal(addressFamily(formatted), parsed.family, text);
      }),
      { numRuns: 5000 },
    );
  });

  test('isSameIpAddress matches an IPv4-mapped address with its IPv4 address and nothing else', () => {
    const mapped = Uint8Array.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1]);
    assert.equal(isSameIpAddress(mapped, v4('192.0.2.1')), true);
    assert.equal(isSameIpAddress(v4('192.0.2.1'), mapped), true);
    assert.equal(isSameIpAddress(mapped, v4('192.0.2.2')), false);
    const compatible = Uint8Array.from([...new Array<number>(12).fill(0), 192, 0, 2, 1]);
    assert.equal(isSameIpAddress(compatible, v4('192.0.2.1')), false);
    assert.equal(isSameIpAddress(new Uint8Array(16), new Uint8Array(4)), false);
    fc.assert(
      fc.property(groupsArbitrary, groupsArbitrary, (a, b) => {
        const left = parseIpBytes(joinGroups(a))?.bytes ?? new Uint8Array();
        const right = parseIpBytes(joinGroups(b))?.bytes ?? new Uint8Array();
        assert.equal(isSameIpAddress(left, right), formatIpBytes(left) === formatIpBytes(right));
      }),
      { numRuns: 2000 },
    );
  });
});

describe('normaliseAddress and addressFamily', () => {
  /** What src/host/addresses.ts did before issue 12: a regex for v4-mapped text, then the WHATWG URL serialiser. */
  const normaliseByUrl = (address: string): string => {
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
    if (mapped?.[1] !== undefined) return mapped[1];
    return isIPv6(address) ? new URL(`http://[${address}]/`).hostname.slice(1, -1) : address;
  };

  test('normaliseAddress gives IPv4-mapped IPv6 as IPv4 and IPv6 in RFC 5952 form', () => {
    assert.equal(normaliseAddress('::ffff:192.0.2.1'), '192.0.2.1');
    assert.equal(normaliseAddress('::FFFF:192.0.2.1'), '192.0.2.1');
    assert.equal(normaliseAddress('::ffff:c000:201'), '192.0.2.1'); // the hex form too, unlike before
    assert.equal(normaliseAddress('2001:DB8:0:0:0:0:0:1'), '2001:db8::1');
    assert.equal(normaliseAddress('192.0.2.1'), '192.0.2.1');
    assert.equal(normaliseAddress('::1'), '::1');
  });

  test('normaliseAddress returns text that is not an IP address as it is', () => {
    // A zone made the former URL trick throw; a bad dotted quad after ::ffff: was passed on unchecked.
    for (const text of ['localhost', 'fe80::1%eth0', '[::1]', '010.1.1.1', '::ffff:999.1.1.1', '', ' 192.0.2.1']) {
      assert.equal(normaliseAddress(text), text, text);
    }
  });

  test('normaliseAddress agrees with the former WHATWG URL normalisation on IPv6 text', () => {
    fc.assert(
      fc.property(groupsArbitrary, fc.boolean(), (groups, upper) => {
        const canonical = formatIpv6Groups(groups);
        for (const text of [joinGroups(groups), canonical, upper ? canonical.toUpperCase() : canonical]) {
          const isMappedHex = groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff && !text.includes('.');
          // The one deliberate difference: v4-mapped text in hex is IPv4 now, as in dotted form.
          const expected = isMappedHex ? normaliseByUrl(`::ffff:${formatIpBytes(parseIpBytes(text)?.bytes ?? new Uint8Array())}`) : normaliseByUrl(text);
          assert.equal(normaliseAddress(text), expected, text);
        }
      }),
      { numRuns: 5000 },
    );
  });

  test('addressFamily says 4 exactly for dotted IPv4, as node:net does', () => {
    assert.equal(addressFamily('192.0.2.1'), 4);
    assert.equal(addressFamily('2001:db8::1'), 6);
    const unit = fc.constantFrom(...'0123456789.:abf'.split(''), '255', '::');
    fc.assert(
      fc.property(fc.string({ unit, maxLength: 16 }), (text) => {
        assert.equal(addressFamily(text) === 4, isIPv4(text), text);
      }),
      { numRuns: 10000 },
    );
  });
});
