import assert from 'node:assert/strict';
import { isIPv4, isIPv6 } from 'node:net';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { canonicalizeIpv6, formatIpv6Groups, formatRequesterGroup, parseIpAddress, parseIpv4Bytes, parseIpv6Groups } from './ip-address.js';

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
