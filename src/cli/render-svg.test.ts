import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { renderSvg } from './render-svg.js';

const run = promisify(execFile);

test('renderSvg renders DOT as an SVG document with a group per node and edge', async () => {
  const svg = await renderSvg('digraph g { "a" [label="first"]; "b"; "a" -> "b" [label="pipe:[7]"]; }');
  assert.match(svg, /^<\?xml version="1\.0" encoding="UTF-8" standalone="no"\?>/);
  assert.match(svg, /<svg width="\d+pt" height="\d+pt"/);
  assert.equal(svg.match(/<g id="node\d+" class="node">/g)?.length, 2);
  assert.equal(svg.match(/<g id="edge\d+" class="edge">/g)?.length, 1);
  assert.ok(svg.includes('<title>a&#45;&gt;b</title>'));
  assert.ok(svg.includes('>first</text>'));
  assert.ok(svg.trimEnd().endsWith('</svg>'));
});

test('renderSvg rejects DOT that Graphviz cannot read, naming its complaint', async () => {
  await assert.rejects(renderSvg('digraph { a -> }'), (error: Error) => {
    assert.match(error.message, /^Cannot render picture: Graphviz failed \(error: syntax error in line 1/);
    return true;
  });
  // The instance survives a failed render.
  assert.match(await renderSvg('digraph { ok }'), /<title>ok<\/title>/);
});

test('renderSvg loads @viz-js/viz only when first called, not when its module is imported', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'render-svg-'));
  try {
    // A module resolve hook (it runs before any module is evaluated) notes every import of the package.
    const log = join(dir, 'resolved.log');
    const hook = join(dir, 'hook.mjs');
    await writeFile(
      hook,
      `import { appendFileSync } from 'node:fs';
export async function resolve(specifier, context, next) {
  if (specifier.includes('@viz-js/viz')) appendFileSync(${JSON.stringify(log)}, specifier + '\\n');
  return next(specifier, context);
}
`,
    );
    await writeFile(log, '');
    const module = pathToFileURL(fileURLToPath(new URL('./render-svg.js', import.meta.url))).href;
    const script = `
import { readFileSync } from 'node:fs';
const { renderSvg } = await import(${JSON.stringify(module)});
const before = readFileSync(${JSON.stringify(log)}, 'utf8');
await renderSvg('digraph { a }');
const after = readFileSync(${JSON.stringify(log)}, 'utf8');
process.stdout.write(JSON.stringify({ before, after }));
`;
    const register = `data:text/javascript,import { register } from 'node:module'; register(${JSON.stringify(pathToFileURL(hook).href)});`;
    const { stdout } = await run(process.execPath, ['--import', register, '--input-type=module', '-e', script], { timeout: 30_000 });
    const { before, after } = JSON.parse(stdout) as { before: string; after: string };
    assert.equal(before, '');
    assert.equal(after, '@viz-js/viz\n');
    assert.equal(await readFile(log, 'utf8'), '@viz-js/viz\n');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
