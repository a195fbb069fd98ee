/**
 * The docs stay true: every `sh example` block of the README runs, in order, against the real
 * programs (a daemon on a free loopback port, a temporary store), and its output has the
 * shape the README shows; the manual pages' examples are README examples; every setting and
 * option of `stopd --help` and `stopctl --help` is documented in the manual pages (and the
 * settings, with their defaults, in the README); the manual pages render without warnings.
 *
 * The README's "Examples in this README" section describes the block tags this test obeys.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DAEMON_OPTIONS } from '../src/cli/daemon-options.js';
import { STOPCTL, STOPD } from './support/daemon.js';

const ROOT = resolve(import.meta.dirname, '../..');
const README = readFileSync(join(ROOT, 'README.md'), 'utf8');
const MAN_PAGES = ['stopd.8', 'stopctl.8'] as const;

/** One fenced block of a Markdown file. */
interface FencedBlock {
  readonly line: number;
  readonly lang: string;
  readonly tags: readonly string[];
  readonly code: string;
}

/** A runnable README example and the output shape shown after it, if any. */
interface DocExample {
  readonly line: number;
  readonly code: string;
  readonly background: boolean;
  /** `ready=PORT`: a background example is ready when a loopback socket on PORT listens or is established. */
  readonly ready: number | undefined;
  /** `after-stop=PORT`: stop the background example ready on PORT before this one runs. */
  readonly afterStop: number | undefined;
  readonly status: number;
  readonly expected: string | undefined;
}

/** The fenced blocks of `markdown`, with the words after the language as tags. */
function parseFencedBlocks(markdown: string): FencedBlock[] {
  const blocks: FencedBlock[] = [];
  const lines = markdown.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\S*)(.*)$/.exec(lines[i] ?? '');
    if (open === null) continue;
    const start = i;
    const body: string[] = [];
    for (i += 1; i < lines.length && lines[i] !== '```'; i++) body.push(lines[i] ?? '');
    assert.ok(i < lines.length, `README line ${start + 1}: unclosed code block`);
    blocks.push({ line: start + 1, lang: open[1] ?? '', tags: (open[2] ?? '').trim().split(/\s+/).filter(Boolean), code: body.join('\n') + '\n' });
  }
  return blocks;
}

/** The `sh example` blocks of the README, each with the `text output` block that follows it. */
function parseExamples(markdown: string): DocExample[] {
  const blocks = parseFencedBlocks(markdown);
  const examples: DocExample[] = [];
  blocks.forEach((block, index) => {
    if (block.lang !== 'sh' || !block.tags.includes('example')) return;
    const tag = (name: string): number | undefined => {
      const found = block.tags.find((word) => word.startsWith(`${name}=`));
      return found === undefined ? undefined : Number(found.slice(name.length + 1));
    };
    const next = blocks[index + 1];
    const expected = next !== undefined && next.lang === 'text' && next.tags.includes('output') ? next.code : undefined;
    const background = block.tags.includes('background');
    const example = { line: block.line, code: block.code, background, ready: tag('ready'), afterStop: tag('after-stop'), status: tag('status') ?? 0, expected };
    if (background) assert.ok(example.ready !== undefined, `README line ${block.line}: a background example needs ready=PORT`);
    examples.push(example);
  });
  return examples;
}

/**
 * A regular expression for an output shape: `…` matches anything within a line, a line of
 * only `…` any number of lines, runs of 16 or more hex digits any hex run of that length,
 * ISO times any ISO time; the rest is literal after `substitute`.
 */
