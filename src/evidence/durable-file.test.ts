import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, openSync, closeSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { directorySync, syncDirectorySync, writeAllSync, writeFileDurably, writeFileDurablySync } from './durable-file.js';

const root = mkdtempSync(join(tmpdir(), 'stopd-durable-'));
after(() => rmSync(root, { recursive: true, force: true }));
let counter = 0;

function newDir(): string {
  counter += 1;
  const dir = join(root, `dir-${counter}`);
  mkdirSync(dir);
  return dir;
}

const WRITERS = [
  ['writeFileDurably', writeFileDurably],
  // A throw in the executor rejects the promise, as the async writer's failures do.
  ['writeFileDurablySync', (...args: Parameters<typeof writeFileDurablySync>) => new Promise<void>((resolve) => resolve(writeFileDurablySync(...args)))],
] as const;

for (const [name, write] of WRITERS) {
  test(`${name} replaces a file whole, mode 0600, and leaves no temporary file`, async () => {
    const dir = newDir();
    const path = join(dir, 'state');
    await write(path, 'old\n');
    await write(path, Buffer.from('new ✓\n'), { flush: 'data' });
    assert.equal(readFileSync(path, 'utf8'), 'new ✓\n');
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.deepEqual(readdirSync(dir), ['state']);
  });

  test(`${name} sets the mode exactly, whatever the umask`, async () => {
    const dir = newDir();
    const path = join(dir, 'shared');
    const before = process.umask(0o077);
    try {
      await write(path, 'x', { mode: 0o640, syncDirectory: false });
    } finally {
      process.umask(before);
    }
    assert.equal(statSync(path).mode & 0o777, 0o640);
  });

  test(`${name} refuses a leftover temporary file unless told to overwrite it`, async () => {
    const dir = newDir();
    const path = join(dir, 'key');
    const temporaryPath = `${path}.tmp`;
    writeFileSync(temporaryPath, 'leftover of a crash');
    await assert.rejects(write(path, 'k1', { temporaryPath }), { code: 'EEXIST' });
    assert.equal(existsSync(path), false);
    // Refused and left alone (another writer may own it); reused only when the caller says it is its own.
    await write(path, 'k1', { temporaryPath, overwriteTemporary: true, syncDirectory: false });
    assert.equal(readFileSync(path, 'utf8'), 'k1');
    assert.deepEqual(readdirSync(dir), ['key']);
  });

  test(`${name} removes its temporary file and keeps the old content when the rename fails`, async () => {
    const dir = newDir();
    // A non-empty directory cannot be replaced by a file.
    const path = join(dir, 'taken');
    mkdirSync(path);
    writeFileSync(join(path, 'inside'), 'x');
    await assert.rejects(write(path, 'data'), { code: 'EISDIR' });
    assert.deepEqual(readdirSync(dir), ['taken']);
    assert.deepEqual(readdirSync(path), ['inside']);
  });

  test(`${name} gives the file the times asked for`, async () => {
    const dir = newDir();
    const path = join(dir, 'old.json.gz');
    const mtime = new Date('2020-01-02T03:04:05.000Z');
    const atime = new Date('2020-01-03T00:00:00.000Z');
    await write(path, 'packed', { times: { atime, mtime } });
    assert.equal(statSync(path).mtime.toISOString(), mtime.toISOString());
    assert.equal(statSync(path).atime.toISOString(), atime.toISOString());
  });

  test(`${name} fails with the file system's error in a missing directory`, async () => {
    await assert.rejects(write(join(root, 'no-such-dir', 'file'), 'data'), { code: 'ENOENT' });
  });
}

test('directorySync shares flushes among concurrent callers, and each caller sees a failing flush', async () => {
  const dir = newDir();
  await Promise.all(Array.from({ length: 10 }, () => directorySync(dir)));
  // A flush that cannot run (no such directory) rejects every caller waiting for it, the
  // first and the queued ones alike, and the next call tries again.
  const missing = join(dir, 'missing');
  const results = await Promise.allSettled(Array.from({ length: 5 }, () => directorySync(missing)));
  assert.deepEqual(results.map((result) => result.status), Array(5).fill('rejected'));
  mkdirSync(missing);
  await directorySync(missing);
});

test('syncDirectorySync throws unless asked for best effort', () => {
  const missing = join(root, 'missing-dir');
  assert.throws(() => syncDirectorySync(missing), { code: 'ENOENT' });
  assert.doesNotThrow(() => syncDirectorySync(missing, { bestEffort: true }));
  assert.doesNotThrow(() => syncDirectorySync(newDir()));
});

test('writeAllSync writes every byte at the file position', () => {
  const path = join(newDir(), 'log');
  const fd = openSync(path, 'a');
  try {
    writeAllSync(fd, Buffer.from('one\n'));
    writeAllSync(fd, Buffer.alloc(200_000, 0x61));
  } finally {
    closeSync(fd);
  }
  const text = readFileSync(path, 'utf8');
  assert.equal(text.length, 4 + 200_000);
  assert.ok(text.startsWith('one\naaa'));
});
