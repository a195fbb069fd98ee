import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IntegrityError, StoreWriteError, UsageError } from '../errors.js';
import type { HostFacts, UtmpEntry } from '../host/types.js';
import { resolveClosure } from '../trace/index.js';
import { NEXT_HOST, buildFigure7 } from '../trace/figures.js';
import {
  ALL_SAVE_CATEGORIES,
  buildRecord,
  formatCanonicalJson,
  formatRecordBytes,
  parseSaveCategories,
  writeRecord,
  type BuildRecordInput,
  type SaveCategory,
} from './record.js';
import { parseRecord, readRecord } from './record-reader.js';
import { hashToken } from './tokens.js';
import { formatCommunityId } from './community-id.js';

const HOST: HostFacts = {
  hostname: 'h2.example',
  bootTime: '2024-01-01T00:00:00.000Z',
  kernel: '6.1.0-test #1 SMP',
  os: 'Debian GNU/Linux 12 (bookworm)',
};

const UTMP: UtmpEntry[] = [
  { type: 'USER_PROCESS', pid: 8337, line: 'pts/1', user: 'alice', host: '192.0.2.1', time: '2024-01-02T03:04:05.000Z', address: '192.0.2.1' },
  { type: 'USER_PROCESS', pid: 700, line: 'tty1', user: 'bob', host: '', time: '2024-01-02T00:00:00.000Z', address: null },
];

const NAMES = new Map([
  [0, 'root'],
  [1000, 'alice'],
]);

function figure7Input(save: readonly SaveCategory[] = ALL_SAVE_CATEGORIES): BuildRecordInput {
  const fixture = buildFigure7();
  const closure = resolveClosure(fixture.host, { socket: fixture.socket });
  return {
    closure,
    request: { line: '968, 23 : SV_REC : 92847523456', requester: { address: NEXT_HOST, port: 40123 } },
    userName: (uid) => NAMES.get(uid) ?? null,
    host: HOST,
    utmp: UTMP,
    denied: [],
    save,
    type: 'SV_REC',
    sid: '92847523456',
    now: new Date('2024-01-02T10:00:00Z'),
  };
}

function temporaryDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'stopd-record-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('formatCanonicalJson gives identical text for objects built with different key orders', () => {
  const a = { b: 1, a: { y: [1, { q: true, p: null }], x: 's' } };
  const b = { a: { x: 's', y: [1, { p: null, q: true }] }, b: 1 };
  assert.equal(formatCanonicalJson(a), formatCanonicalJson(b));
  assert.equal(formatCanonicalJson(a), '{"a":{"x":"s","y":[1,{"p":null,"q":true}]},"b":1}');
});

test('formatCanonicalJson writes strings, keys and numbers exactly as JSON.stringify does', () => {
  const strings = ['plain', 'quote " and \\ backslash', 'tab\tnew\nline\u0000nul\u001f', 'lone \ud800 high', 'lone \udc00 low', 'pair \ud83d\ude00', 'é ü 中文', '\u2028\u2029', ''];
  const numbers = [0, -0, 1, -1.5, 1e21, 1e-7, 123456789012345, Number.MAX_SAFE_INTEGER, 5e-324];
  for (const text of strings) {
    assert.equal(formatCanonicalJson(text), JSON.stringify(text));
    assert.equal(formatCanonicalJson({ [text]: text }), `{${JSON.stringify(text)}:${JSON.stringify(text)}}`);
  }
  for (const number of numbers) assert.equal(formatCanonicalJson([number]), JSON.stringify([number]));
  assert.equal(formatCanonicalJson([true, false, null]), '[true,false,null]');
});

test('formatCanonicalJson leaves out undefined properties like JSON', () => {
  assert.equal(formatCanonicalJson({ a: undefined, b: 2 }), '{"b":2}');
});

test('formatCanonicalJson rejects values JSON cannot carry, naming the path', () => {
  const cases: [unknown, RegExp][] = [
    [{ a: 1n }, /\$\.a is a bigint/],
    [{ a: [1, undefined] }, /\$\.a\[1\] is undefined/],
    // eslint-disable-next-line no-sparse-arrays -- a hole is what is tested
    [{ a: [1, , 2] }, /\$\.a\[1\] is undefined/],
    [undefined, /\$ is undefined/],
    [{ f: () => 1 }, /\$\.f is a function/],
    [{ n: Number.NaN }, /\$\.n is NaN/],
    [{ n: Infinity }, /\$\.n is Infinity/],
    [{ d: new Date(0) }, /\$\.d is not a plain object \(a Date\)/],
    [{ s: Symbol('x') }, /\$\.s is a symbol/],
  ];
  for (const [value, message] of cases) assert.throws(() => formatCanonicalJson(value), { name: 'TypeError', message });
  const cycle: Record<string, unknown> = {};
  cycle.self = cycle;
  assert.throws(() => formatCanonicalJson(cycle), /\$\.self refers back to itself/);
});

