import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { evolveKeyBy, generateLedgerKey, readKeyState, writeKeyState } from './forward-mac.js';
import { Ledger } from './ledger.js';
import { formatLedgerLine, hashLine } from './ledger-format.js';
import { formatRecordBytes, writeRecord, type EvidenceRecord } from './record.js';
import { storePaths } from './store.js';
import { verifyStore, type FindingKind, type VerifyReport } from './verify.js';

/** The requester of the reply entries these tests write (RFC 5737). */
const REQUESTER = { address: '192.0.2.1', port: 40000 };

const root = mkdtempSync(join(tmpdir(), 'stopd-verify-'));
after(() => rmSync(root, { recursive: true, force: true }));

function sampleRecord(port: number): EvidenceRecord {
  return {
    version: 1,
    salt: randomBytes(16).toString('hex'),
    time: new Date().toISOString(),
    type: 'SV',
    request: { line: `${port},22:SV`, requester: { address: '127.0.0.2', port: 50000 } },
    connection: {
      local: { address: '127.0.0.1', port },
      remote: { address: '127.0.0.2', port: 22 },
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

interface TestStore {
  readonly dir: string;
  readonly paths: ReturnType<typeof storePaths>;
  readonly key: Buffer | undefined;
  /** SV tokens, in ledger order. */
  readonly tokens: string[];
}

let counter = 0;

/** A store with `entries` reply entries, every other one an SV record (keyed unless `keyed: false`). */
async function makeStore(options: { keyed?: boolean; entries?: number } = {}): Promise<TestStore> {
  counter += 1;
  const dir = join(root, `store-${counter}`);
  const paths = storePaths(dir);
  mkdirSync(paths.records, { recursive: true });
  const key = options.keyed === false ? undefined : generateLedgerKey();
  if (key !== undefined) writeFileSync(join(dir, 'initial.key'), `${key.toString('hex')}\n`);
  const ledger = await Ledger.open(paths.ledger, {
    keyStatePath: paths.ledgerKey,
    recordsDir: paths.records,
    ...(key === undefined ? {} : { installKeyFile: join(dir, 'initial.key') }),
  });
  const tokens: string[] = [];
  for (let index = 0; index < (options.entries ?? 6); index += 1) {
    if (index % 2 === 0) {
      const token = await writeRecord(paths.records, formatRecordBytes(sampleRecord(40000 + index)), { hash: 'sha256' });
      tokens.push(token);
      await ledger.append({ kind: 'reply', requester: REQUESTER, request: `${40000 + index},22:SV`, decision: 'token', token, record: token });
    } else {
      await ledger.append({ kind: 'reply', requester: REQUESTER, request: `${40000 + index},22`, decision: 'token', token: randomBytes(32).toString('hex') });
    }
  }
  await ledger.close();
  return { dir, paths, key, tokens };
}

function ledgerLines(store: TestStore): string[] {
  return readFileSync(store.paths.ledger, 'utf8').split('\n').slice(0, -1);
}

function writeLedgerLines(store: TestStore, lines: readonly string[]): void {
  writeFileSync(store.paths.ledger, lines.map((line) => `${line}\n`).join(''));
}

function kinds(report: VerifyReport): FindingKind[] {
  return report.findings.map((finding) => finding.kind);
}

function only(report: VerifyReport, kind: FindingKind): { where: string; detail: string } {
  const found = report.findings.filter((finding) => finding.kind === kind);
  assert.equal(found.length, 1, `exactly one ${kind} finding: ${JSON.stringify(report.findings, null, 1)}`);
  return found[0] ?? { where: '', detail: '' };
}

describe('verifyStore', () => {
  test('verifyStore reports a keyed store written by the ledger as clean, with and without the key', async () => {
    const store = await makeStore();
    const withKey = await verifyStore(store.dir, { key: store.key as Buffer });
    assert.deepEqual(withKey.findings, []);
    assert.equal(withKey.clean, true);
    assert.equal(withKey.ledger.entries, 7, 'key-installed plus six replies');
    assert.equal(withKey.ledger.macsChecked, 7);
    assert.equal(withKey.records.count, 3);
    assert.equal(withKey.records.referenced, 3);
    assert.equal((await verifyStore(store.dir)).clean, true);
    assert.equal(existsSync(join(store.dir, 'initial.key')), false, 'the key file was moved into the store');
  });

  test('verifyStore reports one changed byte of a record as record-altered', async () => {
    const store = await makeStore({ keyed: false });
    const token = store.tokens[1] ?? '';
    const path = join(store.paths.records, `${token}.json`);
    const bytes = readFileSync(path);
    bytes[bytes.indexOf('"uid":0') + 6] = '1'.charCodeAt(0);
    writeFileSync(path, bytes);
    const report = await verifyStore(store.dir);
    assert.deepEqual(kinds(report), ['record-altered']);
    const finding = only(report, 'record-altered');
    assert.equal(finding.where, `records/${token}.json`);
    assert.match(finding.detail, /well-formed record, but not the one saved under this token/);
  });

  test('verifyStore names the record whose bytes were copied over another', async () => {
    const store = await makeStore({ keyed: false });
    const [first = '', second = ''] = store.tokens;
    writeFileSync(join(store.paths.records, `${first}.json`), readFileSync(join(store.paths.records, `${second}.json`)));
    const finding = only(await verifyStore(store.dir), 'record-altered');
    assert.equal(finding.where, `records/${first}.json`);
    assert.match(finding.detail, new RegExp(`bytes of record ${second}`));
  });

  test('verifyStore reports missing, unreferenced, temporary and unexpected files in records/', async () => {
    const store = await makeStore({ keyed: false });
    const [first = '', second = ''] = store.tokens;
    unlinkSync(join(store.paths.records, `${first}.json`));
    const planted = await writeRecord(store.paths.records, formatRecordBytes(sampleRecord(1)), { hash: 'sha256' });
    writeFileSync(join(store.paths.records, `.${second}.tmp-abcdef`), 'half');
    writeFileSync(join(store.paths.records, 'notes.txt'), 'hello');
    const report = await verifyStore(store.dir);
    assert.deepEqual(kinds(report).sort(), ['record-missing', 'record-unreferenced', 'temporary-file', 'unexpected-file']);
    assert.equal(only(report, 'record-missing').where, `records/${first}.json`);
    assert.match(only(report, 'record-missing').detail, /seq 1, line 1/);
    assert.equal(only(report, 'record-unreferenced').where, `records/${planted}.json`);
    assert.equal(only(report, 'temporary-file').where, `records/.${second}.tmp-abcdef`);
    assert.equal(only(report, 'unexpected-file').where, 'records/notes.txt');
  });

  test('verifyStore reports a deleted ledger line as entry-missing with its seq', async () => {
    const store = await makeStore({ keyed: false });
    const lines = ledgerLines(store);
    writeLedgerLines(store, [...lines.slice(0, 2), ...lines.slice(3)]);
    const report = await verifyStore(store.dir);
    assert.deepEqual(kinds(report), ['entry-missing', 'record-unreferenced']);
    assert.equal(only(report, 'entry-missing').where, 'ledger seq 3');
    assert.match(only(report, 'entry-missing').detail, /between seq 2 \(line 2\) and seq 4 \(line 3\)/);
    // The deleted entry was the one that issued an SV token: its record is now nobody's.
    assert.equal(only(report, 'record-unreferenced').where, `records/${store.tokens[1]}.json`);
  });

  test('verifyStore reports an altered ledger line as entry-altered, by chain and by MAC', async () => {
    const store = await makeStore();
    const lines = ledgerLines(store);
    lines[3] = (lines[3] ?? '').replace('"decision":"token"', '"decision":"error"');
    writeLedgerLines(store, lines);
    const unkeyed = only(await verifyStore(store.dir), 'entry-altered');
    assert.equal(unkeyed.where, 'ledger line 4 (seq 4)');
    assert.match(unkeyed.detail, /prev recorded by the next entry \(seq 5, line 5\)/);
    const keyed = await verifyStore(store.dir, { key: store.key as Buffer });
    assert.deepEqual(kinds(keyed), ['entry-altered']);
    assert.match(only(keyed, 'entry-altered').detail, /MAC does not verify/);
  });

  test('verifyStore reports swapped ledger lines as entry-reordered', async () => {
    const store = await makeStore({ keyed: false });
    const lines = ledgerLines(store);
    writeLedgerLines(store, [lines[0] ?? '', lines[2] ?? '', lines[1] ?? '', ...lines.slice(3)]);
    const report = await verifyStore(store.dir);
    assert.deepEqual(kinds(report), ['entry-reordered']);
    assert.equal(only(report, 'entry-reordered').where, 'ledger lines 2-3');
    assert.match(only(report, 'entry-reordered').detail, /seq 3 comes before seq 2/);
  });

  test('verifyStore reports a ledger cut at a line end as ledger-truncated from the key state', async () => {
    const store = await makeStore();
    writeLedgerLines(store, ledgerLines(store).slice(0, 4));
    const report = await verifyStore(store.dir);
    assert.deepEqual(kinds(report), ['ledger-truncated', 'record-unreferenced']);
    assert.equal(only(report, 'ledger-truncated').where, 'ledger seq 5-7');
    assert.equal(only(report, 'record-unreferenced').where, `records/${store.tokens[2]}.json`);
  });

  test('verifyStore reports a partial last line and a line that is not JSON', async () => {
    const store = await makeStore({ keyed: false });
    const lines = ledgerLines(store);
    lines[1] = 'garbage';
    writeFileSync(store.paths.ledger, `${lines.map((line) => `${line}\n`).join('')}{"seq":7,"ti`);
    const report = await verifyStore(store.dir);
    assert.deepEqual(kinds(report).sort(), ['entry-missing', 'entry-not-json', 'partial-line']);
    assert.equal(only(report, 'entry-not-json').where, 'ledger line 2');
    assert.equal(only(report, 'partial-line').where, 'ledger line 7');
  });

  test('verifyStore with the initial key detects a tail forged with the current key', async () => {
    const store = await makeStore({ entries: 8 });
    // The attacker reads the host's current key, cuts the ledger after seq 4 and writes a new,
    // validly chained tail from there, MACed with the only key they have, and a matching state.
    const state = readKeyState(store.paths.ledgerKey);
    assert.ok(state !== undefined);
    const kept = ledgerLines(store).slice(0, 4);
    let prev = hashLine(kept[kept.length - 1] ?? '');
    const forged: string[] = [];
    for (let seq = 5; seq <= 9; seq += 1) {
      const entry = { seq, time: new Date().toISOString(), prev, kind: 'reply', requester: REQUESTER, request: '1,2', decision: 'token', token: 'f'.repeat(64) };
      const { line } = formatLedgerLine(entry, state.key);
      forged.push(line);
      prev = hashLine(line);
    }
    writeLedgerLines(store, [...kept, ...forged]);
    writeKeyState(store.paths.ledgerKey, { ...state, seq: 9, head: prev, key: evolveKeyBy(state.key, 1) });
    // Without the initial key the forgery is consistent; only the records it dropped show.
    assert.deepEqual(kinds(await verifyStore(store.dir)).sort(), ['record-unreferenced', 'record-unreferenced']);
    const report = await verifyStore(store.dir, { key: store.key as Buffer });
    const altered = report.findings.filter((finding) => finding.kind === 'entry-altered').map((finding) => finding.where);
    assert.deepEqual(altered, [5, 6, 7, 8, 9].map((seq) => `ledger line ${seq} (seq ${seq})`));
    assert.ok(kinds(report).includes('key-state'), 'the key state is not the one the initial key evolves to');
  });

  test('verifyStore reports entries stripped of their MAC and a wrong key', async () => {
    const store = await makeStore();
    const lines = ledgerLines(store);
    lines[2] = (lines[2] ?? '').replace(/,"mac":"[0-9a-f]{64}"\}$/, '}');
    lines[3] = (lines[3] ?? '').replace(/"prev":"[0-9a-f]{64}"/, `"prev":"${hashLine(lines[2] ?? '')}"`);
    writeLedgerLines(store, lines);
    const report = await verifyStore(store.dir);
    assert.equal(only(report, 'entry-mac-missing').where, 'ledger line 3 (seq 3)');
    const wrong = await verifyStore(store.dir, { key: generateLedgerKey() });
    assert.ok(kinds(wrong).includes('key-mismatch'));
    assert.equal(wrong.ledger.macsChecked, 0);
  });

  test('verifyStore checks gzipped records and accepts records the ledger says were pruned or not kept', async () => {
    const store = await makeStore({ keyed: false });
    const [gzipped = '', removed = '', notKept = ''] = store.tokens;
    const plain = join(store.paths.records, `${gzipped}.json`);
    writeFileSync(`${plain}.gz`, gzipSync(readFileSync(plain)));
    unlinkSync(plain);
    unlinkSync(join(store.paths.records, `${removed}.json`));
    unlinkSync(join(store.paths.records, `${notKept}.json`));
    const ledger = await Ledger.open(store.paths.ledger, { keyStatePath: store.paths.ledgerKey, recordsDir: store.paths.records });
    await ledger.append({ kind: 'prune', record: gzipped, action: 'gzipped', verified: true, bytes: 1, modified: '2024-01-01T00:00:00.000Z', olderThanDays: 1 });
    await ledger.append({ kind: 'prune', record: removed, action: 'removed', verified: true, bytes: 1, modified: '2024-01-01T00:00:00.000Z', olderThanDays: 1 });
    await ledger.append({ kind: 'record-not-kept', record: notKept, reason: 'max-records', limit: 2, usage: { records: 2, bytes: 2 }, bytes: 1 });
    await ledger.close();
    const report = await verifyStore(store.dir);
    assert.deepEqual(report.findings, []);
    assert.equal(report.records.count, 1);
    assert.equal(report.records.absent, 2);
    // A gzipped record is checked by its decompressed bytes.
    writeFileSync(`${plain}.gz`, gzipSync(Buffer.from('{"version":1}\n')));
    assert.equal(only(await verifyStore(store.dir), 'record-altered').where, `records/${gzipped}.json.gz`);
  });

  test('verifyStore rejects a directory that is not a store', async () => {
    await assert.rejects(verifyStore(join(root, 'nothing-here')), { code: 'ERR_STORE_OPEN' });
  });
});

describe('Ledger.open recovery', () => {
  test('Ledger.open evolves a key state left behind by a crash, and the store verifies', async () => {
    const store = await makeStore();
    const state = readKeyState(store.paths.ledgerKey);
    assert.ok(state !== undefined);
    // As if the daemon died after the ledger's fsync but before the key write of the last two entries.
    const older = evolveKeyBy(store.key as Buffer, state.seq - 2 + 1 - state.installSeq);
    writeKeyState(store.paths.ledgerKey, { ...state, seq: state.seq - 2, head: hashLine(ledgerLines(store)[state.seq - 3] ?? ''), key: older });
    assert.equal((await verifyStore(store.dir, { key: store.key as Buffer })).clean, true, 'an older key state is the documented crash window');
    const ledger = await Ledger.open(store.paths.ledger, { keyStatePath: store.paths.ledgerKey, recordsDir: store.paths.records });
    await ledger.append({ kind: 'after-crash' });
    await ledger.close();
    assert.equal(readKeyState(store.paths.ledgerKey)?.seq, state.seq + 1);
    assert.deepEqual((await verifyStore(store.dir, { key: store.key as Buffer })).findings, []);
  });

  test('Ledger.open accounts for records whose entry never reached the ledger and removes temporary files', async () => {
    const store = await makeStore();
    const orphan = await writeRecord(store.paths.records, formatRecordBytes(sampleRecord(2)), { hash: 'sha256' });
    writeFileSync(join(store.paths.records, `.${orphan}.tmp-0011`), 'half a record');
    assert.deepEqual(kinds(await verifyStore(store.dir)).sort(), ['record-unreferenced', 'temporary-file']);
    const ledger = await Ledger.open(store.paths.ledger, { keyStatePath: store.paths.ledgerKey, recordsDir: store.paths.records });
    await ledger.close();
    const recovery = JSON.parse(ledgerLines(store).at(-1) ?? '{}') as { kind: string; unrepliedRecords: string[]; removedTemporaryFiles: string[] };
    assert.equal(recovery.kind, 'recovery');
    assert.deepEqual(recovery.unrepliedRecords, [orphan]);
    assert.deepEqual(recovery.removedTemporaryFiles, [`.${orphan}.tmp-0011`]);
    const report = await verifyStore(store.dir, { key: store.key as Buffer });
    assert.deepEqual(report.findings, []);
    assert.equal(report.records.unreplied, 1);
  });

  test('Ledger.open keeps numbering after the key state when the ledger lost its end', async () => {
    const store = await makeStore();
    writeLedgerLines(store, ledgerLines(store).slice(0, 5));
    const ledger = await Ledger.open(store.paths.ledger, { keyStatePath: store.paths.ledgerKey, recordsDir: store.paths.records });
    const entry = await ledger.append({ kind: 'next' });
    await ledger.close();
    assert.equal(entry.seq, 9, 'recovery is seq 8, so the gap 6-7 stays visible');
    const report = await verifyStore(store.dir, { key: store.key as Buffer });
    assert.equal(only(report, 'entry-missing').where, 'ledger seq 6-7');
    assert.equal(report.findings.filter((finding) => finding.kind === 'entry-altered').length, 0, 'entries after the gap have valid MACs');
  });

  test('Ledger.open refuses another key once one is installed, and accepts a key file already moved', async () => {
    const store = await makeStore();
    const other = join(store.dir, 'other.key');
    writeFileSync(other, generateLedgerKey().toString('hex'));
    const options = { keyStatePath: store.paths.ledgerKey, recordsDir: store.paths.records };
    await assert.rejects(Ledger.open(store.paths.ledger, { ...options, installKeyFile: other }), /already has a ledger key/);
    const again = await Ledger.open(store.paths.ledger, { ...options, installKeyFile: join(store.dir, 'initial.key') });
    await again.close();
    assert.equal((await verifyStore(store.dir, { key: store.key as Buffer })).clean, true);
  });

  test('Ledger.open writes a key-installed entry that a crash kept from the disk', async () => {
    const store = await makeStore({ keyed: false });
    const key = generateLedgerKey();
    const file = join(store.dir, 'late.key');
    writeFileSync(file, key.toString('hex'));
    const options = { keyStatePath: store.paths.ledgerKey, recordsDir: store.paths.records, installKeyFile: file };
    const ledger = await Ledger.open(store.paths.ledger, options);
    await ledger.close();
    // Undo the key-installed entry, as if the daemon died right after writing the key state.
    const lines = ledgerLines(store);
    writeLedgerLines(store, lines.slice(0, -1));
    const state = readKeyState(store.paths.ledgerKey);
    assert.ok(state !== undefined);
    writeKeyState(store.paths.ledgerKey, { ...state, seq: state.installSeq - 1, key });
    writeFileSync(file, key.toString('hex'));
    const reopened = await Ledger.open(store.paths.ledger, options);
    await reopened.close();
    assert.equal((JSON.parse(ledgerLines(store).at(-1) ?? '{}') as { kind: string }).kind, 'key-installed');
    assert.equal(existsSync(file), false);
    assert.deepEqual((await verifyStore(store.dir, { key })).findings, []);
  });
});
