import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ConntrackError } from '../errors.js';
import { createConntrackTable, explainConntrackFailure, toTrackedFlow } from './conntrack.js';
import type { NativeAddon, RawConntrackEntry } from './native-addon.js';

const isRoot = process.getuid?.() === 0;
const ip = (text: string): Buffer => Buffer.from(text.split('.').map(Number));

const RAW: RawConntrackEntry = {
  family: 4,
  tcpState: 3,
  zone: 0,
  status: 0x10 | 0x8,
  id: 7,
  timeout: 99,
  orig: { src: ip('198.51.100.10'), srcPort: 40000, dst: ip('192.0.2.20'), dstPort: 80 },
  reply: { src: ip('192.0.2.20'), srcPort: 80, dst: ip('192.0.2.1'), dstPort: 50000 },
};

test('toTrackedFlow reads addresses, ports, NAT bits and the TCP state', () => {
  const flow = toTrackedFlow(RAW);
  assert.deepEqual(flow.original.source, { address: '198.51.100.10', port: 40000 });
  assert.deepEqual(flow.reply.destination, { address: '192.0.2.1', port: 50000 });
  assert.equal(flow.sourceNat, true);
  assert.equal(flow.destinationNat, false);
  assert.equal(flow.state, 'ESTABLISHED');
});

test('createConntrackTable asks by reply tuple and explains EPERM', () => {
  const calls: unknown[][] = [];
  const addon = {
    conntrackLookup(...args: unknown[]) {
      calls.push(args);
      if (args[3] === 1) throw Object.assign(new Error('Operation not permitted'), { code: 'EPERM' });
      return args[3] === 80 ? RAW : null;
    },
  } as unknown as NativeAddon;
  const table = createConntrackTable({ addon });
  assert.equal(table.findByReply({ address: '192.0.2.20', port: 80 }, { address: '192.0.2.1', port: 50000 })?.original.source.port, 40000);
  assert.deepEqual(calls[0]?.slice(0, 2), [4, 'reply']);
  assert.equal(table.findByReply({ address: '192.0.2.20', port: 81 }, { address: '192.0.2.1', port: 50000 }), undefined);
  assert.throws(
    () => table.findByReply({ address: '192.0.2.20', port: 1 }, { address: '192.0.2.1', port: 50000 }),
    (error: unknown) => error instanceof ConntrackError && error.code === 'ERR_CONNTRACK' && /CAP_NET_ADMIN/.test(error.message),
  );
  assert.throws(() => table.findByReply({ address: '192.0.2.20', port: 1 }, { address: '2001:db8::1', port: 2 }), ConntrackError);
});

test('createConntrackTable refuses an addon without conntrackLookup with a clear error', () => {
  assert.throws(() => createConntrackTable({ addon: {} as NativeAddon }), /rebuild it/);
});

test('explainConntrackFailure names the missing kernel part', () => {
  assert.match(explainConntrackFailure(Object.assign(new Error('x'), { code: 'EPROTONOSUPPORT' })), /NETLINK_NETFILTER/);
  assert.match(explainConntrackFailure(Object.assign(new Error('x'), { code: 'EOPNOTSUPP' })), /nf_conntrack_netlink/);
});

// The real kernel, in a network namespace of its own (never the machine's table): an entry
// made with conntrack(8) is found by its reply tuple, and without CAP_NET_ADMIN the lookup
// fails with the capability named.
const PROBE = `
import { createConntrackTable } from ${JSON.stringify(fileURLToPath(new URL('./conntrack.js', import.meta.url)))};
try {
  const flow = createConntrackTable().findByReply({ address: '192.0.2.20', port: 80 }, { address: '192.0.2.1', port: 50000 });
  console.log(JSON.stringify({ flow }));
} catch (error) {
  console.log(JSON.stringify({ code: error.code, message: error.message }));
}
`;

test('conntrack lookups in a real network namespace, and the capability they need', { skip: isRoot ? false : 'needs root: a network namespace' }, () => {
  const insert =
    'conntrack -I -p tcp -s 198.51.100.10 -d 192.0.2.20 --sport 40000 --dport 80 -r 192.0.2.20 -q 192.0.2.1 ' +
    '--reply-port-src 80 --reply-port-dst 50000 --state ESTABLISHED -t 100 >/dev/null 2>&1';
  const script = `${insert} && "$0" --input-type=module -e "$1" && setpriv --reuid 65534 --regid 65534 --clear-groups --inh-caps=-all --bounding-set=-all "$0" --input-type=module -e "$1"`;
  const result = spawnSync('unshare', ['--net', 'sh', '-c', script, process.execPath, PROBE], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(result.status, 0, result.stderr);
  const [privileged, unprivileged] = result.stdout.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
  const flow = privileged?.flow as { original: { source: { address: string; port: number } }; state: string } | undefined;
  assert.deepEqual(flow?.original.source, { address: '198.51.100.10', port: 40000 });
  assert.equal(flow?.state, 'ESTABLISHED');
  assert.equal(unprivileged?.code, 'ERR_CONNTRACK');
  assert.match(String(unprivileged?.message), /CAP_NET_ADMIN/);
  // And the machine's own table was never touched.
  assert.doesNotMatch(execFileSync('conntrack', ['-L', '-p', 'tcp', '--orig-src', '198.51.100.10'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }), /sport=40000/);
});
