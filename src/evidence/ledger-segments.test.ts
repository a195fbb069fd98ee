import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { generateLedgerKey } from './forward-mac.js';
import { Ledger, readLedger, type LedgerOptions } from './ledger.js';
import { GENESIS_HASH, hashLine } from './ledger-format.js';
import { listLedgerSegments, readLastEntry, readLedgerRange, segmentsDirOf } from './ledger-segments.js';
import { redeemToken } from './redeem.js';
import { formatRecordBytes, writeRecord, type EvidenceRecord } from './record.js';
import { storePaths } from './store.js';
import { verifyStore } from './verify.js';

/** The requester of the reply entries these tests write (RFC 5737). */
const REQUESTER = { address: '192.0.2.1', port: 40000 };

const root = mkdtempSync(join(tmpdir(), 'stopd-segments-'));
after(() => rmSync(root, { recursive: true, force: true }));
let counter = 0;

function newStore(): ReturnType<typeof storePaths> {
  counter += 1;
  const paths = storePaths(join(root, `store-${counter}`));
  mkdirSync(paths.records, { recursive: true });
  return paths;
}

/** About 200 bytes an entry: `count` of them fill a 1 KiB segment every 5 entries or so. */
async function appendMany(ledger: Ledger, count: number): Promise<void> {
  for (let index = 0; index < count; index += 1) await ledger.append({ kind: 'test', index, padding: 'x'.repeat(100) });
}

async function allLines(path: string) {
  const lines = [];
  for await (const line of readLedger(path)) lines.push(line);
  return lines;
}

function sampleRecord(port: number): EvidenceRecord {
  return {
    version: 1,
    salt: randomBytes(16).toString('hex'),
    time: new Date().toISOString(),
    type: 'SV',
    request: { line: `${port},22:SV`, requester: { address: '192.0.2.7', port: 50000 } },
    connection: {
      local: { address: '192.0.2.1', port },
      remote: { address: '192.0.2.7', port: 22 },
      state: 'ESTABLISHED',
      inode: 1000 + port,
      uid: 0,
      user: 'root',
    },
    upstream: [],
    vanished: [],
    denied: [],
    truncated: false,
    saved: [],
  };
}

test('Ledger rotates the active file into ledger-segments/ and the chain runs on across files', async () => {
  const paths = newStore();
  const ledger = await Ledger.open(paths.ledger, { retention: { segmentBytes: 1024 } });
  await appendMany(ledger, 40);
  await ledger.close();
  const segments = listLedgerSegments(paths.ledger);
  assert.ok(segments.length >= 4, `several files: ${segments.map((s) => s.name).join(' ')}`);
  assert.equal(segments.at(-1)?.name, 'ledger');
  assert.match(segments[0]?.name ?? '', /^ledger-segments\/0000000000000001\.ledger$/);
  const lines = await allLines(paths.ledger);
  assert.ok(lines.every((line) => line.chained), 'one hash chain across the files');
  const seqs = lines.map((line) => line.entry?.seq);
  assert.deepEqual(seqs, seqs.map((_, index) => index + 1), 'no seq lost or repeated');
  const starts = lines.filter((line) => line.entry?.kind === 'segment-start');
  assert.equal(starts.length, segments.length - 1, 'every file after the first begins with a segment-start entry');
  for (const start of starts) {
    const previous = start.entry?.previous as { lastSeq: number; lastHash: string };
    assert.equal(previous.lastSeq, (start.entry?.seq ?? 0) - 1);
    assert.equal(previous.lastHash, start.entry?.prev);
  }
  // The segment size bounds each file: it holds at most one batch past the size.
  for (const segment of segments) assert.ok(readFileSync(segment.path).length < 1024 + 400, segment.name);
  assert.equal(readLastEntry(paths.ledger)?.seq, lines.length);
  assert.deepEqual((await verifyStore(paths.dir)).findings, []);
});

test('Ledger drops the oldest segments past maxBytes, each after a segment-dropped entry, and verify checks from the first kept seq', async () => {
  const paths = newStore();
  const ledger = await Ledger.open(paths.ledger, { retention: { segmentBytes: 1024, maxBytes: 3072 } });
  await appendMany(ledger, 200);
  const usage = ledger.usage;
  await ledger.close();
  const files = listLedgerSegments(paths.ledger);
  const bytes = files.reduce((sum, file) => sum + readFileSync(file.path).length, 0);
  assert.ok(bytes <= 3072 + 1024, `the ledger stays near its budget: ${bytes} bytes`);
  assert.equal(usage.bytes <= 3072 + 1024, true);
  assert.notEqual(files[0]?.firstSeq, 1, 'the first segment was dropped');
  const lines = await allLines(paths.ledger);
  const drops = lines.filter((line) => line.entry?.kind === 'segment-dropped');
  assert.ok(drops.length >= 1);
  const first = lines[0]?.entry;
  assert.equal(first?.kind, 'segment-start');
  const lastDrop = drops.at(-1)?.entry as { lastSeq: number; lastHash: string; reason: string } | undefined;
  assert.equal(lastDrop?.lastSeq, (first?.seq ?? 0) - 1, 'the newest drop ends just before the first kept entry');
  assert.equal(lastDrop?.lastHash, first?.prev, 'and recorded the hash the first kept entry chains onto');
  assert.equal(lastDrop?.reason, 'ledger-max-bytes');
  const report = await verifyStore(paths.dir);
  assert.deepEqual(report.findings, [], 'clean after dropping');
  assert.equal(report.clean, true);
  assert.equal(report.ledger.checkedFromSeq, first?.seq);
  assert.equal(report.ledger.droppedThroughSeq, (first?.seq ?? 0) - 1);
});

