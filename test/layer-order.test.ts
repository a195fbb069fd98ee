/**
 * The layer order is enforced by lint (`stopd/layer-order`, lint/layer-order.mjs, configured in
 * eslint.config.js): source text placed at a path under src/ is linted with the project's own
 * configuration, so these cases show what `npm run lint` would say of such a file. Type-aware
 * rules are switched off for them, because a file that is not on disk is in no TypeScript
 * project; the layer rule needs no types.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, test } from 'node:test';
import { ESLint, type Linter } from 'eslint';
import tseslint from 'typescript-eslint';

const ROOT = resolve(import.meta.dirname, '../..');
const eslint = new ESLint({ cwd: ROOT, overrideConfig: tseslint.configs.disableTypeChecked });

/** The layer-rule messages `npm run lint` gives `code` at `path` (relative to the repository). */
async function layerMessages(path: string, code: string): Promise<Linter.LintMessage[]> {
  const [result] = await eslint.lintText(code, { filePath: join(ROOT, path) });
  assert.ok(result !== undefined);
  const fatal = result.messages.filter((message) => message.fatal === true);
  assert.deepEqual(fatal, [], `${path} did not parse`);
  return result.messages.filter((message) => message.ruleId === 'stopd/layer-order');
}

async function assertRejected(path: string, code: string, pattern: RegExp): Promise<void> {
  const messages = await layerMessages(path, code);
  assert.equal(messages.length, 1, `${path}: expected one layer error for:\n${code}\ngot ${JSON.stringify(messages)}`);
  assert.equal(messages[0]?.severity, 2, 'a layer violation is an error, not a warning');
  assert.match(messages[0]?.message ?? '', pattern);
}

async function assertAccepted(path: string, code: string): Promise<void> {
  assert.deepEqual(await layerMessages(path, code), [], `${path}: expected no layer error for:\n${code}`);
}

describe('layer order lint rule', () => {
  test('the configured order is the one README states: cli > daemon > evidence > trace > host > protocol', async () => {
    const config = (await eslint.calculateConfigForFile(join(ROOT, 'src/host/types.ts'))) as Linter.Config;
    const setting = config.rules?.['stopd/layer-order'] as [unknown, { layers: string[] }] | undefined;
    assert.ok(setting !== undefined, 'stopd/layer-order is not configured for src/');
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const stated = /^Layers, imports pointing down only: ((?:\w+ > )+\w+)/m.exec(readme)?.[1];
    assert.ok(stated !== undefined, 'README Layout does not state the layer order');
    assert.deepEqual([...setting[1].layers].reverse(), stated.split(' > '));
  });

  test('an upward import fails, in every import form', async () => {
    const upward = /is layer trace, which is above layer host: imports point down only \(cli > daemon > evidence > trace > host > protocol\)/;
    await assertRejected('src/host/probe.ts', "import { resolveClosure } from '../trace/closure.js';\nexport const f = resolveClosure;\n", upward);
    await assertRejected('src/host/probe.ts', "import type { Closure } from '../trace/types.js';\nexport type C = Closure;\n", upward);
    await assertRejected('src/host/probe.ts', "export { resolveClosure } from '../trace/index.js';\n", upward);
    await assertRejected('src/host/probe.ts', "export * from '../trace/index.js';\n", upward);
    await assertRejected('src/host/probe.ts', "export const load = () => import('../trace/closure.js');\n", upward);
    await assertRejected('src/host/probe.ts', "export type C = import('../trace/types.js').Closure;\n", upward);
    // Another spelling of the same module is the same module.
    await assertRejected('src/host/probe.ts', "import type { Closure } from './../../src/trace/types.js';\nexport type C = Closure;\n", upward);
    await assertRejected('src/protocol/probe.ts', "import type { HostView } from '../host/types.js';\nexport type H = HostView;\n", /above layer protocol/);
    await assertRejected('src/daemon/probe.ts', "import { parseArgs } from '../cli/args.js';\nexport const p = parseArgs;\n", /is layer cli, which is above layer daemon/);
    // A unit test belongs to its code's layer.
    await assertRejected('src/evidence/probe.test.ts', "import { Semaphore } from '../daemon/semaphore.js';\nexport const s = Semaphore;\n", /is layer daemon, which is above layer evidence/);
  });

  test('errors.ts is below every layer and index.ts above every layer', async () => {
    await assertRejected('src/errors.ts', "import type { Request } from './protocol/request.js';\nexport type R = Request;\n", /is layer protocol, which is above errors\.ts \(below every layer\)/);
    await assertRejected('src/cli/probe.ts', "import { queryStop } from '../index.js';\nexport const q = queryStop;\n", /is index\.ts \(above every layer\), which is above layer cli/);
    await assertRejected('src/cli/probe.ts', "import { queryStop } from 'stopd';\nexport const q = queryStop;\n", /above every layer/);
    await assertAccepted('src/protocol/probe.ts', "import { StopdError } from '../errors.js';\nexport class E extends StopdError {}\n");
    await assertAccepted('src/index.ts', "export { main } from './cli/stopctl.js';\nexport * from './protocol/index.js';\n");
  });

  test('a downward or same-layer import passes', async () => {
    await assertAccepted('src/trace/probe.ts', "import type { HostView } from '../host/types.js';\nexport type H = HostView;\n");
    await assertAccepted('src/cli/probe.ts', "import { Semaphore } from '../daemon/semaphore.js';\nimport { parseRequest } from '../protocol/index.js';\nexport const s = [Semaphore, parseRequest];\n");
    await assertAccepted('src/daemon/probe.ts', "import { Semaphore } from './semaphore.js';\nimport { readFile } from 'node:fs/promises';\nexport const s = [Semaphore, readFile];\n");
  });

  test('test support does not reach shipped code: only unit tests import it', async () => {
    await assertRejected('src/trace/probe.ts', "import { buildFigure7 } from './figures.js';\nexport const f = buildFigure7;\n", /test support that does not ship/);
    await assertRejected('src/daemon/probe.ts', "import { FakeHost } from '../host/fake-host.js';\nexport const f = FakeHost;\n", /test support that does not ship/);
    await assertRejected('src/daemon/probe.ts', "import { startDaemon } from '../../test/support/daemon.js';\nexport const s = startDaemon;\n", /outside src\/, which is all that ships/);
    await assertAccepted('src/evidence/probe.test.ts', "import { buildFigure7 } from '../trace/figures.js';\nexport const f = buildFigure7;\n");
    // Test support is still layered: a host test cannot use the trace layer's figures.
    await assertRejected('src/host/probe.test.ts', "import { buildFigure7 } from '../trace/figures.js';\nexport const f = buildFigure7;\n", /above layer host/);
  });

  test('a file or import outside the order fails until it is given a place', async () => {
    await assertRejected('src/util/probe.ts', 'export const x = 1;\n', /src\/util\/probe\.ts is in no layer/);
    await assertRejected('src/cli/probe.ts', "import { x } from '../util/probe.js';\nexport const y = x;\n", /'\.\.\/util\/probe\.js' \(src\/util\/probe\.js\) is in no layer/);
  });
});
