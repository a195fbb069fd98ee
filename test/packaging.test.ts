/**
 * Packaging: the npm tarball holds the compiled programs (no TypeScript needed to install),
 * the manual pages, the unit files and the addon's sources, and nothing of the tests or their
 * support (the paper's figures, the in-memory host); it
 * installs into a clean prefix with the README's command, offline (the runtime dependencies
 * come from the npm cache that `npm ci` filled); both programs work from `<prefix>/bin`, the
 * manual pages are in `<prefix>/share/man/man8`, and the netlink addon is either built there
 * or cleanly replaced by the /proc fallback with a warning.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join, posix, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';

const ROOT = resolve(import.meta.dirname, '../..');
const PACKAGE = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  name: string;
  version: string;
  scripts: Record<string, string>;
  dependencies?: Record<string, string>;
};
const TARBALL = `${PACKAGE.name}-${PACKAGE.version}.tgz`;

/** `npm` with the output captured; npm's own warnings (unknown user config, ...) are not failures. */
function npm(args: string[], cwd: string): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync('npm', args, { cwd, encoding: 'utf8', timeout: 180_000, env: { ...process.env, npm_config_update_notifier: 'false' } });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** The README's `npm install -g` line, run with `prefix` instead of its prefix, offline. */
function readmeInstallArgs(prefix: string, tarball: string): string[] {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const line = readme.split('\n').find((text) => text.startsWith('npm install -g '));
  assert.ok(line !== undefined, 'README shows no `npm install -g` command');
  const words = line.split(/\s+/).slice(1);
  const at = words.indexOf('--prefix');
  assert.ok(at >= 0, 'the README install command names its --prefix');
  words[at + 1] = prefix;
  const package_ = words.findIndex((word) => word.endsWith('.tgz'));
  assert.equal(words[package_], `./${TARBALL}`, 'the README installs the tarball of this version');
  words[package_] = tarball;
  return [...words, '--offline', '--no-audit', '--no-fund'];
}

