import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { readLinesForward, visitLinesBackward, visitLinesForward, type FileLine } from './line-reader.js';

const root = mkdtempSync(join(tmpdir(), 'stopd-lines-'));
after(() => rmSync(root, { recursive: true, force: true }));
let counter = 0;

function fileWith(text: string): string {
  counter += 1;
  const path = join(root, `file-${counter}`);
  writeFileSync(path, text);
  return path;
}

/** What every reader must agree with: the text cut at newlines, with byte offsets. */
function expectedLines(text: string): { text: string; complete: boolean; offset: number; end: number }[] {
  const lines = [];
  let offset = 0;
  const bytes = Buffer.from(text);
  while (offset < bytes.length) {
    const newline = bytes.indexOf(0x0a, offset);
    if (newline < 0) {
      lines.push({ text: bytes.toString('utf8', offset), complete: false, offset, end: offset });
      break;
    }
    lines.push({ text: bytes.toString('utf8', offset, newline), complete: true, offset, end: newline + 1 });
    offset = newline + 1;
  }
  return lines;
}

const shape = (line: FileLine): { text: string; complete: boolean; offset: number; end: number } => ({
  text: line.bytes.toString('utf8'),
  complete: line.complete,
  offset: line.offset,
  end: line.end,
});

async function forward(path: string, options: { offset?: number; chunkBytes?: number } = {}): Promise<FileLine[]> {
  const lines = [];
  for await (const line of readLinesForward(path, options)) lines.push(line);
  return lines;
}

function backward(path: string, options: { partialLast?: 'skip' | 'include'; chunkBytes?: number } = {}): FileLine[] {
  const lines: FileLine[] = [];
  visitLinesBackward(path, (line) => lines.push(line) > 0, options);
  return lines;
}

const SAMPLES = [
  '',
  '\n',
  '\n\n',
  'a',
  'a\n',
  '{"seq":1}\n{"seq":2}\n',
  '{"seq":1}\n{"seq":2}\n{"seq":3,"cut',
  'first\n\nthird after an empty line\n',
  'unicode ✓ in a line\nand a long one ' + 'x'.repeat(300) + '\nlast without newline é',
];

test('forward and backward readers cut every sample into the same lines at any chunk size', async () => {
  for (const text of SAMPLES) {
    const path = fileWith(text);
    const expected = expectedLines(text);
    const complete = expected.filter((line) => line.complete);
    for (const chunkBytes of [1, 2, 3, 7, 64, 1 << 20]) {
      const label = `${JSON.stringify(text.slice(0, 40))} in chunks of ${chunkBytes}`;
      assert.deepEqual((await forward(path, { chunkBytes })).map(shape), expected, `forward: ${label}`);
      assert.deepEqual(backward(path, { chunkBytes, partialLast: 'include' }).map(shape), [...expected].reverse(), `backward: ${label}`);
      assert.deepEqual(backward(path, { chunkBytes }).map(shape), [...complete].reverse(), `backward, complete only: ${label}`);
      const visited: FileLine[] = [];
      visitLinesForward(path, (line) => visited.push(line) > 0, { chunkBytes, partialLast: 'include' });
      assert.deepEqual(visited.map(shape), expected, `visit forward: ${label}`);
      const visitedComplete: FileLine[] = [];
      visitLinesForward(path, (line) => visitedComplete.push(line) > 0, { chunkBytes });
      assert.deepEqual(visitedComplete.map(shape), complete, `visit forward, complete only: ${label}`);
    }
  }
});

test('forward line numbers count from the start offset; backward ones from the end', async () => {
  const path = fileWith('one\ntwo\nthree\n');
  const fromSecond = await forward(path, { offset: 4 });
  assert.deepEqual(fromSecond.map((line) => [line.lineNumber, line.bytes.toString(), line.offset]), [
    [1, 'two', 4],
    [2, 'three', 8],
  ]);
  assert.deepEqual(backward(path).map((line) => [line.lineNumber, line.bytes.toString()]), [
    [1, 'three'],
    [2, 'two'],
    [3, 'one'],
  ]);
});

test('a visitor that returns false stops the reading', () => {
  const path = fileWith('one\ntwo\nthree\n');
  const seen: string[] = [];
  visitLinesBackward(path, (line) => {
    seen.push(line.bytes.toString());
    return seen.length < 2;
  }, { chunkBytes: 2 });
  assert.deepEqual(seen, ['three', 'two']);
  const ahead: string[] = [];
  visitLinesForward(path, (line) => {
    ahead.push(line.bytes.toString());
    return false;
  });
  assert.deepEqual(ahead, ['one']);
});

test('a missing file has no lines; any other error is thrown', async () => {
  const missing = join(root, 'missing');
  assert.deepEqual(await forward(missing), []);
  assert.deepEqual(backward(missing), []);
  visitLinesForward(missing, () => assert.fail('no line expected'));
  // A directory cannot be read as lines.
  await assert.rejects(forward(root), { code: 'EISDIR' });
  assert.throws(() => backward(root), { code: 'EISDIR' });
});

test('reading resumes at the end of the last complete line, so a line being written is read again whole', async () => {
  counter += 1;
  const path = join(root, `growing-${counter}`);
  writeFileSync(path, '{"seq":1}\n{"seq":2,"par');
  const first = await forward(path);
  const resume = first.filter((line) => line.complete).at(-1)?.end ?? 0;
  assert.equal(first.at(-1)?.end, first.at(-1)?.offset, 'an incomplete line ends where it starts');
  writeFileSync(path, '{"seq":1}\n{"seq":2,"part":true}\n');
  assert.deepEqual((await forward(path, { offset: resume })).map((line) => line.bytes.toString()), ['{"seq":2,"part":true}']);
});
