import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { Ledger, readLedger } from './ledger.js';
import { GENESIS_HASH, hashLine } from './ledger-format.js';

const dir = mkdtempSync(join(tmpdir(), 'stopd-ledger-'));
after(() => rmSync(dir, { recursive: true, force: true }));

async function collect(path: string) {
  const lines = [];
  for await (const line of readLedger(path)) lines.push(line);
  return lines;
}

test('Ledger.append chains every entry to the hash of the line before', async () => {
  const path = join(dir, 'chain');
  const ledger = await Ledger.open(path);
  await Promise.all([ledger.append({ kind: 'a' }), ledger.append({ kind: 'b' }), ledger.append({ kind: 'c' })]);
  await ledger.close();
  const lines = await collect(path);
  assert.deepEqual(lines.map((l) => l.entry?.kind), ['a', 'b', 'c']);
  assert.deepEqual(lines.map((l) => l.entry?.seq), [1, 2, 3]);
  assert.equal(lines[0]?.entry?.prev, GENESIS_HASH);
  assert.equal(lines[1]?.entry?.prev, hashLine(lines[0]?.text ?? ''));
  assert.ok(lines.every((l) => l.chained));
});

test('Ledger.open continues the chain of an existing ledger', async () => {
  const path = join(dir, 'reopen');
  const first = await Ledger.open(path);
  await first.append({ kind: 'one' });
  await first.close();
  const second = await Ledger.open(path);
  const entry = await second.append({ kind: 'two' });
  await second.close();
  assert.equal(entry.seq, 2);
  assert.ok((await collect(path)).every((l) => l.chained));
});

test('Ledger.open cuts a partial tail and records its bytes in a recovery entry', async () => {
  const path = join(dir, 'partial');
  const ledger = await Ledger.open(path);
  await ledger.append({ kind: 'whole' });
  await ledger.close();
  appendFileSync(path, '{"seq":2,"kind":"half');
  const reopened = await Ledger.open(path);
  await reopened.close();
  const lines = await collect(path);
  assert.deepEqual(lines.map((l) => l.entry?.kind), ['whole', 'recovery']);
  assert.equal(Buffer.from(String(lines[1]?.entry?.discarded), 'base64').toString(), '{"seq":2,"kind":"half');
  assert.ok(lines.every((l) => l.chained));
});

test('readLedger reports a line whose predecessor was altered as not chained', async () => {
  const path = join(dir, 'altered');
  const ledger = await Ledger.open(path);
  for (const kind of ['a', 'b', 'c'] as const) await ledger.append({ kind });
  await ledger.close();
  const text = readFileSync(path, 'utf8').replace('"kind":"a"', '"kind":"x"');
  writeFileSync(path, text);
  const chained = (await collect(path)).map((l) => l.chained);
  assert.deepEqual(chained, [true, false, true]);
});

test('Ledger.append rejects after close', async () => {
  const ledger = await Ledger.open(join(dir, 'closed'));
  await ledger.close();
  await assert.rejects(ledger.append({ kind: 'late' }), { code: 'ERR_STORE_WRITE' });
});

test('readLedger yields nothing for a missing file', async () => {
  assert.deepEqual(await collect(join(dir, 'missing')), []);
});
