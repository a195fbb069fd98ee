import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { gunzipSync, gzipSync } from 'node:zlib';
import { resolveClosure } from '../trace/index.js';
import { NEXT_HOST, buildFigure7 } from '../trace/figures.js';
import { readLedger } from './ledger.js';
import type { LedgerEntry } from './ledger-format.js';
import { pruneRecords } from './prune.js';
import { describeRecordNotKept } from './quota.js';
import { buildRecord, formatRecordBytes, writeRecord } from './record.js';
import { readRecord } from './record-reader.js';
import { redeemToken } from './redeem.js';
import { openStore, storePaths } from './store.js';
import { hashToken } from './tokens.js';

const root = mkdtempSync(join(tmpdir(), 'stopd-prune-'));
after(() => rmSync(root, { recursive: true, force: true }));

const DAY = 86_400_000;

function recordBytes(): Buffer {
  const fixture = buildFigure7();
  return formatRecordBytes(
    buildRecord({
      closure: resolveClosure(fixture.host, { socket: fixture.socket }),
      request: { line: '968,23:SV', requester: { address: NEXT_HOST, port: 40123 } },
      userName: () => null,
      host: { hostname: 'h2.example', bootTime: '2024-01-01T00:00:00.000Z', kernel: '6.1.0', os: null },
      utmp: [],
      denied: [],
      save: ['processes'],
      type: 'SV',
    }),
  );
}

/** A store with `count` SV records, each issued by a reply entry; the first `old` are 40 days old. */
async function makeStore(count: number, old: number): Promise<{ dir: string; tokens: string[] }> {
  const dir = mkdtempSync(join(root, 'store-'));
  const store = await openStore(dir);
  const tokens: string[] = [];
  for (let index = 0; index < count; index += 1) {
    const token = await writeRecord(storePaths(dir).records, recordBytes(), { hash: 'sha256' });
    await store.ledger.append({ kind: 'reply', request: '968,23:SV', type: 'SV', requester: { address: NEXT_HOST, port: 40123 }, decision: 'token', token, record: token });
    tokens.push(token);
  }
  await store.close();
  const past = new Date(Date.now() - 40 * DAY);
  for (const token of tokens.slice(0, old)) utimesSync(recordPath(dir, token), past, past);
  return { dir, tokens };
}

function recordPath(dir: string, token: string, suffix = '.json'): string {
  return join(storePaths(dir).records, `${token}${suffix}`);
}

async function entries(dir: string): Promise<LedgerEntry[]> {
  const found: LedgerEntry[] = [];
  for await (const line of readLedger(storePaths(dir).ledger)) {
    assert.ok(line.chained, `ledger line ${line.lineNumber} chains`);
    if (line.entry !== undefined) found.push(line.entry);
  }
  return found;
}

test('pruneRecords removes records older than the limit and notes each one in the ledger', async () => {
  const { dir, tokens } = await makeStore(4, 2);
  const result = await pruneRecords(dir, { olderThanDays: 30 });
  assert.deepEqual([...result.removed].sort(), tokens.slice(0, 2).sort());
  assert.deepEqual(result.failed, []);
  for (const token of tokens.slice(0, 2)) assert.equal(existsSync(recordPath(dir, token)), false);
  for (const token of tokens.slice(2)) assert.equal(existsSync(recordPath(dir, token)), true);
  const notes = (await entries(dir)).filter((entry) => entry.kind === 'prune');
  assert.deepEqual(notes.map((entry) => entry.record).sort(), tokens.slice(0, 2).sort());
  assert.ok(notes.every((entry) => entry.action === 'removed' && entry.verified === true && entry.olderThanDays === 30));
  const run = (await entries(dir)).at(-1);
  assert.equal(run?.kind, 'prune-run');
  assert.equal(run.removed, 2);
});

test('redeemToken says a pruned record was pruned, not that it is missing', async () => {
  const { dir, tokens } = await makeStore(2, 1);
  await pruneRecords(dir, { olderThanDays: 30 });
  const pruned = await redeemToken(dir, tokens[0] ?? '');
  assert.equal(pruned.status, 0);
  assert.deepEqual(pruned.problems, []);
  assert.equal(pruned.absence?.reason, 'pruned');
  assert.match(pruned.absence.note, /^record pruned: removed by stopctl prune at .* \(older than 30 days\)$/);
  const kept = await redeemToken(dir, tokens[1] ?? '');
  assert.equal(kept.status, 0);
  assert.equal(kept.record?.verified, true);
  assert.equal(kept.absence, undefined);
});

test('redeemToken still reports a record deleted without a prune note as an integrity failure', async () => {
  const { dir, tokens } = await makeStore(2, 0);
  rmSync(recordPath(dir, tokens[0] ?? ''));
  const redemption = await redeemToken(dir, tokens[0] ?? '');
  assert.equal(redemption.status, 3);
  assert.match(redemption.problems.join('\n'), /record file is missing/);
});