test('formatRecordBytes is compact UTF-8 JSON with one trailing newline', () => {
  const record = buildRecord(figure7Input());
  const bytes = formatRecordBytes(record);
  const text = bytes.toString('utf8');
  assert.ok(text.endsWith('}\n'));
  assert.equal(text.indexOf('\n'), text.length - 1);
  assert.ok(!/[{,:]\s/.test(text.replaceAll(/"(?:[^"\\]|\\.)*"/g, '""')), 'no whitespace outside strings');
  assert.deepEqual(JSON.parse(text), record);
});

test('buildRecord gives two records of the same input different salts, so different tokens', () => {
  const input = figure7Input();
  const first = buildRecord(input);
  const second = buildRecord(input);
  assert.match(first.salt, /^[0-9a-f]{32}$/);
  assert.notEqual(first.salt, second.salt);
  assert.notEqual(hashToken(formatRecordBytes(first)), hashToken(formatRecordBytes(second)));
  assert.deepEqual({ ...first, salt: '' }, { ...second, salt: '' });
});

test('buildRecord with every category saves the whole of Table II', () => {
  const record = buildRecord(figure7Input());
  assert.equal(record.version, 1);
  assert.equal(record.time, '2024-01-02T10:00:00.000Z');
  assert.equal(record.type, 'SV_REC');
  assert.equal(record.sid, '92847523456');
  assert.deepEqual(record.connection, {
    local: { address: '198.51.100.2', port: 968 },
    remote: { address: NEXT_HOST, port: 23 },
    state: 'ESTABLISHED',
    inode: record.connection.inode,
    uid: 1000,
    user: 'alice',
    // Either direction gives the same ID (the spec orders the endpoints).
    communityId: formatCommunityId({ address: NEXT_HOST, port: 23 }, { address: '198.51.100.2', port: 968 }),
  });
  assert.match(record.connection.communityId ?? '', /^1:[A-Za-z0-9+/]{27}=$/);
  assert.deepEqual(record.host, HOST);
  assert.deepEqual(
    record.processes?.map((process) => [process.name, process.pid, process.user, process.role]),
    [
      ['telnet', 8339, 'alice', 'primary'],
      ['csh', 8338, 'alice', 'primary'],
      ['sshd', 8337, 'root', 'primary'],
      ['sshd', 8000, 'root', 'primary'],
      ['init', 1, 'root', 'primary'],
    ],
  );
  assert.deepEqual(record.processes?.[0]?.cmdline, ['telnet', NEXT_HOST]);
  assert.equal(record.processes?.[0]?.sockets?.length, 1);
  assert.deepEqual(record.processes?.[0]?.pipes, []);
  assert.ok((record.links?.length ?? 0) > 0);
  assert.deepEqual(record.saved, ALL_SAVE_CATEGORIES);
  assert.deepEqual(record.upstream.map((candidate) => candidate.remote), [{ address: '192.0.2.1', port: 616 }]);
  const upstream = record.upstream[0];
  assert.ok(upstream);
  assert.equal(upstream.communityId, formatCommunityId(upstream.local, upstream.remote));
});

test('parseRecord reads records with and without Community IDs, and refuses one that is not text', () => {
  const record = buildRecord(figure7Input());
  assert.deepEqual(parseRecord(formatRecordBytes(record)), record);
  const older = { ...record.connection };
  delete older.communityId;
  const before = {
    ...record,
    connection: older,
    upstream: record.upstream.map((candidate) => {
      const copy = { ...candidate };
      delete copy.communityId;
      return copy;
    }),
  };
  assert.deepEqual(parseRecord(formatRecordBytes(before)), before);
  const bad = { ...record, connection: { ...record.connection, communityId: 7 } };
  assert.throws(() => parseRecord(formatRecordBytes(bad as unknown as typeof record)), /communityId/);
});

test('buildRecord keeps only the utmp entries of users named in the record', () => {
  const record = buildRecord(figure7Input());
  assert.deepEqual(
    record.utmp?.map((entry) => entry.user),
    ['alice'],
  );
});

test('buildRecord drops what the save categories leave out', () => {
  const minimal = buildRecord(figure7Input([]));
  for (const key of ['processes', 'links', 'host', 'utmp']) assert.ok(!(key in minimal), `${key} is left out`);
  assert.deepEqual(minimal.saved, []);
  assert.equal(minimal.upstream.length, 1, 'upstream candidates are always kept');
  assert.equal(minimal.connection.user, 'alice');

  const bare = buildRecord(figure7Input(['processes']));
  const telnet = bare.processes?.[0];
  assert.ok(telnet);
  for (const key of ['cmdline', 'sockets', 'pipes']) assert.ok(!(key in telnet), `${key} is left out`);
  assert.ok(bare.links !== undefined);

  const noCommands = buildRecord(figure7Input(['processes', 'sockets', 'pipes']));
  assert.ok(!('cmdline' in (noCommands.processes?.[0] ?? {})));
  assert.ok(noCommands.processes?.[0]?.sockets !== undefined);
  assert.ok(noCommands.processes?.[0]?.pipes !== undefined);

  assert.deepEqual(buildRecord(figure7Input(['host', 'processes'])).saved, ['processes', 'host']);
});

test('buildRecord copies the request without an absent clientIp and deduplicates denied pids', () => {
  const input = figure7Input();
  const record = buildRecord({ ...input, denied: [5, 5, 6] });
  assert.ok(!('clientIp' in record.request));
  assert.deepEqual(record.denied, [5, 6]);
  const withIp = buildRecord({ ...input, request: { ...input.request, clientIp: '192.0.2.9' } });
  assert.equal(withIp.request.clientIp, '192.0.2.9');
});

test('buildRecord lists the closure problems, then the extra ones, and parseRecord reads a record without problems', () => {
  const input = figure7Input();
  const closure = { ...input.closure, problems: [{ code: 'limit-processes', message: 'Stopped early.' }] };
  const record = buildRecord({ ...input, closure, problems: [{ code: 'no-visible-holder', message: 'Nobody seen.' }] });
  assert.deepEqual(
    record.problems?.map((problem) => problem.code),
    ['limit-processes', 'no-visible-holder'],
  );
  assert.deepEqual(parseRecord(formatRecordBytes(record)).problems, record.problems);
  const { problems, ...older } = record;
  assert.equal(problems?.length, 2);
  assert.equal(parseRecord(formatRecordBytes(older)).problems, undefined);
  assert.throws(() => parseRecord(formatRecordBytes({ ...record, problems: [{ code: 7 }] } as never)), /problems\[0\]\.code is not a string/);
});

test('writeRecord names the file by the sha256 of its bytes, mode 0600, no temp file left', async (t) => {
  const dir = temporaryDir(t);
  const bytes = formatRecordBytes(buildRecord(figure7Input()));
  const token = await writeRecord(dir, bytes, { hash: 'sha256' });
  assert.equal(token, createHash('sha256').update(bytes).digest('hex'));
  assert.match(token, /^[0-9a-f]{64}$/);
  assert.deepEqual(readdirSync(dir), [`${token}.json`]);
  assert.equal(statSync(join(dir, `${token}.json`)).mode & 0o777, 0o600);
  assert.deepEqual(readFileSync(join(dir, `${token}.json`)), bytes);
});

test('writeRecord with sha1 gives a 40-hex token', async (t) => {
  const dir = temporaryDir(t);
  const bytes = formatRecordBytes(buildRecord(figure7Input()));
  const token = await writeRecord(dir, bytes, { hash: 'sha1' });
  assert.equal(token, createHash('sha1').update(bytes).digest('hex'));
  assert.match(token, /^[0-9a-f]{40}$/);
  const stored = await readRecord(dir, token);
  assert.equal(stored?.hash, 'sha1');
  assert.equal(stored?.verified, true);
});

test('writeRecord failure is a StoreWriteError and removes its temp file', async (t) => {
  const dir = temporaryDir(t);
  const bytes = formatRecordBytes(buildRecord(figure7Input()));
  // A non-empty directory where the record should go makes the rename fail after the temp file exists.
  const blocker = join(dir, `${hashToken(bytes)}.json`);
  mkdirSync(blocker);
  writeFileSync(join(blocker, 'x'), 'x');
  await assert.rejects(writeRecord(dir, bytes, { hash: 'sha256' }), (error: unknown) => {
    assert.ok(error instanceof StoreWriteError);
    assert.equal(error.code, 'ERR_STORE_WRITE');
    assert.match(error.message, /^Cannot save evidence record [0-9a-f]{64} in /);
    assert.ok(error.cause instanceof Error);
    return true;
  });
  assert.deepEqual(readdirSync(dir), [`${hashToken(bytes)}.json`]);
});

test('writeRecord into a missing directory is a StoreWriteError', async (t) => {
  const dir = temporaryDir(t);
  const bytes = formatRecordBytes(buildRecord(figure7Input()));
  await assert.rejects(writeRecord(join(dir, 'missing'), bytes, { hash: 'sha256' }), StoreWriteError);
});

test('writeRecord called 40 times at once keeps every record, each verified, and no temp file', async (t) => {
  const dir = temporaryDir(t);
  // Concurrent writes share directory flushes (directorySync): each must still land whole.
  const inputs = Array.from({ length: 40 }, () => formatRecordBytes(buildRecord(figure7Input())));
  const tokens = await Promise.all(inputs.map((bytes) => writeRecord(dir, bytes, { hash: 'sha256' })));
  assert.equal(new Set(tokens).size, 40);
  assert.deepEqual(readdirSync(dir).sort(), tokens.map((token) => `${token}.json`).sort());
  for (const [i, token] of tokens.entries()) assert.deepEqual(readFileSync(join(dir, `${token}.json`)), inputs[i]);
});

test('readRecord round-trips a written record, verified', async (t) => {
  const dir = temporaryDir(t);
  const record = buildRecord(figure7Input());
  const bytes = formatRecordBytes(record);
  const token = await writeRecord(dir, bytes, { hash: 'sha256' });
  const stored = await readRecord(dir, token);
  assert.ok(stored?.record);
  assert.equal(stored.verified, true);
  assert.equal(stored.actualHash, token);
  assert.equal(stored.hash, 'sha256');
  assert.deepEqual(stored.bytes, bytes);
  assert.deepEqual(stored.record, record);
});

test('readRecord reports a record with one byte changed as not verified', async (t) => {
  const dir = temporaryDir(t);
  const bytes = formatRecordBytes(buildRecord(figure7Input()));
  const token = await writeRecord(dir, bytes, { hash: 'sha256' });
  const path = join(dir, `${token}.json`);
  const altered = Buffer.from(readFileSync(path).toString('utf8').replace('"telnet"', '"tElnet"'));
  assert.equal(altered.length, bytes.length);
  writeFileSync(path, altered);
  const stored = await readRecord(dir, token);
  assert.ok(stored?.record, 'an altered but well-formed record is still parsed');
  assert.equal(stored.verified, false);
  assert.notEqual(stored.actualHash, token);
  assert.equal(stored.actualHash, hashToken(altered));
});

test('readRecord returns a parseError for a file that is not a record', async (t) => {
  const dir = temporaryDir(t);
  const garbage = Buffer.from('{"version":1,"salt":');
  const token = hashToken(garbage);
  writeFileSync(join(dir, `${token}.json`), garbage);
  const stored = await readRecord(dir, token);
  assert.ok(stored);
  assert.equal(stored.record, undefined);
  assert.match(stored.parseError ?? '', /^Cannot read evidence record: it is not UTF-8 JSON/);
  assert.equal(stored.verified, true, 'the bytes still match: the daemon wrote them');
});

test('readRecord resolves undefined for an unknown token and rejects a malformed one', async (t) => {
  const dir = temporaryDir(t);
  assert.equal(await readRecord(dir, 'a'.repeat(64)), undefined);
  await assert.rejects(readRecord(dir, '../../etc/passwd'), UsageError);
  await assert.rejects(readRecord(dir, 'A'.repeat(64)), UsageError);
});

test('parseRecord accepts saved bytes and rejects other shapes with an IntegrityError', () => {
  const record = buildRecord(figure7Input());
  assert.deepEqual(parseRecord(formatRecordBytes(record)), record);
  const minimal = buildRecord(figure7Input([]));
  assert.deepEqual(parseRecord(formatRecordBytes(minimal)), minimal);
  const bad: [unknown, RegExp][] = [
    [{ ...record, version: 2 }, /record\.version is 2, not 1/],
    [[], /record is not an object/],
    [{ ...record, upstream: undefined }, /record\.upstream is missing/],
    [{ ...record, processes: [{ ...record.processes?.[0], pid: '1' }] }, /record\.processes\[0\]\.pid is not an integer/],
    [{ ...record, processes: [{ ...record.processes?.[0], sockets: [{ kind: 'udp' }] }] }, /sockets\[0\]\.kind is not one of/],
  ];
  for (const [value, message] of bad) {
    assert.throws(() => parseRecord(Buffer.from(JSON.stringify(value))), (error: unknown) => {
      assert.ok(error instanceof IntegrityError);
      assert.match(error.message, message);
      return true;
    });
  }
  assert.throws(() => parseRecord(Buffer.from([0xff, 0xfe])), /not UTF-8 JSON/);
});

test('parseSaveCategories accepts lists, spaces and all, in canonical order', () => {
  assert.deepEqual(parseSaveCategories('sockets,processes'), ['processes', 'sockets']);
  assert.deepEqual(parseSaveCategories(' processes , cmdline ,processes'), ['processes', 'cmdline']);
  assert.deepEqual(parseSaveCategories('all'), [...ALL_SAVE_CATEGORIES]);
  assert.deepEqual(parseSaveCategories('host,all'), [...ALL_SAVE_CATEGORIES]);
  assert.deepEqual(parseSaveCategories(''), []);
});

test('parseSaveCategories rejects an unknown word, naming it and the valid ones', () => {
  assert.throws(
    () => parseSaveCategories('processes,files'),
    (error: unknown) => {
      assert.ok(error instanceof UsageError);
      assert.equal(error.code, 'ERR_USAGE');
      assert.match(error.message, /"files" is not one/);
      assert.match(error.message, /processes, cmdline, sockets, pipes, utmp, host \(or be all\)/);
      return true;
    },
  );
});

test('buildRecord cuts a record over maxBytes to its first processes and says so', () => {
  const input = figure7Input();
  const whole = buildRecord(input);
  const wholeBytes = formatRecordBytes(whole).length;
  for (const maxBytes of [wholeBytes - 1, Math.floor(wholeBytes / 2), 3000]) {
    const record = buildRecord({ ...input, maxBytes });
    const bytes = formatRecordBytes(record);
    assert.ok(bytes.length <= maxBytes, `${bytes.length} bytes <= ${maxBytes}`);
    assert.equal(record.truncated, true);
    assert.ok(record.problems?.some((problem) => problem.code === 'limit-bytes'));
    const parts = (r: typeof record): number => (r.processes?.length ?? 0) + (r.links?.length ?? 0);
    assert.ok(parts(record) < parts(whole), 'processes or links were left out');
    assert.deepEqual(
      record.processes?.map((process) => process.pid),
      whole.processes?.slice(0, record.processes?.length ?? 0).map((process) => process.pid),
      'the first processes (primary first) are kept',
    );
    const kept = new Set(record.processes?.map((process) => process.pid));
    assert.ok(record.links?.every((link) => kept.has(link.from) && kept.has(link.to)));
    assert.deepEqual(parseRecord(bytes), record);
  }
  assert.deepEqual(buildRecord({ ...input, maxBytes: wholeBytes }).truncated, false, 'a record that fits is whole');
  assert.throws(() => buildRecord({ ...input, maxBytes: 0 }), RangeError);
});

test('buildRecord saves channels, counts, omitted descriptors and a cut command line, and parseRecord reads them', () => {
  const input = figure7Input();
  const [first, ...rest] = input.closure.processes;
  assert.ok(first !== undefined);
  const closure = {
    ...input.closure,
    processes: [
      {
        ...first,
        cmdline: ['x'.repeat(10)],
        cmdlineTruncated: { bytes: 1_000_000, sha256: 'ab'.repeat(32) },
        fdsOmitted: 19_000,
        pipes: [{ fd: 9, inode: 77, end: 'both' as const, otherPids: [1, 2, 3, 4, 5, 6, 7, 8], otherCount: 4999 }],
      },
      ...rest,
    ],
    channels: [{ kind: 'pipe' as const, inodes: [77], from: [1, 2, 3], to: [1, 2, 3] }],
  };
  const record = buildRecord({ ...input, closure });
  const saved = parseRecord(formatRecordBytes(record));
  assert.deepEqual(saved.channels, closure.channels);
  const process = saved.processes?.[0];
  assert.deepEqual(process?.cmdlineTruncated, { bytes: 1_000_000, sha256: 'ab'.repeat(32) });
  assert.equal(process?.fdsOmitted, 19_000);
  assert.equal(process?.pipes?.[0]?.otherCount, 4999);
  const withoutCmdline = buildRecord({ ...input, closure, save: ALL_SAVE_CATEGORIES.filter((category) => category !== 'cmdline') });
  assert.equal(withoutCmdline.processes?.[0]?.cmdlineTruncated, undefined, 'the hash of a command line is not kept without it');
  const bad = JSON.parse(formatRecordBytes(record).toString()) as { channels: { kind: string }[] };
  (bad.channels[0] as { kind: string }).kind = 'carrier-pigeon';
  assert.throws(() => parseRecord(Buffer.from(JSON.stringify(bad))), IntegrityError);
});
