import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import type { HistoryConnection } from './history-entry.js';
import { listHistorySegments } from './history-files.js';
import { HistoryJournal } from './history-journal.js';
import { Ledger } from './ledger.js';
import { verifyStore } from './verify.js';

const root = mkdtempSync(join(tmpdir(), 'stopd-history-verify-'));
after(() => rmSync(root, { recursive: true, force: true }));
let stores = 0;

function connection(port: number): Omit<HistoryConnection, 'seq'> {
  return {
    socket: `ffff8880${port.toString(16)}`,
    netns: 4026531840,
    local: { address: '192.0.2.20', port },
    remote: { address: '203.0.113.9', port: 443 },
    connectedAt: new Date(1_800_000_000_000 + port).toISOString(),
    establishedAt: null,
    closedAt: null,
    tid: port,
    pid: port,
    uid: 1001,
    gid: 1001,
    loginuid: 1001,
    sessionid: 7,
    comm: 'curl',
    capturedAt: null,
    ancestry: [],
    upstream: [],
  };
}

/** A store whose journal holds `batches` batches of 3 connections, closed cleanly. */
async function makeStore(options: { batches: number; segmentBytes?: number; maxBytes?: number }): Promise<string> {
  stores += 1;
  const dir = join(root, `store-${stores}`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const ledger = await Ledger.open(join(dir, 'ledger'));
  const journal = await HistoryJournal.open(dir, { ledger, pruneIntervalMs: 0, ...options });
  for (let batch = 0; batch < options.batches; batch += 1) {
    await journal.append([0, 1, 2].map((i) => ({ kind: 'open' as const, connection: connection(50000 + batch * 3 + i) })));
  }
  await journal.prune();
  await journal.close();
  await ledger.close();
  return dir;
}

test('verifyStore finds a clean history journal clean, including after drops noted in the ledger', async () => {
  const dir = await makeStore({ batches: 20, segmentBytes: 2048, maxBytes: 8192 });
  const report = await verifyStore(dir);
  assert.deepEqual(report.findings, []);
  assert.ok(report.history !== null);
  assert.ok((report.history.droppedThroughSeq ?? 0) > 0, 'segments were dropped');
  assert.equal(report.history.firstSeq, (report.history.droppedThroughSeq ?? 0) + 1);
  assert.ok(report.history.anchorsChecked >= 1);
});

test('verifyStore reports a history line altered in place', async () => {
  const dir = await makeStore({ batches: 3 });
  const segment = listHistorySegments(dir)[0];
  assert.ok(segment !== undefined);
  const text = readFileSync(segment.path, 'utf8');
  writeFileSync(segment.path, text.replace('"uid":1001,"gid":1001', '"uid":1002,"gid":1001'));
  const report = await verifyStore(dir);
  assert.equal(report.clean, false);
  const finding = report.findings.find((f) => f.kind === 'entry-altered');
  assert.ok(finding !== undefined, JSON.stringify(report.findings));
  assert.match(finding.where, /^history\/0000000000000001\.history line 1 \(seq 1\)$/);
});

test('verifyStore reports history entries cut from the end, against the checkpoint in the ledger', async () => {
  const dir = await makeStore({ batches: 2 });
  const segment = listHistorySegments(dir)[0];
  assert.ok(segment !== undefined);
  const lines = readFileSync(segment.path, 'utf8').split('\n').filter((line) => line !== '');
  writeFileSync(segment.path, lines.slice(0, 4).map((line) => `${line}\n`).join(''));
  const report = await verifyStore(dir);
  const finding = report.findings.find((f) => f.kind === 'entry-missing');
  assert.ok(finding !== undefined, JSON.stringify(report.findings));
  assert.match(finding.detail, /up to seq 7 were written, but the journal ends at seq 4/);
});

test('verifyStore reports a history segment deleted without a history-dropped note', async () => {
  const dir = await makeStore({ batches: 12, segmentBytes: 2048, maxBytes: 1 << 30 });
  const segments = listHistorySegments(dir);
  assert.ok(segments.length >= 3);
  unlinkSync(segments[0]?.path ?? '');
  const report = await verifyStore(dir);
  assert.equal(report.clean, false);
  assert.ok(report.findings.some((f) => f.kind === 'entry-missing' && f.where.startsWith('history seq 1-')), JSON.stringify(report.findings));
  // The sealed segment's anchor in the ledger names the deleted file's last hash too.
  assert.ok(report.history !== null && report.history.anchorsChecked >= 2);
});