test('Ledger drops segments whose last entry is older than maxAgeMs, and keeps newer ones', async () => {
  const paths = newStore();
  let now = Date.parse('2026-01-01T00:00:00Z');
  const options: LedgerOptions = { retention: { segmentBytes: 1024, maxAgeMs: 86_400_000, now: () => now } };
  const ledger = await Ledger.open(paths.ledger, options);
  await appendMany(ledger, 30);
  await ledger.close();
  const before = listLedgerSegments(paths.ledger).length;
  assert.ok(before >= 3);
  // Two days later, by the ledger's clock: every rotated segment's last entry is too old.
  now = Date.now() + 2 * 86_400_000;
  const later = await Ledger.open(paths.ledger, options);
  await later.close();
  const after = listLedgerSegments(paths.ledger);
  assert.deepEqual(after.map((file) => file.name), ['ledger'], 'only the active file is left');
  const lines = await allLines(paths.ledger);
  const drops = lines.filter((line) => line.entry?.kind === 'segment-dropped');
  assert.equal(drops.length, before - 1);
  assert.ok(drops.every((line) => line.entry?.reason === 'ledger-retention'));
  const report = await verifyStore(paths.dir);
  assert.deepEqual(report.findings, []);
  assert.ok((report.ledger.checkedFromSeq ?? 0) > 1);
});

test('a single ledger file of an older store becomes the first segment, and the store verifies', async () => {
  const paths = newStore();
  const old = await Ledger.open(paths.ledger);
  await appendMany(old, 12);
  await old.close();
  assert.equal(existsSync(segmentsDirOf(paths.ledger)), false);
  const ledger = await Ledger.open(paths.ledger, { retention: { segmentBytes: 1024 } });
  await ledger.append({ kind: 'after-upgrade' });
  await ledger.close();
  const files = listLedgerSegments(paths.ledger);
  assert.equal(files[0]?.name, 'ledger-segments/0000000000000001.ledger');
  const lines = await allLines(paths.ledger);
  assert.equal(lines[0]?.entry?.prev, GENESIS_HASH);
  assert.ok(lines.every((line) => line.chained));
  assert.deepEqual((await verifyStore(paths.dir)).findings, []);
});

test('verifyStore reports a first segment deleted without a segment-dropped entry as entry-missing', async () => {
  const paths = newStore();
  const ledger = await Ledger.open(paths.ledger, { retention: { segmentBytes: 1024 } });
  await appendMany(ledger, 20);
  await ledger.close();
  const first = listLedgerSegments(paths.ledger)[0];
  assert.ok(first !== undefined && !first.active);
  unlinkSync(first.path);
  const report = await verifyStore(paths.dir);
  assert.equal(report.clean, false);
  const missing = report.findings.find((finding) => finding.kind === 'entry-missing');
  assert.ok(missing !== undefined, JSON.stringify(report.findings));
  assert.match(missing.detail, /no segment-dropped entry accounts for them/);
  assert.equal(report.ledger.checkedFromSeq, 1);
});

test('verifyStore reports a kept entry altered after a drop, and a first kept entry whose prev no longer matches the note', async () => {
  const paths = newStore();
  const ledger = await Ledger.open(paths.ledger, { retention: { segmentBytes: 1024, maxBytes: 2048 } });
  await appendMany(ledger, 60);
  await ledger.close();
  const first = listLedgerSegments(paths.ledger)[0];
  assert.ok(first !== undefined);
  const lines = readFileSync(first.path, 'utf8').split('\n');
  const entry = JSON.parse(lines[0] ?? '') as Record<string, unknown>;
  lines[0] = JSON.stringify({ ...entry, prev: 'f'.repeat(64) });
  writeFileSync(first.path, lines.join('\n'));
  const report = await verifyStore(paths.dir);
  const altered = report.findings.filter((finding) => finding.kind === 'entry-altered');
  assert.ok(altered.some((finding) => /recorded by the segment-dropped entry/.test(finding.detail)), JSON.stringify(report.findings));
});

