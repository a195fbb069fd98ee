/**
 * Store bounds against a real daemon (issue 13, item 0): the ledger is cut into segments and
 * the oldest are dropped past a small budget, with `stopctl verify` clean and saying from which
 * seq on it could check; and one requester flooding SV requests fills only its share of the
 * record store, while another requester's records are still kept.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { exchange, STOPCTL, STOPD, startDaemon, type DaemonHandle } from './support/daemon.js';
import { listen, type TestListener } from './support/peers.js';
import { requestSv } from './support/sv-record.js';

const isRoot = process.getuid?.() === 0;
const NEEDS_ROOT = 'needs root: SV requests read /proc of every process';

const dir = mkdtempSync(join(tmpdir(), 'stopd-bounds-'));
after(() => rmSync(dir, { recursive: true, force: true }));

interface Entry {
  readonly seq: number;
  readonly kind: string;
  readonly prev: string;
  readonly token?: string;
  readonly record?: string;
  readonly reason?: string;
  readonly group?: string;
  readonly lastSeq?: number;
  readonly lastHash?: string;
  readonly [field: string]: unknown;
}

/** The ledger's files in order (rotated segments, then the active file) and their entries. */
function readLedgerFiles(storeDir: string): { files: { name: string; bytes: number }[]; entries: Entry[] } {
  let segments: string[] = [];
  try {
    segments = readdirSync(join(storeDir, 'ledger-segments')).sort();
  } catch {
    segments = [];
  }
  const paths = [...segments.map((name) => join(storeDir, 'ledger-segments', name)), join(storeDir, 'ledger')];
  const files = paths.map((path) => ({ name: path.slice(storeDir.length + 1), bytes: statSync(path).size }));
  const entries = paths.flatMap((path) =>
    readFileSync(path, 'utf8')
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => JSON.parse(line) as Entry),
  );
  return { files, entries };
}

/** Bytes of every file under `path`. */
function treeBytes(path: string): number {
  const info = statSync(path);
  if (!info.isDirectory()) return info.size;
  return readdirSync(path).reduce((sum, name) => sum + treeBytes(join(path, name)), 0);
}

function runStopctl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [STOPCTL, ...args], { timeout: 30_000 }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : -1, stdout, stderr });
    });
  });
}

