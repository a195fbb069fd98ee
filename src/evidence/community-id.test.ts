import { test } from 'node:test';
import assert from 'node:assert/strict';
import { describeCommunityId, formatCommunityId } from './community-id.js';

interface Vector {
  readonly proto: number;
  readonly saddr: string;
  readonly daddr: string;
  readonly sport: number | null;
  readonly dport: number | null;
  readonly communityid: string;
}

// Test vectors published by corelight/community-id-spec: baseline/baseline_deflt.json,
// baseline_seed1.json and baseline_nob64.json (community-id-pcap over pcaps/combined.pcap.gz,
// with the defaults, --seed 1 and --no-base64), every flow but ICMP; and the TCP, UDP, SCTP
// and RSVP rows of the "Default settings" table of baseline/README.md.
const DEFAULT_VECTORS: readonly Vector[] = [
  { proto: 6, saddr: '2001:470:e5bf:dead:4957:2174:e82c:4887', daddr: '2607:f8b0:400c:c03::1a', sport: 63943, dport: 25, communityid: '1:/qFaeAR+gFe1KYjMzVDsMv+wgU4=' },
  { proto: 6, saddr: '2607:f8b0:400c:c03::1a', daddr: '2001:470:e5bf:dead:4957:2174:e82c:4887', sport: 25, dport: 63943, communityid: '1:/qFaeAR+gFe1KYjMzVDsMv+wgU4=' },
  { proto: 132, saddr: '192.168.170.8', daddr: '192.168.170.56', sport: 7, dport: 7, communityid: '1:MP2EtRCAUIZvTw6MxJHLV7N7JDs=' },
  { proto: 132, saddr: '192.168.170.56', daddr: '192.168.170.8', sport: 7, dport: 7, communityid: '1:MP2EtRCAUIZvTw6MxJHLV7N7JDs=' },
  { proto: 6, saddr: '128.232.110.120', daddr: '66.35.250.204', sport: 34855, dport: 80, communityid: '1:LQU9qZlK+B5F3KDmev6m5PMibrg=' },
  { proto: 6, saddr: '66.35.250.204', daddr: '128.232.110.120', sport: 80, dport: 34855, communityid: '1:LQU9qZlK+B5F3KDmev6m5PMibrg=' },
  { proto: 17, saddr: '192.168.1.52', daddr: '8.8.8.8', sport: 54585, dport: 53, communityid: '1:d/FP5EW3wiY1vCndhwleRRKHowQ=' },
  { proto: 17, saddr: '8.8.8.8', daddr: '192.168.1.52', sport: 53, dport: 54585, communityid: '1:d/FP5EW3wiY1vCndhwleRRKHowQ=' },
  { proto: 46, saddr: '10.1.12.1', daddr: '10.1.12.2', sport: null, dport: null, communityid: '1:KHlLkgoJW7ifUTyTSgyVfkFHzKw=' },
  { proto: 46, saddr: '10.1.12.2', daddr: '10.1.12.1', sport: null, dport: null, communityid: '1:KHlLkgoJW7ifUTyTSgyVfkFHzKw=' },
  // baseline/README.md, "Default settings".
  { proto: 6, saddr: '1.2.3.4', daddr: '5.6.7.8', sport: 1122, dport: 3344, communityid: '1:wCb3OG7yAFWelaUydu0D+125CLM=' },
  { proto: 6, saddr: '5.6.7.8', daddr: '1.2.3.4', sport: 3344, dport: 1122, communityid: '1:wCb3OG7yAFWelaUydu0D+125CLM=' },
  { proto: 17, saddr: '1.2.3.4', daddr: '5.6.7.8', sport: 1122, dport: 3344, communityid: '1:0Mu9InQx6z4ZiCZM/7HXi2WMhOg=' },
  { proto: 132, saddr: '1.2.3.4', daddr: '5.6.7.8', sport: 1122, dport: 3344, communityid: '1:EKt4MsxuyaE6mL+hmrEkQ9csDD8=' },
  { proto: 46, saddr: 'fe80:0001:0203:0405:0607:0809:0A0B:0C0D', daddr: 'fe80:1011:1213:1415:1617:1819:1A1B:1C1D', sport: null, dport: null, communityid: '1:wQ/2mwrnXP4lmJcHdGL5ePjR+e0=' },
];

const SEED1_VECTORS: readonly Vector[] = [
  { proto: 6, saddr: '2001:470:e5bf:dead:4957:2174:e82c:4887', daddr: '2607:f8b0:400c:c03::1a', sport: 63943, dport: 25, communityid: '1:eJYTW6AOzFLlSUoESovMjnu7rMw=' },
  { proto: 6, saddr: '2607:f8b0:400c:c03::1a', daddr: '2001:470:e5bf:dead:4957:2174:e82c:4887', sport: 25, dport: 63943, communityid: '1:eJYTW6AOzFLlSUoESovMjnu7rMw=' },
  { proto: 132, saddr: '192.168.170.8', daddr: '192.168.170.56', sport: 7, dport: 7, communityid: '1:5w3ZRjeKBzqT3zsaEECDGjUbYeg=' },
  { proto: 6, saddr: '128.232.110.120', daddr: '66.35.250.204', sport: 34855, dport: 80, communityid: '1:3V71V58M3Ksw/yuFALMcW0LAHvc=' },
  { proto: 6, saddr: '66.35.250.204', daddr: '128.232.110.120', sport: 80, dport: 34855, communityid: '1:3V71V58M3Ksw/yuFALMcW0LAHvc=' },
  { proto: 17, saddr: '192.168.1.52', daddr: '8.8.8.8', sport: 54585, dport: 53, communityid: '1:Q9We8WO3piVF8yEQBNJF4uiSVrI=' },
  { proto: 46, saddr: '10.1.12.2', daddr: '10.1.12.1', sport: null, dport: null, communityid: '1:rYir8gphR31noO9iDRQmF/BteEI=' },
];

