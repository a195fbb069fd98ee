import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { decodeRecorderRecords, findRecorderObject, isRingRecordsPerCpu, parseCpuList, RECORD_BYTES } from './connection-recorder.js';
import { findPackageRoot } from './native-addon.js';

/** One record laid out as `struct record` of native/bpf/connection-recorder.bpf.c. */
function record(fields: { kind: number; family: 4 | 6; established?: bigint; local: number[]; remote: number[] }): Buffer {
  const r = Buffer.alloc(RECORD_BYTES);
  r.writeUInt8(fields.kind, 0);
  r.writeUInt8(fields.family, 1);
  r.writeUInt16LE(40000, 2);
  r.writeUInt16LE(22, 4);
  [101, 100, 1000, 1001, 4242, 7].forEach((v, i) => r.writeUInt32LE(v, 8 + 4 * i));
  r.writeUInt32LE(4026531840, 32);
  r.writeBigUInt64LE(0xffff888100de65c0n, 40);
  r.writeBigUInt64LE(5_000_000_000n, 48);
  r.writeBigUInt64LE(fields.established ?? 0n, 56);
  r.writeBigUInt64LE(9_000_000_000n, 64);
  Buffer.from(fields.local).copy(r, 72);
  Buffer.from(fields.remote).copy(r, 88);
  r.write('ssh', 104);
  return r;
}

describe('decodeRecorderRecords', () => {
  test('decodes open and close records, with kernel times made epoch milliseconds', () => {
    const v4 = record({ kind: 1, family: 4, established: 5_500_000_000n, local: [192, 0, 2, 1], remote: [198, 51, 100, 7] });
    const v6 = record({ kind: 2, family: 6, local: [0x20, 0x01, 0x0d, 0xb8, ...Array<number>(11).fill(0), 1], remote: [...Array<number>(15).fill(0), 1] });
    const [open, close] = decodeRecorderRecords(Buffer.concat([v4, v6]), 1_000_000);
    assert.deepEqual(open, {
      kind: 'open',
      socket: 'ffff888100de65c0',
      connectedAt: 1_005_000,
      establishedAt: 1_005_500,
      tid: 101,
      pid: 100,
      uid: 1000,
      gid: 1001,
      loginuid: 4242,
      sessionid: 7,
      comm: 'ssh',
      netns: 4026531840,
      local: { address: '192.0.2.1', port: 40000 },
      remote: { address: '198.51.100.7', port: 22 },
    });
    assert.deepEqual(close, {
      kind: 'close',
      socket: 'ffff888100de65c0',
      closedAt: 1_009_000,
      netns: 4026531840,
      local: { address: '2001:db8::1', port: 40000 },
      remote: { address: '::1', port: 22 },
    });
  });

  test('a failed connect has establishedAt null; a v4-mapped address reads as IPv4', () => {
    const mapped = [...Array<number>(10).fill(0), 0xff, 0xff, 192, 0, 2, 9];
    const [open] = decodeRecorderRecords(record({ kind: 1, family: 6, local: mapped, remote: mapped }), 0);
    assert.equal(open?.kind === 'open' && open.establishedAt, null);
    assert.equal(open?.kind === 'open' && open.remote.address, '192.0.2.9');
  });

  test('the string caches never hand one value to another: same low word, same hash, same bytes elsewhere', () => {
    // Decoding keeps addresses, command names and socket pointers in caches keyed by 32 bits:
    // values that collide on the key must still decode to themselves.
    const first = record({ kind: 1, family: 4, local: [192, 0, 2, 1], remote: [198, 51, 100, 7] });
    const second = record({ kind: 2, family: 4, local: [198, 51, 100, 7], remote: [192, 0, 2, 1] });
    second.writeBigUInt64LE(0xffff888200de65c0n, 40); // the same low word, another high word
    second.fill(0, 104, 120);
    // "abcd" and "ABCD@@@@" have the same cache key (w0 ^ rotl(w1, 7) ^ ...): 'ABCD' is 'abcd'
    // xor 0x20202020, which is '@@@@' rotated left by 7 bits.
    second.write('abcd', 104);
    const third = Buffer.from(second);
    third.fill(0, 104, 120);
    third.write('ABCD@@@@', 104);
    third.writeUInt8(1, 0);
    const [a, b, c] = decodeRecorderRecords(Buffer.concat([first, first, second, third]), 0).filter((_, i) => i !== 1);
    assert.equal(a?.kind === 'open' && a.socket, 'ffff888100de65c0');
    assert.equal(b?.kind === 'close' && b.socket, 'ffff888200de65c0');
    assert.equal(c?.kind === 'open' && c.comm, 'ABCD@@@@');
    assert.equal(b?.kind === 'close' && `${b.local.address} ${b.remote.address}`, '198.51.100.7 192.0.2.1');
    const [again] = decodeRecorderRecords(Buffer.from(second).fill(1, 0, 1), 0);
    assert.equal(again?.kind === 'open' && again.comm, 'abcd');
  });

  test('IPv6 addresses decode to themselves, cached or not', () => {
    const v6 = (local: number[], remote: number[]): Buffer => record({ kind: 1, family: 6, local, remote });
    const a = [0x20, 0x01, 0x0d, 0xb8, ...Array<number>(11).fill(0), 1];
    const b = [0x20, 0x01, 0x0d, 0xb8, ...Array<number>(11).fill(0), 2];
    const events = decodeRecorderRecords(Buffer.concat([v6(a, b), v6(b, a), v6(a, b)]), 0);
    assert.deepEqual(
      events.map((e) => (e.kind === 'open' ? `${e.local.address} ${e.remote.address}` : '')),
      ['2001:db8::1 2001:db8::2', '2001:db8::2 2001:db8::1', '2001:db8::1 2001:db8::2'],
    );
  });

  test('decodes records wherever they start in memory (a pooled Buffer is not word-aligned)', () => {
    const one = record({ kind: 1, family: 4, local: [192, 0, 2, 1], remote: [198, 51, 100, 7] });
    const shifted = Buffer.alloc(RECORD_BYTES + 1);
    one.copy(shifted, 1);
    assert.deepEqual(decodeRecorderRecords(shifted.subarray(1), 0), decodeRecorderRecords(one, 0));
  });

  test('a command name of 16 bytes has no NUL and is read whole', () => {
    const full = record({ kind: 1, family: 4, local: [192, 0, 2, 1], remote: [198, 51, 100, 7] });
    full.write('abcdefghijklmnop', 104);
    const [open] = decodeRecorderRecords(full, 0);
    assert.equal(open?.kind === 'open' && open.comm, 'abcdefghijklmnop');
  });

  test('refuses a truncated batch or an unknown kind rather than guess', () => {
    assert.throws(() => decodeRecorderRecords(Buffer.alloc(RECORD_BYTES + 1), 0), /not a multiple of 120/);
    assert.throws(() => decodeRecorderRecords(record({ kind: 9, family: 4, local: [], remote: [] }), 0), /unknown kind 9/);
  });
});

