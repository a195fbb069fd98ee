import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const MODULE = fileURLToPath(new URL('./run-program.js', import.meta.url));

/** Runs a program built on runProgram whose main does `body`, its stdout read by `reader` (a shell pipeline). */
function runWith(body: string, reader: string): { stdout: string; status: number | null } {
  const script = `import { runProgram } from ${JSON.stringify(MODULE)}; runProgram('t', async () => { ${body} });`;
  const program = `${JSON.stringify(process.execPath)} --input-type=module -e ${JSON.stringify(script)}`;
  // PIPESTATUS: the program's own exit status, not the reader's.
  const result = spawnSync('bash', ['-c', `${program} | ${reader}; exit \${PIPESTATUS[0]}`], { encoding: 'utf8' });
  return { stdout: result.stdout, status: result.status };
}

test('runProgram exits with main\'s status only after a large output reached a slow reader', () => {
  // The reader starts reading after the program has written everything and asked to exit:
  // process.exit alone would cut the output at the pipe's 64 KiB.
  const result = runWith("process.stdout.write('x'.repeat(2_000_000)); return 3;", '(sleep 1; wc -c)');
  assert.equal(result.stdout.trim(), '2000000');
  assert.equal(result.status, 3);
});

test('runProgram turns a usage error into one line on stderr and exit 64, anything else into exit 70', () => {
  const errors = JSON.stringify(fileURLToPath(new URL('../errors.js', import.meta.url)));
  const usage = runWith(`const { UsageError } = await import(${errors}); throw new UsageError('Bad option --x');`, 'cat');
  assert.equal(usage.status, 64);
  const crash = runWith("throw new TypeError('boom');", 'cat');
  assert.equal(crash.status, 70);
});

test('runProgram does not hang when the reader of stdout went away', () => {
  const result = runWith("process.stdout.write('y'.repeat(1_000_000)); return 0;", 'head -c 10 >/dev/null');
  assert.ok(result.status === 0 || result.status === 1, `exit status ${String(result.status)}`);
});