function shapeToRegExp(shape: string, substitute: (text: string) => string): RegExp {
  const lines = shape.replace(/\n$/, '').split('\n');
  const piece = /…|[0-9a-f]{16,}|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z/g;
  const escape = (text: string): string => substitute(text).replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const parts = lines.map((line) => {
    const trimmed = line.trimEnd();
    if (trimmed === '…') return '(?:[^\\n]*\\n)*?';
    let pattern = '';
    let last = 0;
    for (const match of trimmed.matchAll(piece)) {
      pattern += escape(trimmed.slice(last, match.index));
      const text = match[0];
      if (text === '…') pattern += '[^\\n]*?';
      else if (/^[0-9a-f]+$/.test(text)) pattern += `[0-9a-f]{${text.length}}`;
      else pattern += '\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d(?:\\.\\d+)?Z';
      last = match.index + text.length;
    }
    return `${pattern}${escape(trimmed.slice(last))}\\n`;
  });
  return new RegExp(`^${parts.join('')}$`);
}

/** Output with trailing blanks removed from each line and a final newline. */
function normaliseOutput(text: string): string {
  const lines = text.split('\n').map((line) => line.trimEnd());
  while (lines.length > 0 && lines.at(-1) === '') lines.pop();
  return lines.length === 0 ? '' : `${lines.join('\n')}\n`;
}

/**
 * A port that can be bound on every address right now, below the ephemeral range (32768 and
 * up by default) so that outgoing connections of other processes do not take it before the
 * examples bind it.
 */
async function freePort(taken: ReadonlySet<number>): Promise<number> {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    if (taken.has(port)) continue;
    const server = createServer();
    const bound = await new Promise<boolean>((resolvePromise) => {
      server.once('error', () => resolvePromise(false));
      server.listen(port, '0.0.0.0', () => resolvePromise(true));
    });
    if (!bound) continue;
    await new Promise<void>((resolvePromise) => server.close(() => resolvePromise()));
    return port;
  }
}

/** True when a socket on 127.0.0.1:port is listening or established (/proc/net/tcp). */
function loopbackPortInUse(port: number): boolean {
  const wanted = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  return readFileSync('/proc/net/tcp', 'utf8')
    .split('\n')
    .slice(1)
    .some((row) => {
      const fields = row.trim().split(/\s+/);
      return fields[1] === wanted && (fields[3] === '0A' || fields[3] === '01');
    });
}

/** True while any process of process group `pgid` is alive. */
function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Polls `condition` every 20 ms until it holds or `ms` pass. */
async function waitFor(condition: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) return false;
    await new Promise((resolvePromise) => setTimeout(resolvePromise, 20));
  }
  return true;
}

