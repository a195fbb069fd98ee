import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { HostLookupError } from '../errors.js';
import { parseOsRelease, readHostFacts } from './host-facts.js';

const dir = mkdtempSync(join(tmpdir(), 'stopd-hostfacts-'));
after(() => rmSync(dir, { recursive: true, force: true }));
writeFileSync(join(dir, 'stat'), 'cpu  1 2 3\nbtime 1700000000\n');

void test('parseOsRelease unquotes values and skips comments', () => {
  const parsed = parseOsRelease(
    '# comment\nNAME="Debian GNU/Linux"\nID=debian\nVERSION=\'12 (bookworm)\'\nPRETTY_NAME="A \\"quoted\\" \\$name"\n\n',
  );
  assert.equal(parsed.get('NAME'), 'Debian GNU/Linux');
  assert.equal(parsed.get('ID'), 'debian');
  assert.equal(parsed.get('VERSION'), '12 (bookworm)');
  assert.equal(parsed.get('PRETTY_NAME'), 'A "quoted" $name');
  assert.equal(parsed.has('# comment'), false);
});

void test('readHostFacts reports hostname, boot time, kernel and PRETTY_NAME', () => {
  const osRelease = join(dir, 'os-release');
  writeFileSync(osRelease, 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n');
  const facts = readHostFacts({ procRoot: dir, osReleasePaths: [join(dir, 'missing'), osRelease] });
  assert.deepEqual(facts, {
    hostname: hostname(),
    bootTime: '2023-11-14T22:13:20.000Z',
    kernel: facts.kernel,
    os: 'Debian GNU/Linux 12 (bookworm)',
  });
  assert.ok(facts.kernel.startsWith(`${release()} `), facts.kernel);
});

void test('readHostFacts gives os null when no os-release file exists or it has no PRETTY_NAME', () => {
  assert.equal(readHostFacts({ procRoot: dir, osReleasePaths: [join(dir, 'missing')] }).os, null);
  const bare = join(dir, 'bare-os-release');
  writeFileSync(bare, 'ID=custom\n');
  assert.equal(readHostFacts({ procRoot: dir, osReleasePaths: [bare] }).os, null);
});

void test('readHostFacts reads the real host', () => {
  const facts = readHostFacts();
  const boot = Date.parse(facts.bootTime);
  assert.ok(boot > Date.parse('2000-01-01T00:00:00Z') && boot <= Date.now(), facts.bootTime);
  assert.equal(facts.hostname, hostname());
});

void test('readHostFacts throws HostLookupError when /proc/stat is unreadable', () => {
  assert.throws(() => readHostFacts({ procRoot: join(dir, 'nowhere') }), HostLookupError);
});
