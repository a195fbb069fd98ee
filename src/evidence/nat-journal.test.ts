import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, test } from 'node:test';
import type { TrackedFlow } from '../host/conntrack.js';
import { NatJournal } from './nat-journal.js';

const dirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'stopd-nat-journal-'));
  dirs.push(dir);
  return join(dir, 'nat');
}
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A masqueraded flow: 198.51.100.10:port -> 192.0.2.20:80, seen outside as 192.0.2.1:translated. */
function masqueraded(port: number, translated: number, id = port): TrackedFlow {
  return {
    original: { source: { address: '198.51.100.10', port }, destination: { address: '192.0.2.20', port: 80 } },
    reply: { source: { address: '192.0.2.20', port: 80 }, destination: { address: '192.0.2.1', port: translated } },
    sourceNat: true,
    destinationNat: false,
    state: 'ESTABLISHED',
    zone: 0,
    id,
    timeoutSec: 100,
  };
}
const OUT = { address: '192.0.2.20', port: 80 };
const gw = (port: number): { address: string; port: number } => ({ address: '192.0.2.1', port });

test('NatJournal.findByReply finds a translated flow by its reply tuple, with when it began and closed', () => {
  let now = Date.parse('2026-01-01T00:00:00Z');
  const journal = new NatJournal({ dir: tempDir(), now: () => now });
  journal.add([{ kind: 'new', flow: masqueraded(40000, 50000) }]);
  assert.equal(journal.findByReply(OUT, gw(50000))?.closed, undefined);
  now += 5000;
  journal.add([{ kind: 'destroy', flow: masqueraded(40000, 50000) }]);
  const found = journal.findByReply(OUT, gw(50000));
  assert.deepEqual(found?.flow.original.source, { address: '198.51.100.10', port: 40000 });
  assert.equal(found?.seen, '2026-01-01T00:00:00.000Z');
  assert.equal(found?.closed, '2026-01-01T00:00:05.000Z');
  assert.equal(journal.findByReply(OUT, gw(50001)), undefined);
});

test('NatJournal ignores flows that were not translated', () => {
  const journal = new NatJournal({ dir: tempDir() });
  journal.add([{ kind: 'new', flow: { ...masqueraded(40000, 40000), sourceNat: false } }]);
  assert.equal(journal.size, 0);
  assert.equal(journal.findByReply(OUT, gw(40000)), undefined);
});

test('NatJournal remembers across a restart and skips a torn last line', () => {
  const dir = tempDir();
  new NatJournal({ dir }).add([{ kind: 'new', flow: masqueraded(40000, 50000) }]);
  appendFileSync(join(dir, 'journal.jsonl'), '{"time":"2026-01-0');
  const reopened = new NatJournal({ dir });
  assert.equal(reopened.findByReply(OUT, gw(50000))?.flow.original.source.port, 40000);
});

test('NatJournal keeps the latest flow when ports are reused', () => {
  const journal = new NatJournal({ dir: tempDir() });
  journal.add([{ kind: 'new', flow: masqueraded(40000, 50000, 1) }, { kind: 'destroy', flow: masqueraded(40000, 50000, 1) }]);
  journal.add([{ kind: 'new', flow: masqueraded(40001, 50000, 2) }]);
  assert.equal(journal.findByReply(OUT, gw(50000))?.flow.original.source.port, 40001);
});

test('NatJournal stays within maxBytes on disk and in memory', () => {
  const dir = tempDir();
  const journal = new NatJournal({ dir, maxBytes: 64 * 1024 });
  for (let i = 0; i < 2000; i++) journal.add([{ kind: 'new', flow: masqueraded(10000 + i, 20000 + i) }]);
  const bytes = readdirSync(dir).reduce((sum, name) => sum + statSync(join(dir, name)).size, 0);
  assert.ok(bytes <= 64 * 1024, `${bytes} bytes on disk`);
  assert.ok(journal.size <= 64 * 1024 / 400 + 1, `${journal.size} flows in memory`);
  assert.ok(journal.findByReply(OUT, gw(20000 + 1999)) !== undefined, 'the newest flow is kept');
  assert.equal(journal.findByReply(OUT, gw(20000)), undefined, 'the oldest was dropped');
});

test('NatJournal answers nothing past the retention', () => {
  let now = Date.parse('2026-01-01T00:00:00Z');
  const journal = new NatJournal({ dir: tempDir(), retentionMs: 60_000, now: () => now });
  journal.add([{ kind: 'destroy', flow: masqueraded(40000, 50000) }]);
  now += 61_000;
  assert.equal(journal.findByReply(OUT, gw(50000)), undefined);
});

test('NatJournal counts lost events', () => {
  const journal = new NatJournal({ dir: tempDir() });
  journal.add([], { lost: true });
  assert.equal(journal.lost, 1);
});