const HEX_VECTORS: readonly Vector[] = [
  { proto: 6, saddr: '2001:470:e5bf:dead:4957:2174:e82c:4887', daddr: '2607:f8b0:400c:c03::1a', sport: 63943, dport: 25, communityid: '1:fea15a78047e8057b52988cccd50ec32ffb0814e' },
  { proto: 132, saddr: '192.168.170.56', daddr: '192.168.170.8', sport: 7, dport: 7, communityid: '1:30fd84b5108050866f4f0e8cc491cb57b37b243b' },
  { proto: 6, saddr: '66.35.250.204', daddr: '128.232.110.120', sport: 80, dport: 34855, communityid: '1:2d053da9994af81e45dca0e67afea6e4f3226eb8' },
  { proto: 17, saddr: '192.168.1.52', daddr: '8.8.8.8', sport: 54585, dport: 53, communityid: '1:77f14fe445b7c22635bc29dd87095e451287a304' },
  { proto: 46, saddr: '10.1.12.1', daddr: '10.1.12.2', sport: null, dport: null, communityid: '1:28794b920a095bb89f513c934a0c957e4147ccac' },
];

function compute(vector: Vector, options: { seed?: number; base64?: boolean } = {}): string {
  return formatCommunityId({ address: vector.saddr, port: vector.sport }, { address: vector.daddr, port: vector.dport }, { protocol: vector.proto, ...options });
}

test('formatCommunityId matches the spec test vectors with the default seed', () => {
  for (const vector of DEFAULT_VECTORS) assert.equal(compute(vector), vector.communityid, JSON.stringify(vector));
});

test('formatCommunityId matches the spec test vectors with seed 1', () => {
  for (const vector of SEED1_VECTORS) assert.equal(compute(vector, { seed: 1 }), vector.communityid, JSON.stringify(vector));
});

test('formatCommunityId matches the spec test vectors without base64 (hex digest)', () => {
  for (const vector of HEX_VECTORS) assert.equal(compute(vector, { base64: false }), vector.communityid, JSON.stringify(vector));
});

test('formatCommunityId defaults to TCP and treats IPv4-mapped IPv6 as IPv4', () => {
  const expected = '1:wCb3OG7yAFWelaUydu0D+125CLM=';
  assert.equal(formatCommunityId({ address: '1.2.3.4', port: 1122 }, { address: '5.6.7.8', port: 3344 }), expected);
  assert.equal(formatCommunityId({ address: '::ffff:1.2.3.4', port: 1122 }, { address: '::ffff:5.6.7.8', port: 3344 }), expected);
});

test('formatCommunityId orders equal addresses by port', () => {
  const a = formatCommunityId({ address: '127.0.0.1', port: 40000 }, { address: '127.0.0.1', port: 22 });
  const b = formatCommunityId({ address: '127.0.0.1', port: 22 }, { address: '127.0.0.1', port: 40000 });
  assert.equal(a, b);
  assert.notEqual(a, formatCommunityId({ address: '127.0.0.1', port: 22 }, { address: '127.0.0.1', port: 40001 }));
});

test('formatCommunityId rejects what it cannot hash, with a clear RangeError', () => {
  const ok = { address: '192.0.2.1', port: 1 };
  assert.throws(() => formatCommunityId({ address: 'host.example', port: 1 }, ok), /^RangeError: Cannot compute Community ID: "host\.example" is not an IP address$/);
  assert.throws(() => formatCommunityId({ address: '2001:db8::1', port: 1 }, ok), /different address families/);
  assert.throws(() => formatCommunityId({ address: '192.0.2.2', port: 70000 }, ok), /port 70000 is not 0\.\.65535/);
  assert.throws(() => formatCommunityId({ address: '192.0.2.2', port: null }, ok), /port null is not/);
  assert.throws(() => formatCommunityId(ok, ok, { protocol: 1 }), /ICMP \(protocol 1\) is not supported/);
  assert.throws(() => formatCommunityId(ok, ok, { seed: 65536 }), /seed 65536 is not 0\.\.65535/);
});

test('describeCommunityId gives a connection its ID, or null for endpoints that are not addresses', () => {
  assert.equal(describeCommunityId({ local: { address: '5.6.7.8', port: 3344 }, remote: { address: '1.2.3.4', port: 1122 } }), '1:wCb3OG7yAFWelaUydu0D+125CLM=');
  assert.equal(describeCommunityId({ local: { address: 'nowhere', port: 1 }, remote: { address: '1.2.3.4', port: 1122 } }), null);
});