describe('ledger retention with a real daemon', () => {
  const SEGMENT = 2048;
  const BUDGET = 6144;
  let daemon: DaemonHandle | undefined;
  const storeDir = mkdtempSync(join(dir, 'ledger-'));

  after(async () => {
    await daemon?.stop();
  });

  test('stopd with a small ledger budget drops its oldest segments and keeps the ledger within the budget', async () => {
    // --random-errors: every reply (these connections do not exist) is a token the ledger explains.
    // --history off: the ledger must hold these replies only, not history gaps about the host's other connections.
    daemon = await startDaemon(['--random-errors', '--history', 'off', '--ledger-segment-bytes', `${SEGMENT}`, '--ledger-max-bytes', `${BUDGET}`], { storeDir });
    const tokens: string[] = [];
    // 60 requests of ~500 ledger bytes each, from four requesters, several per connection.
    for (let round = 0; round < 5; round += 1) {
      for (const from of ['127.0.0.3', '127.0.0.4', '127.0.0.5', '127.0.0.6']) {
        const lines = [0, 1, 2].map((index) => `${40000 + round * 10 + index},${50000 + index}\r\n`).join('');
        const { lines: replies } = await exchange(daemon, lines, { expectLines: 3, localAddress: from });
        assert.equal(replies.length, 3, `three replies: ${replies.join(' | ')}`);
        for (const reply of replies) {
          const token = /:USERID:OTHER:([0-9a-f]{64})$/.exec(reply)?.[1];
          assert.ok(token !== undefined, `a token: ${reply}`);
          tokens.push(token);
        }
      }
    }
    const { files, entries } = readLedgerFiles(storeDir);
    const drops = entries.filter((entry) => entry.kind === 'segment-dropped');
    assert.ok(drops.length >= 2, `old segments were dropped: ${files.map((file) => file.name).join(' ')}`);
    assert.notEqual(files[0]?.name, 'ledger-segments/0000000000000001.ledger', 'the first segment is gone');
    const total = files.reduce((sum, file) => sum + file.bytes, 0);
    assert.ok(total <= BUDGET + SEGMENT, `the ledger holds ${total} bytes, within ${BUDGET} plus one segment`);
    assert.ok(treeBytes(storeDir) <= BUDGET + SEGMENT + 4096, `the whole store holds ${treeBytes(storeDir)} bytes`);
    const first = entries[0];
    assert.equal(first?.kind, 'segment-start');
    const lastDrop = drops.at(-1);
    assert.equal(lastDrop?.lastSeq, (first?.seq ?? 0) - 1);
    assert.equal(lastDrop?.lastHash, first?.prev, 'the drop recorded the hash the first kept entry chains onto');
    assert.ok(!entries.some((entry) => entry.token === tokens[0]), 'the first reply entry is gone');
    assert.ok(entries.some((entry) => entry.token === tokens.at(-1)), 'the last is kept');

    const verify = await runStopctl(['verify', '--store', storeDir]);
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    assert.match(verify.stdout, new RegExp(`Checked {2}from seq ${first?.seq} on: seqs 1\\.\\.${(first?.seq ?? 0) - 1} were dropped by the ledger's retention`));
    assert.match(verify.stdout, /Verdict {2}clean/);
    const json = JSON.parse((await runStopctl(['verify', '--store', storeDir, '--json'])).stdout) as {
      clean: boolean;
      ledger: { checkedFromSeq: number; droppedThroughSeq: number; firstSeq: number };
    };
    assert.equal(json.clean, true);
    assert.equal(json.ledger.checkedFromSeq, first?.seq);
    assert.equal(json.ledger.firstSeq, first?.seq);

    const gone = await runStopctl(['redeem', tokens[0] ?? '', '--store', storeDir]);
    assert.equal(gone.code, 2, gone.stdout);
    assert.match(gone.stdout, /dropped by the ledger's retention/);
    assert.doesNotMatch(gone.stdout, /INTEGRITY FAILURE/);
    const kept = await runStopctl(['redeem', tokens.at(-1) ?? '', '--store', storeDir]);
    assert.equal(kept.code, 0, kept.stdout);
  });

  test('stopd started again on the dropped store goes on with the chain, and verify stays clean', async () => {
    assert.equal(await daemon?.stop(), 0);
    // --history off: the ledger must hold these replies only, not history gaps about the host's other connections.
    daemon = await startDaemon(['--random-errors', '--history', 'off', '--ledger-segment-bytes', `${SEGMENT}`, '--ledger-max-bytes', `${BUDGET}`], { storeDir });
    const { lines } = await exchange(daemon, '41000,51000\r\n', { localAddress: '127.0.0.3' });
    assert.match(lines[0] ?? '', /:USERID:OTHER:/);
    assert.equal(await daemon.stop(), 0);
    daemon = undefined;
    const verify = await runStopctl(['verify', '--store', storeDir]);
    assert.equal(verify.code, 0, verify.stdout);
    assert.match(verify.stdout, /Checked {2}from seq \d+ on/);
  });
});

describe('per-requester share of the record store with a real daemon', { skip: isRoot ? false : NEEDS_ROOT }, () => {
  const listeners: TestListener[] = [];
  const clients: Socket[] = [];
  const ports = new Map<string, { local: number; remote: number }>();
  let daemon: DaemonHandle | undefined;

  before(async () => {
    // One connection to each requester: the SV requests ask about it (RFC 1413 rule).
    for (const address of ['127.0.0.2', '127.0.0.7']) {
      const peer = await listen(address);
      const client = connect({ host: address, port: peer.port });
      await once(client, 'connect');
      await peer.nextAccepted();
      listeners.push(peer);
      clients.push(client);
      ports.set(address, { local: client.localPort ?? 0, remote: peer.port });
    }
  });
  after(async () => {
    for (const client of clients) client.destroy();
    for (const peer of listeners) await peer.close();
    await daemon?.stop();
  });

  test('one requester flooding SV fills only its share; the other requester\'s records are still kept', async () => {
    const MAX = 512 * 1024;
    daemon = await startDaemon(['--max-store-bytes', `${MAX}`, '--max-requester-share', '10']);
    const storeDir = daemon.storeDir;
    const flooder = ports.get('127.0.0.2') ?? { local: 0, remote: 0 };
    const other = ports.get('127.0.0.7') ?? { local: 0, remote: 0 };
    const recordBytes = (token: string): number | undefined => {
      try {
        return statSync(join(storeDir, 'records', `${token}.json`)).size;
      } catch {
        return undefined;
      }
    };
    const flood: string[] = [];
    // Until the ledger says a record of the flooder was not kept (bounded: a record is > 500 bytes).
    for (let index = 0; index < 120; index += 1) {
      flood.push(await requestSv(daemon, flooder, { from: '127.0.0.2' }));
      if (recordBytes(flood.at(-1) ?? '') === undefined) break;
    }
    const notKept = readLedgerFiles(storeDir).entries.filter((entry) => entry.kind === 'record-not-kept');
    assert.ok(notKept.length >= 1, `the flooder reached its share within ${flood.length} requests`);
    assert.ok(notKept.every((entry) => entry.reason === 'requester-share' && entry.group === '127.0.0.2'), JSON.stringify(notKept[0]));
    const floodKept = flood.map(recordBytes).filter((size): size is number => size !== undefined);
    const share = Math.floor(MAX * 0.1);
    assert.ok(floodKept.reduce((sum, size) => sum + size, 0) <= share, 'the flooder holds at most its share');
    // More flooding changes nothing for it...
    for (let index = 0; index < 3; index += 1) {
      const token = await requestSv(daemon, flooder, { from: '127.0.0.2' });
      assert.equal(recordBytes(token), undefined);
    }
    // ...and the other requester's evidence is still saved.
    for (let index = 0; index < 3; index += 1) {
      const token = await requestSv(daemon, other, { from: '127.0.0.7' });
      assert.ok(recordBytes(token) !== undefined, 'the other requester\'s record is kept');
    }
    assert.match(daemon.stderr(), /Requester 127\.0\.0\.2 reached its share of the store/);
    const redeemed = await runStopctl(['redeem', flood.at(-1) ?? '', '--store', storeDir]);
    assert.equal(redeemed.code, 0, redeemed.stdout);
    assert.match(redeemed.stdout, /record not kept: requester 127\.0\.0\.2 reached its share of the store \(--max-requester-share 10%/);
    const verify = await runStopctl(['verify', '--store', storeDir]);
    assert.equal(verify.code, 0, verify.stdout);
  });
});

describe('store bound settings', () => {
  function checkConfig(args: string[]): Promise<{ code: number; stderr: string }> {
    return new Promise((resolve) => {
      execFile(process.execPath, [STOPD, '--config', '/dev/null', '--check-config', ...args], { timeout: 20_000 }, (error, _stdout, stderr) => {
        resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : -1, stderr });
      });
    });
  }

  test('stopd refuses a ledger segment larger than half the ledger budget, or too small, in one sentence (exit 64)', async () => {
    const big = await checkConfig(['--ledger-segment-bytes', '1G']);
    assert.equal(big.code, 64);
    assert.match(big.stderr, /^stopd: --ledger-segment-bytes \(1073741824\) must be at most half of --ledger-max-bytes \(1073741824\)/);
    const small = await checkConfig(['--ledger-segment-bytes', '100']);
    assert.equal(small.code, 64);
    assert.match(small.stderr, /must be at least 1024 bytes/);
    const share = await checkConfig(['--max-requester-share', '0']);
    assert.equal(share.code, 64);
    assert.equal((await checkConfig(['--ledger-segment-bytes', '4M', '--ledger-max-bytes', '8M', '--ledger-retention', '30'])).code, 0);
  });
});