/** The clang that built the shipped object, from its .comment section ("Debian clang version 14.0.6"). */
function builtWith(object: Buffer): string | undefined {
  return /[\w ]*clang version [^\0(]+/.exec(object.toString('latin1'))?.[0].trim();
}

const clang = spawnSync('clang', ['--version'], { encoding: 'utf8' });
const clangVersion = clang.error === undefined && clang.status === 0 ? /[\w ]*clang version \S+/.exec(clang.stdout)?.[0].trim() : undefined;
const hasHeaders = spawnSync('sh', ['-c', 'test -f /usr/include/bpf/bpf_helpers.h']).status === 0;

describe('the shipped BPF objects', () => {
  const root = findPackageRoot();
  const objects = ['connection-recorder.bpf.o', 'run-tracker.bpf.o'];

  test('are shipped, the recorder\'s where the recorder looks for it', () => {
    assert.ok(root !== undefined);
    assert.equal(findRecorderObject(), join(root, 'native', 'bpf', 'connection-recorder.bpf.o'));
    for (const name of objects) assert.ok(readFileSync(join(root, 'native', 'bpf', name)).length > 0, name);
  });

  test('match their sources: rebuilt with clang, the bytes are the same', { skip: clangVersion === undefined || !hasHeaders ? 'needs clang and libbpf-dev (CI installs them)' : false }, (t) => {
    assert.ok(root !== undefined);
    const shipped = objects.map((name) => ({ name, bytes: readFileSync(join(root, 'native', 'bpf', name)) }));
    const other = shipped.find(({ bytes }) => builtWith(bytes) !== clangVersion);
    if (other !== undefined) {
      t.skip(`${other.name} was built with ${builtWith(other.bytes) ?? 'an unknown clang'}, this machine has ${clangVersion}: clang's output is only byte-stable within one version`);
      return;
    }
    const dir = mkdtempSync(join(tmpdir(), 'stopd-bpf-'));
    try {
      const build = spawnSync(process.execPath, [join(root, 'scripts', 'build-bpf.mjs'), '--out-dir', dir], { encoding: 'utf8' });
      assert.equal(build.status, 0, build.stderr);
      for (const { name, bytes } of shipped) {
        assert.ok(readFileSync(join(dir, name)).equals(bytes), `the shipped ${name} is not what its source builds to: run npm run build-bpf and commit it`);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

test('parseCpuList reads kernel CPU lists (ranges, single CPUs, a trailing newline, nothing)', () => {
  assert.deepEqual(parseCpuList('0-3,8-11\n'), [0, 1, 2, 3, 8, 9, 10, 11]);
  assert.deepEqual(parseCpuList('0'), [0]);
  assert.deepEqual(parseCpuList(''), []);
});

test('isRingRecordsPerCpu takes powers of two from 64 to 1048576 only', () => {
  for (const good of [64, 4096, 1 << 20]) assert.ok(isRingRecordsPerCpu(good), String(good));
  for (const bad of [0, 32, 1000, 2 ** 21, 64.5, Number.NaN]) assert.ok(!isRingRecordsPerCpu(bad), String(bad));
});