describe('npm package', () => {
  let work: string;
  let prefix: string;
  let files: string[];
  let installed: { status: number | null; stdout: string; stderr: string };

  before(() => {
    work = mkdtempSync(join(tmpdir(), 'stopd-pack-'));
    prefix = join(work, 'prefix');
    // `npm pack` runs `prepare` (the TypeScript build) first; here the build is already done
    // (npm test builds before testing), so skip it rather than rewrite dist/ under running tests.
    const packed = npm(['pack', '--ignore-scripts', '--json', '--pack-destination', work], ROOT);
    assert.equal(packed.status, 0, `npm pack failed: ${packed.stderr}`);
    const [info] = JSON.parse(packed.stdout) as { filename: string; files: { path: string }[] }[];
    assert.ok(info !== undefined);
    assert.equal(info.filename, TARBALL);
    files = info.files.map((file) => file.path);
    installed = npm(readmeInstallArgs(prefix, join(work, TARBALL)), work);
  });
  after(() => rmSync(work, { recursive: true, force: true }));

  test('npm pack builds first: prepare runs the TypeScript build', () => {
    assert.match(PACKAGE.scripts.prepare ?? '', /npm run build/);
    assert.match(PACKAGE.scripts.build ?? '', /tsc -p tsconfig\.json/);
    assert.equal(PACKAGE.scripts.install, 'node scripts/build-addon.mjs');
  });

  test('tarball holds the compiled programs, man pages, units and addon sources, and no tests or test support', () => {
    for (const wanted of [
      'package.json',
      'README.md',
      'dist/src/cli/stopd.js',
      'dist/src/cli/stopctl.js',
      'dist/src/index.js',
      'dist/src/index.d.ts',
      'man/stopd.8',
      'man/stopctl.8',
      'deploy/stopd.service',
      'deploy/stopd.socket',
      'deploy/stopd.toml',
      'deploy/xinetd-stopd',
      'native/addon.c',
      'native/compat.h',
      'native/FD_INDEX.md',
      'native/bpf_recorder.c',
      'native/BPF.md',
      'native/bpf/connection-recorder.bpf.o',
      'native/bpf/run-tracker.bpf.o',
      'native/libbpf_dl.c',
      'binding.gyp',
      'scripts/build-addon.mjs',
    ]) {
      assert.ok(files.includes(wanted), `tarball lacks ${wanted}`);
    }
    const unwanted = files.filter((path) => /\.test\.|\.map$|\.ts$/.test(path) && !path.endsWith('.d.ts'));
    assert.deepEqual(unwanted, [], 'tests, source maps or TypeScript sources in the tarball');
    assert.deepEqual(files.filter((path) => /^(src|test|bench|node_modules|build)\//.test(path)), []);
    // Test support (the paper's figures, the in-memory host) is for the unit tests only.
    const support = files.filter((path) => /^dist\/src\/(trace\/figures|host\/fake-host)\./.test(path));
    assert.deepEqual(support, [], 'test support in the tarball');
  });

  test('every module the tarball ships imports only modules it ships', () => {
    // Leaving files out of the package must not cut a dependency of one that stays in.
    const shipped = new Set(files);
    const modules = files.filter((path) => /^dist\/src\/.*(\.js|\.d\.ts)$/.test(path));
    assert.ok(modules.includes('dist/src/trace/closure.js'), 'the trace layer is not shipped');
    const missing: string[] = [];
    for (const path of modules) {
      const text = readFileSync(join(ROOT, path), 'utf8');
      for (const match of text.matchAll(/(?:\bfrom\s*|\bimport\s*\(?\s*)['"](\.\.?\/[^'"]+)['"]/g)) {
        const specifier = match[1] ?? '';
        let target = posix.join(posix.dirname(path), specifier);
        if (path.endsWith('.d.ts')) target = target.replace(/\.js$/, '.d.ts');
        if (!shipped.has(target)) missing.push(`${path} imports ${specifier}`);
      }
    }
    assert.deepEqual(missing, [], 'shipped modules import files left out of the package');
  });

  test('tarball installs offline into a clean prefix with the README command', () => {
    const hint = /ENOTCACHED/.test(installed.stderr) ? ' (the npm cache lacks the registry entry of a runtime dependency: `npm ci` caches only tarballs; .ci/run adds the entries with `npm cache add`)' : '';
    assert.equal(installed.status, 0, `npm install failed${hint}:\n${installed.stderr}`);
    for (const name of Object.keys(PACKAGE.dependencies ?? {})) {
      assert.ok(existsSync(join(prefix, 'lib/node_modules/stopd/node_modules', name, 'package.json')), `runtime dependency ${name} not installed`);
    }
    assert.ok(!existsSync(join(prefix, 'lib/node_modules/stopd/node_modules/typescript')), 'a development dependency was installed');
  });

  test('installed manual pages are in share/man/man8', () => {
    assert.equal(installed.status, 0);
    for (const page of ['stopd.8', 'stopctl.8']) {
      const path = join(prefix, 'share/man/man8', page);
      assert.ok(existsSync(path), `${path} missing`);
      assert.equal(readFileSync(path, 'utf8'), readFileSync(join(ROOT, 'man', page), 'utf8'));
    }
  });

  test('installed stopd --version and stopctl --help work from prefix/bin', () => {
    assert.equal(installed.status, 0);
    const version = spawnSync(join(prefix, 'bin/stopd'), ['--version'], { encoding: 'utf8' });
    assert.equal(version.status, 0, version.stderr);
    assert.equal(version.stdout, `${PACKAGE.version}\n`);
    const help = spawnSync(join(prefix, 'bin/stopctl'), ['--help'], { encoding: 'utf8' });
    assert.equal(help.status, 0, help.stderr);
    assert.match(help.stdout, /^Usage: stopctl <command>/);
    const config = spawnSync(join(prefix, 'bin/stopd'), ['--check-config', '--config', join(prefix, 'lib/node_modules/stopd/deploy/stopd.toml')], { encoding: 'utf8' });
    assert.equal(config.status, 0, `the shipped configuration does not validate: ${config.stderr}`);
  });

  test('installed stopd answers installed stopctl query, and redeem draws the record', async (t) => {
    assert.equal(installed.status, 0);
    const addon = existsSync(join(prefix, 'lib/node_modules/stopd/build/Release/stopd_native.node'));
    t.diagnostic(addon ? 'the netlink addon was built at install' : 'the netlink addon was not built: checking the /proc fallback');
    const daemon = await startInstalledDaemon(prefix, join(work, 'store'));
    const store = daemon.store;
    // The #! line gives node the V8 memory flags (src/cli/stopd.ts); env -S splits them.
    const argv = readFileSync(`/proc/${daemon.pid}/cmdline`, 'utf8').split('\0');
    assert.ok(argv.includes('--max-semi-space-size=1') && argv.includes('--optimize-for-size'), `stopd runs as ${argv.join(' ')}`);
    // A connection to ask about: from `client` (outbound) to `server`, both in this process.
    const server: Server = createServer();
    await new Promise<void>((resolvePromise) => server.listen(0, '127.0.0.1', resolvePromise));
    const serverPort = (server.address() as { port: number }).port;
    const client: Socket = connect(serverPort, '127.0.0.1');
    await new Promise<void>((resolvePromise) => client.once('connect', resolvePromise));
    try {
      const stopctl = join(prefix, 'bin/stopctl');
      const query = spawnSync(stopctl, ['query', `127.0.0.1:${daemon.port}`, String(client.localPort), String(serverPort), '--type', 'SV'], { encoding: 'utf8' });
      assert.equal(query.status, 0, `query: ${query.stdout}${query.stderr}\n${daemon.stderr()}`);
      const token = /^\d+,\d+:USERID:OTHER:([0-9a-f]{64})\n$/.exec(query.stdout)?.[1];
      assert.ok(token !== undefined, query.stdout);
      const redeem = spawnSync(stopctl, ['redeem', token, '--store', store], { encoding: 'utf8' });
      assert.equal(redeem.status, 0, redeem.stderr);
      assert.match(redeem.stdout, /Integrity: record matches its token/);
      const svg = spawnSync(stopctl, ['redeem', token, '--store', store, '--format', 'svg'], { encoding: 'utf8' });
      assert.equal(svg.status, 0, svg.stderr);
      assert.match(svg.stdout, /<svg[\s>]/);
      if (addon) assert.doesNotMatch(daemon.stderr(), /netlink addon unavailable/);
      else assert.match(daemon.stderr(), FALLBACK_WARNING);
    } finally {
      client.destroy();
      await new Promise<void>((resolvePromise) => server.close(() => resolvePromise()));
    }
    assert.equal(await daemon.stop(), 0, daemon.stderr());
  });

  test('tarball installs without a C compiler, and stopd falls back to /proc/net/tcp with a warning', async () => {
    const bare = join(work, 'prefix-without-compiler');
    // node-gyp honours CC/CXX: a compiler that always fails stands for a host without one.
    const result = spawnSync('npm', readmeInstallArgs(bare, join(work, TARBALL)), {
      cwd: work,
      encoding: 'utf8',
      timeout: 180_000,
      env: { ...process.env, CC: '/bin/false', CXX: '/bin/false', npm_config_update_notifier: 'false' },
    });
    assert.equal(result.status, 0, `install without a compiler failed:\n${result.stderr}`);
    assert.ok(!existsSync(join(bare, 'lib/node_modules/stopd/build/Release/stopd_native.node')), 'the addon was built with a failing compiler');
    const daemon = await startInstalledDaemon(bare, join(work, 'store-without-addon'));
    try {
      assert.match(daemon.stderr(), FALLBACK_WARNING);
      // The fallback answers: the daemon's own listening socket is inbound, hence NO-USER.
      const query = spawnSync(join(bare, 'bin/stopctl'), ['query', `127.0.0.1:${daemon.port}`, String(daemon.port), '1'], { encoding: 'utf8' });
      assert.equal(query.stdout, `${daemon.port},1:ERROR:NO-USER\n`, query.stderr);
    } finally {
      assert.equal(await daemon.stop(), 0, daemon.stderr());
    }
  });
});

const FALLBACK_WARNING = /stopd: warning: .*netlink addon unavailable \([\s\S]*?\); falling back to \/proc\/net\/tcp/;

/** The installed stopd on 127.0.0.1 port 0 with `store`, once it listens. */
async function startInstalledDaemon(
  prefix: string,
  store: string,
): Promise<{ pid: number; port: number; store: string; stderr(): string; stop(): Promise<number | null> }> {
  const daemon = spawn(join(prefix, 'bin/stopd'), ['--listen', '127.0.0.1:0', '--store', store], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  daemon.stderr.setEncoding('utf8');
  const exited = new Promise<number | null>((resolvePromise) => daemon.once('exit', resolvePromise));
  const port = await new Promise<number>((resolvePromise, reject) => {
    const timer = setTimeout(() => {
      daemon.kill('SIGKILL');
      reject(new Error(`installed stopd did not start:\n${stderr}`));
    }, 15_000);
    daemon.stderr.on('data', (chunk: string) => {
      stderr += chunk;
      const match = /listening on 127\.0\.0\.1:(\d+)\n/.exec(stderr);
      if (match !== null) {
        clearTimeout(timer);
        resolvePromise(Number(match[1]));
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`installed stopd exited with ${code}:\n${stderr}`));
    });
  });
  return {
    pid: daemon.pid ?? 0,
    port,
    store,
    stderr: () => stderr,
    stop: async () => {
      daemon.kill('SIGTERM');
      return exited;
    },
  };
}