test('a keyed ledger verifies with the initial key after the key-installed entry was dropped', async () => {
  const paths = newStore();
  const key = generateLedgerKey();
  const keyFile = join(paths.dir, 'initial.key');
  writeFileSync(keyFile, `${key.toString('hex')}\n`);
  const ledger = await Ledger.open(paths.ledger, {
    keyStatePath: paths.ledgerKey,
    installKeyFile: keyFile,
    retention: { segmentBytes: 1024, maxBytes: 3072 },
  });
  await appendMany(ledger, 120);
  await ledger.close();
  const lines = await allLines(paths.ledger);
  assert.ok(!lines.some((line) => line.entry?.kind === 'key-installed'), 'the key-installed entry was dropped');
  assert.equal(lines[0]?.entry?.kind, 'segment-start');
  assert.equal(typeof lines[0]?.entry?.keyId, 'string');
  const report = await verifyStore(paths.dir, { key });
  assert.deepEqual(report.findings, []);
  assert.equal(report.ledger.macsChecked, lines.length, 'every kept entry had its MAC checked');
  // A kept entry altered after the drop fails its MAC even though the chain is rebuilt.
  const first = listLedgerSegments(paths.ledger)[0];
  assert.ok(first !== undefined);
  const text = readFileSync(first.path, 'utf8').split('\n');
  const second = JSON.parse(text[1] ?? '') as Record<string, unknown>;
  text[1] = JSON.stringify({ ...second, padding: 'forged' });
  const rest = text.slice(2);
  if (rest[0] !== undefined && rest[0] !== '') rest[0] = JSON.stringify({ ...(JSON.parse(rest[0]) as Record<string, unknown>), prev: hashLine(text[1] ?? '') });
  writeFileSync(first.path, [...text.slice(0, 2), ...rest].join('\n'));
  const tampered = await verifyStore(paths.dir, { key });
  assert.ok(tampered.findings.some((finding) => finding.kind === 'entry-altered' && /MAC/.test(finding.detail)), JSON.stringify(tampered.findings));
});

test('redeemToken says a token issued in a dropped segment was dropped by retention, not that the store was tampered with', async () => {
  const paths = newStore();
  const ledger = await Ledger.open(paths.ledger, { retention: { segmentBytes: 1024, maxBytes: 2048 } });
  const idToken = randomBytes(32).toString('hex');
  await ledger.append({ kind: 'reply', requester: REQUESTER, request: '6191,23', decision: 'token', token: idToken });
  const svToken = await writeRecord(paths.records, formatRecordBytes(sampleRecord(40001)), { hash: 'sha256' });
  await ledger.append({ kind: 'reply', requester: REQUESTER, request: '40001,22:SV', decision: 'token', token: svToken, record: svToken });
  await appendMany(ledger, 60);
  await ledger.close();
  const lines = await allLines(paths.ledger);
  assert.ok(!lines.some((line) => line.entry?.token === idToken), 'the reply entries were dropped');

  const id = await redeemToken(paths.dir, idToken);
  assert.equal(id.status, 2);
  assert.match(id.problems.join(' '), /not in the kept ledger of .*: entries 1\.\.\d+ .* were dropped by the ledger's retention/);
  const sv = await redeemToken(paths.dir, svToken);
  assert.equal(sv.status, 0, sv.problems.join('; '));
  assert.match(sv.issuedInDroppedLedger ?? '', /dropped by the ledger's retention; the record still matches its token/);
  const report = await verifyStore(paths.dir);
  assert.deepEqual(report.findings, []);
  assert.equal(report.records.beforeKeptLedger, 1);
});

test('readLedgerRange reads a seq range across segments, from a stale position hint too', async () => {
  const paths = newStore();
  const ledger = await Ledger.open(paths.ledger, { retention: { segmentBytes: 1024 } });
  await appendMany(ledger, 30);
  await ledger.close();
  const range = await readLedgerRange(paths.ledger, { minSeq: 3, maxSeq: 25, maxBytes: 1 << 20 });
  assert.deepEqual(range.items.map((item) => item.seq), Array.from({ length: 23 }, (_, index) => index + 3));
  assert.ok(new Set(range.items.map((item) => item.segment.name)).size > 2, 'the range spans files');
  // A hint into the wrong file (the active one, as before a rotation) still finds seq 3.
  const hinted = await readLedgerRange(paths.ledger, { minSeq: 3, maxSeq: 4, maxBytes: 1 << 20, hint: { segment: 'ledger', offset: 300 } });
  assert.deepEqual(hinted.items.map((item) => item.seq), [3, 4]);
  assert.ok(readdirSync(segmentsDirOf(paths.ledger)).length >= 3);
});

test('redeemToken reports a broken chain when leading segments were deleted without a segment-dropped entry', async () => {
  const paths = newStore();
  const ledger = await Ledger.open(paths.ledger, { retention: { segmentBytes: 1024 } });
  await appendMany(ledger, 20);
  const token = randomBytes(32).toString('hex');
  await ledger.append({ kind: 'reply', requester: REQUESTER, request: '6191,23', decision: 'token', token });
  await ledger.close();
  assert.equal((await redeemToken(paths.dir, token)).status, 0);
  const first = listLedgerSegments(paths.ledger)[0];
  assert.ok(first !== undefined && !first.active);
  unlinkSync(first.path);
  const redeemed = await redeemToken(paths.dir, token);
  assert.equal(redeemed.status, 3);
  assert.match(redeemed.problems.join(' '), /hash chain is broken at line\(s\) 1/);
});