/** roff source as plain text: escapes and fonts removed, so options read `--name`. */
function deroff(source: string): string {
  return source
    .replace(/\\f[BIRP]|\\f\(..|\\&|\\:/g, '')
    .replace(/\\-/g, '-')
    .replace(/\\\(aq/g, "'")
    .replace(/\\\(en|\\\(em/g, '-')
    .replace(/\\e/g, '\\')
    .replace(/\\ /g, ' ');
}

/** The command lines of a manual page's EXAMPLES section (`.EX` .. `.EE`), comments left out. */
function manExampleCommands(source: string): string[] {
  const commands: string[] = [];
  const section = /^\.SH EXAMPLES$([\s\S]*?)(?=^\.SH )/m.exec(source)?.[1] ?? '';
  let inside = false;
  for (const line of section.split('\n')) {
    if (line.startsWith('.EX')) inside = true;
    else if (line.startsWith('.EE')) inside = false;
    else if (inside && !line.startsWith('.')) {
      const text = deroff(line).trim();
      if (text !== '' && !text.startsWith('#')) commands.push(text);
    }
  }
  return commands;
}

function runProgram(program: string, args: string[]): string {
  const result = spawnSync(process.execPath, [program, ...args], { encoding: 'utf8' });
  assert.equal(result.status, 0, `${program} ${args.join(' ')} failed: ${result.stderr}`);
  return result.stdout;
}

describe('README examples', () => {
  const examples = parseExamples(README);
  const missing = ['nc', 'bash'].filter((tool) => spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0);
  const skip = missing.length > 0 ? `needs ${missing.join(' and ')} (Debian: netcat-openbsd, bash)` : false;
  let work: string;
  let state: string;
  let env: NodeJS.ProcessEnv;
  const ports = new Map<string, number>();
  /** Background examples by their ready port: the process group to stop. */
  const background = new Map<number, { pgid: number; log: string }>();
  let substitute = (text: string): string => text;

  before(async () => {
    if (skip !== false) return;
    work = mkdtempSync(join(tmpdir(), 'stopd-docs-'));
    // Wrappers on PATH, as an installed package provides (the compiled files are not executable).
    const bin = join(work, 'bin');
    mkdirSync(bin);
    for (const [name, program] of [['stopd', STOPD], ['stopctl', STOPCTL]] as const) {
      writeFileSync(join(bin, name), `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(program)} "$@"\n`);
      chmodSync(join(bin, name), 0o755);
    }
    state = join(work, 'state.sh');
    writeFileSync(state, '');
    env = { ...process.env, PATH: `${bin}:${process.env.PATH ?? '/usr/bin:/bin'}` };
    for (const port of ['1113', '2222', '40000']) ports.set(port, await freePort(new Set(ports.values())));
    const demo = join(work, 'stopd-demo');
    substitute = (text) =>
      text.replaceAll('/tmp/stopd-demo', demo).replace(/(?<!\d)(1113|2222|40000)(?!\d)/g, (port) => String(ports.get(port)));
  });

  after(async () => {
    if (skip !== false) return;
    for (const { pgid } of background.values()) stopGroup(pgid);
    await waitFor(() => [...background.values()].every(({ pgid }) => !groupAlive(pgid)), 10_000);
    for (const { pgid } of background.values()) if (groupAlive(pgid)) process.kill(-pgid, 'SIGKILL');
    rmSync(work, { recursive: true, force: true });
  });

  function stopGroup(pgid: number): void {
    try {
      process.kill(-pgid, 'SIGTERM');
    } catch {
      // Already gone.
    }
  }

  test('README has runnable examples, each output block after an example', () => {
    assert.ok(examples.length >= 10, `only ${examples.length} examples found`);
    // Apart from the two set-up commands (which CI itself runs), a sh block is an example
    // (run here) or an install step (the packaging test runs its npm commands).
    const installLine = README.split('\n').indexOf('## Install') + 1;
    for (const block of parseFencedBlocks(README)) {
      if (block.lang !== 'sh' || block.line < installLine) continue;
      assert.ok(block.tags.includes('example') || block.tags.includes('install'), `README line ${block.line}: untagged sh block`);
    }
  });

  for (const example of examples) {
    const firstLine = example.code.split('\n')[0] ?? '';
    test(`README example at line ${example.line} (${firstLine}) runs as shown`, { skip, timeout: 90_000 }, async (t) => {
      const code = substitute(example.code);
      if (example.afterStop !== undefined) {
        const port = ports.get(String(example.afterStop)) ?? example.afterStop;
        const running = background.get(port);
        assert.ok(running !== undefined, `nothing runs on ${example.afterStop} to stop`);
        stopGroup(running.pgid);
        assert.ok(await waitFor(() => !groupAlive(running.pgid), 15_000), `the example on ${example.afterStop} did not stop:\n${readFileSync(running.log, 'utf8')}`);
        background.delete(port);
      }
      if (example.background) {
        const port = ports.get(String(example.ready)) ?? Number(example.ready);
        const log = join(work, `background-${example.line}.log`);
        const script = join(work, `background-${example.line}.sh`);
        // The subshell outlives this bash, so its parent becomes init: an SV record of these
        // processes then holds them alone, not the test runner behind them.
        writeFileSync(script, `set -a\n. ${JSON.stringify(state)}\nset +a\ncd ${JSON.stringify(ROOT)}\n(\n${code}) </dev/null >>${JSON.stringify(log)} 2>&1 &\n`);
        const child = spawn('bash', ['--noprofile', '--norc', script], { env, detached: true, stdio: 'ignore' });
        const pgid = child.pid;
        assert.ok(pgid !== undefined);
        await new Promise((resolvePromise) => child.once('exit', resolvePromise));
        background.set(port, { pgid, log });
        const ready = await waitFor(() => loopbackPortInUse(port) || !groupAlive(pgid), 15_000);
        const output = existsSync(log) ? readFileSync(log, 'utf8') : '';
        assert.ok(ready && loopbackPortInUse(port), `background example never used port ${port}:\n${output}`);
        return;
      }
      const script = join(work, `example-${example.line}.sh`);
      writeFileSync(script, `set -a\n. ${JSON.stringify(state)}\nset -euo pipefail\ncd ${JSON.stringify(ROOT)}\n${code}export -p > ${JSON.stringify(state)}\n`);
      const result = spawnSync('bash', ['--noprofile', '--norc', script], { env, encoding: 'utf8', timeout: 60_000 });
      // STOPD_DOCS_SHOW=1 shows every example's output, to write the README's output blocks.
      if (process.env.STOPD_DOCS_SHOW !== undefined) t.diagnostic(`stdout:\n${result.stdout}`);
      const context = `README line ${example.line}:\n${code}\nstdout:\n${result.stdout}\nstderr:\n${result.stderr}`;
      assert.equal(result.status, example.status, `exit status\n${context}`);
      if (example.expected !== undefined) {
        assert.match(normaliseOutput(result.stdout), shapeToRegExp(example.expected, substitute), `output shape\n${context}\nexpected shape:\n${example.expected}`);
      }
    });
  }
});

test('README performance table is the targets table of bench/README.md', () => {
  const tableAfter = (text: string, heading: string): string[] => {
    const start = text.indexOf(heading);
    if (start < 0) return [];
    const rows: string[] = [];
    for (const line of text.slice(start).split('\n').slice(1)) {
      if (line.startsWith('|')) rows.push(line);
      else if (rows.length > 0) break;
    }
    return rows;
  };
  const bench = tableAfter(readFileSync(join(ROOT, 'bench/README.md'), 'utf8'), '### Targets');
  const shown = tableAfter(README, '## Performance');
  // Without results in bench/README.md the README only points to `npm run bench`.
  assert.deepEqual(shown, bench, 'copy the targets table of bench/README.md into the README\'s Performance section');
});

describe('manual pages', () => {
  const pages = Object.fromEntries(MAN_PAGES.map((name) => [name, readFileSync(join(ROOT, 'man', name), 'utf8')])) as Record<(typeof MAN_PAGES)[number], string>;

  test('stopd.8 documents every option of stopd --help, with the defaults', () => {
    const help = runProgram(STOPD, ['--help']);
    const options = [...help.matchAll(/^ {2}(?:-h, )?(--[a-z][a-z-]*)/gm)].map((match) => match[1] ?? '');
    assert.ok(options.length >= DAEMON_OPTIONS.length + 5, `too few options parsed from --help: ${options.join(' ')}`);
    const text = deroff(pages['stopd.8']);
    for (const option of options) assert.match(text, new RegExp(`${option}(?![a-z-])`), `stopd.8 lacks ${option}`);
    // Each setting's paragraph (.TP up to the next .TP or section) names its default.
    const paragraphs = deroff(pages['stopd.8']).split(/^\.(?:TP|SH|SS)\b/m);
    for (const spec of DAEMON_OPTIONS) {
      if (spec.default === undefined || spec.kind === 'flag') continue;
      const paragraph = paragraphs.find((chunk) => new RegExp(`^\\s*\\.B\\w*\\s+--${spec.name}(?![a-z-])`).test(chunk));
      assert.ok(paragraph !== undefined, `stopd.8 has no .TP paragraph for --${spec.name}`);
      const value = Array.isArray(spec.default) ? spec.default.join(', ') : String(spec.default);
      assert.ok(paragraph.replace(/\s+/g, ' ').includes(`Default: ${value}`), `stopd.8: --${spec.name} should say "Default: ${value}"`);
    }
  });

  test('README settings table lists every stopd setting with its default and reload behaviour', () => {
    const rows = new Map<string, string[]>();
    for (const match of README.matchAll(/^\| `--([a-z-]+)[^`]*` \|(.*)\|$/gm)) {
      rows.set(match[1] ?? '', (match[2] ?? '').split('|').map((cell) => cell.trim().replaceAll('`', '')));
    }
    for (const spec of DAEMON_OPTIONS) {
      const row = rows.get(spec.name);
      assert.ok(row !== undefined, `README settings table lacks --${spec.name}`);
      const [shownDefault = '', reload = ''] = row;
      if (spec.kind === 'flag') assert.equal(shownDefault, 'off', `--${spec.name} default`);
      else if (spec.default !== undefined) {
        assert.equal(shownDefault, Array.isArray(spec.default) ? spec.default.join(', ') : String(spec.default), `--${spec.name} default`);
      }
      assert.equal(reload, spec.reload, `--${spec.name} reload`);
    }
  });

  test('stopctl.8 documents every command and option of stopctl --help', () => {
    const help = runProgram(STOPCTL, ['--help']);
    // A command with two forms (walk) has two usage lines: each command once.
    const commands = [...new Set([...help.matchAll(/^ {2}([a-z]+) /gm)].map((match) => match[1] ?? ''))];
    assert.deepEqual(commands.sort(), ['history', 'keygen', 'prune', 'query', 'redeem', 'trace', 'verify', 'walk']);
    const options = new Set([...help.matchAll(/--[a-z][a-z-]*/g)].map((match) => match[0]));
    const source = pages['stopctl.8'];
    const text = deroff(source);
    for (const command of commands) {
      assert.match(source, new RegExp(`^\\.SS (?:\\\\fB)?${command}\\b`, 'm'), `stopctl.8 has no subsection for ${command}`);
      assert.match(README, new RegExp(`stopctl ${command}\\b`), `README never shows stopctl ${command}`);
    }
    for (const option of options) assert.match(text, new RegExp(`${option}(?![a-z-])`), `stopctl.8 lacks ${option}`);
  });

  test('manual page examples are README commands', () => {
    const readmeLines = new Set(
      parseFencedBlocks(README)
        .filter((block) => block.lang === 'sh')
        .flatMap((block) => block.code.split('\n').map((line) => line.trim()))
        .filter(Boolean),
    );
    for (const name of MAN_PAGES) {
      const commands = manExampleCommands(pages[name]);
      assert.ok(commands.length >= 3, `${name} has too few examples`);
      for (const command of commands) assert.ok(readmeLines.has(command), `${name} example is not in the README: ${command}`);
    }
  });

  const tools = ['man', 'groff'].filter((tool) => spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0);
  test('manual pages render without warnings', { skip: tools.length > 0 ? `needs ${tools.join(' and ')} (Debian: man-db, groff-base)` : false }, () => {
    for (const name of MAN_PAGES) {
      const file = join(ROOT, 'man', name);
      const man = spawnSync('man', ['--warnings', '-l', file], { encoding: 'utf8', env: { ...process.env, MANWIDTH: '80', MANPAGER: 'cat', PAGER: 'cat' } });
      assert.equal(man.status, 0, `man -l ${name}: ${man.stderr}`);
      assert.equal(man.stderr, '', `man --warnings ${name}`);
      assert.match(man.stdout, /NAME/);
      const groff = spawnSync('groff', ['-man', '-ww', '-z', file], { encoding: 'utf8' });
      assert.equal(groff.status, 0);
      assert.equal(groff.stderr, '', `groff -ww ${name}`);
    }
  });
});