test('pruneRecords --gzip keeps old records as .json.gz that readRecord verifies on the decompressed bytes', async () => {
  const { dir, tokens } = await makeStore(3, 2);
  const [first = '', second = '', fresh = ''] = tokens;
  const original = readFileSync(recordPath(dir, first));
  const mtime = statSync(recordPath(dir, first)).mtimeMs;
  const result = await pruneRecords(dir, { olderThanDays: 30, gzip: true });
  assert.deepEqual([...result.gzipped].sort(), [first, second].sort());
  assert.equal(existsSync(recordPath(dir, first)), false);
  assert.equal(existsSync(recordPath(dir, first, '.json.gz')), true);
  assert.equal(statSync(recordPath(dir, first, '.json.gz')).mtimeMs, mtime, 'the age is kept');
  assert.equal(existsSync(recordPath(dir, fresh)), true, 'a recent record is left alone');
  const read = await readRecord(storePaths(dir).records, first);
  assert.equal(read?.verified, true);
  assert.equal(read.compressed, true);
  assert.deepEqual(read.bytes, original);
  assert.equal(read.record?.type, 'SV');
  const redemption = await redeemToken(dir, first);
  assert.equal(redemption.status, 0);
  assert.deepEqual(redemption.problems, []);
  const notes = (await entries(dir)).filter((entry) => entry.kind === 'prune');
  assert.ok(notes.every((entry) => entry.action === 'gzipped'));

  // A second prune without --gzip removes the compressed ones too, and notes it.
  await pruneRecords(dir, { olderThanDays: 30 });
  assert.equal(existsSync(recordPath(dir, first, '.json.gz')), false);
  assert.equal((await redeemToken(dir, first)).absence?.reason, 'pruned');
});

test('readRecord reports an altered or undecompressable .json.gz as not verified', async () => {
  const { dir, tokens } = await makeStore(2, 2);
  await pruneRecords(dir, { olderThanDays: 30, gzip: true });
  const [altered = '', broken = ''] = tokens;
  // One byte changed in the decompressed record, recompressed.
  const bytes = gunzipSync(readFileSync(recordPath(dir, altered, '.json.gz')));
  bytes.writeUInt8((bytes.readUInt8(bytes.length - 2) ^ 0x01) & 0xff, bytes.length - 2);
  writeFileSync(recordPath(dir, altered, '.json.gz'), gzipSync(bytes));
  const read = await readRecord(storePaths(dir).records, altered);
  assert.equal(read?.verified, false);
  assert.equal((await redeemToken(dir, altered)).status, 3);
  writeFileSync(recordPath(dir, broken, '.json.gz'), 'not gzip');
  const unreadable = await readRecord(storePaths(dir).records, broken);
  assert.equal(unreadable?.verified, false);
  assert.equal(unreadable.record, undefined);
  assert.match(unreadable.parseError ?? '', /does not decompress/);
  assert.equal(hashToken(Buffer.from('not gzip')), unreadable.actualHash);
});

test('pruneRecords refuses while a running process holds the store lock', async (t) => {
  const { dir, tokens } = await makeStore(1, 1);
  const holder = spawn('sleep', ['30'], { stdio: 'ignore' });
  t.after(() => holder.kill());
  await once(holder, 'spawn');
  writeFileSync(storePaths(dir).lock, `${holder.pid}\n`);
  await assert.rejects(pruneRecords(dir, { olderThanDays: 30 }), (error: Error & { code?: string }) => {
    assert.equal(error.code, 'ERR_STORE_OPEN');
    assert.match(error.message, new RegExp(`stopd \\(pid ${holder.pid}\\) holds the store.*stop stopd, prune, then start it again`));
    return true;
  });
  assert.equal(existsSync(recordPath(dir, tokens[0] ?? '')), true, 'nothing was removed');
  rmSync(storePaths(dir).lock);
});

test('redeemToken says a record was not kept at the store quota', async () => {
  const dir = mkdtempSync(join(root, 'quota-'));
  const store = await openStore(dir);
  const bytes = recordBytes();
  const token = hashToken(bytes);
  await store.ledger.append(describeRecordNotKept(token, { reason: 'max-records', limit: 3, usage: { records: 3, bytes: 9000 } }, bytes.length));
  await store.ledger.append({ kind: 'reply', request: '968,23:SV', type: 'SV', requester: { address: NEXT_HOST, port: 1 }, decision: 'token', token, record: token });
  await store.close();
  const redemption = await redeemToken(dir, token);
  assert.equal(redemption.status, 0);
  assert.deepEqual(redemption.problems, []);
  assert.equal(redemption.absence?.reason, 'not-kept');
  assert.equal(redemption.absence.note, 'record not kept: store quota (--max-records 3 reached)');
});
