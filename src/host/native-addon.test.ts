import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';

import { FD_SCAN_ENTRY_WIDTH, findPackageRoot, loadNativeAddon } from './native-addon.js';

void test('findPackageRoot walks up to the nearest directory holding package.json', () => {
  const root = mkdtempSync(join(tmpdir(), 'stopd-root-'));
  try {
    writeFileSync(join(root, 'package.json'), '{}');
    const deep = join(root, 'dist', 'src', 'host');
    mkdirSync(deep, { recursive: true });
    assert.equal(findPackageRoot(deep), root);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

void test('findPackageRoot finds this package from the compiled module', () => {
  const root = findPackageRoot();
  assert.ok(root !== undefined && existsSync(join(root, 'binding.gyp')), `unexpected root ${String(root)}`);
});

void test('loadNativeAddon loads the built addon once and caches the result', () => {
  const first = loadNativeAddon();
  assert.equal(first.error, undefined, `addon did not load: ${String(first.error)}; run npm install`);
  assert.equal(loadNativeAddon(), first);
});

void test('loadNativeAddon binding rejects a family other than 4 or 6', () => {
  const { binding } = loadNativeAddon();
  assert.ok(binding, 'addon not built');
  assert.throws(() => binding.tcpLookup(5 as 4, Buffer.alloc(4), 1, Buffer.alloc(4), 1), {
    name: 'RangeError',
    code: 'ERR_INVALID_ARG_VALUE',
  });
  assert.throws(() => binding.tcpDump(0 as 4), RangeError);
});

void test('loadNativeAddon binding rejects an address whose length does not match the family', () => {
  const { binding } = loadNativeAddon();
  assert.ok(binding, 'addon not built');
  assert.throws(() => binding.tcpLookup(4, Buffer.alloc(16), 1, Buffer.alloc(4), 1), RangeError);
  assert.throws(() => binding.tcpLookup(6, Buffer.alloc(16), 1, 'x' as unknown as Buffer, 1), TypeError);
  assert.throws(() => binding.tcpLookup(4, Buffer.alloc(4), 70000, Buffer.alloc(4), 1), RangeError);
});

void test('loadNativeAddon binding answers null for a tuple nobody uses', () => {
  const { binding } = loadNativeAddon();
  assert.ok(binding, 'addon not built');
  // 192.0.2.0/24 is TEST-NET-1 (RFC 5737): no socket here can be bound to it.
  assert.equal(binding.tcpLookup(4, Buffer.from([192, 0, 2, 1]), 1, Buffer.from([192, 0, 2, 2]), 2), null);
});

void test('loadNativeAddon binding scanFds rejects a procRoot that is not a non-empty string and bad options', () => {
  const { binding } = loadNativeAddon();
  assert.ok(binding?.scanFds !== undefined, 'addon not built with scanFds');
  const scanFds = binding.scanFds.bind(binding);
  assert.throws(() => scanFds(5 as unknown as string), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
  assert.throws(() => scanFds(''), RangeError);
  assert.throws(() => scanFds('/proc\0/x'), RangeError);
  assert.throws(() => scanFds('/proc', 'x' as unknown as { namedPipes: boolean }), TypeError);
  assert.throws(() => scanFds('/proc', { namedPipes: 1 as unknown as boolean }), TypeError);
  assert.throws(() => scanFds('/nonexistent-proc-root'), { code: 'ENOENT' });
});

void test('loadNativeAddon binding scanFds classifies sockets, pipes and FIFOs and skips vanished processes', () => {
  const { binding } = loadNativeAddon();
  assert.ok(binding?.scanFds !== undefined, 'addon not built with scanFds');
  const root = mkdtempSync(join(tmpdir(), 'stopd-scanroot-'));
  try {
    const fifo = join(root, 'fifo');
    execFileSync('mkfifo', [fifo]);
    mkdirSync(join(root, '10', 'fd'), { recursive: true });
    const links: Record<string, string> = {
      0: '/dev/null',
      3: 'socket:[5001]',
      4: 'pipe:[6001]',
      5: 'anon_inode:[eventfd]',
      6: fifo,
      7: '/nonexistent/gone',
      8: 'socket:[x]',
      9: `socket:[${2 ** 40}]`,
    };
    for (const [fd, link] of Object.entries(links)) symlinkSync(link, join(root, '10', 'fd', fd));
    // Vanished between readdir of the root and opening its fd directory; not a process at all.
    mkdirSync(join(root, '20'));
    mkdirSync(join(root, 'self'));
    mkdirSync(join(root, '030', 'fd'), { recursive: true });

    const scan = binding.scanFds(root);
    assert.deepEqual([...scan.pids], [10]);
    assert.deepEqual([...scan.denied], []);
    assert.deepEqual([...scan.failed], []);
    const rows: number[][] = [];
    for (let i = 0; i < scan.entries.length; i += FD_SCAN_ENTRY_WIDTH) rows.push([...scan.entries.subarray(i, i + FD_SCAN_ENTRY_WIDTH)]);
    rows.sort((a, b) => (a[1] ?? 0) - (b[1] ?? 0));
    // A symlink's mode is 0777, so pipe ends read as 'both' (2) here; real links carry the open mode.
    assert.deepEqual(rows, [
      [10, 3, 0, 5001, 0],
      [10, 4, 1, 6001, 2],
      [10, 6, 1, statSync(fifo).ino, 2],
      [10, 9, 0, 2 ** 40, 0],
    ]);
    const withoutFifos = binding.scanFds(root, { namedPipes: false });
    assert.equal(withoutFifos.entries.length, 3 * FD_SCAN_ENTRY_WIDTH);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

/** This process's NETLINK_SOCK_DIAG sockets (protocol 4 in /proc/net/netlink), by inode. */
function countSockDiagSockets(): number {
  const diag = new Set(
    readFileSync('/proc/self/net/netlink', 'utf8')
      .split('\n')
      .slice(1)
      .map((line) => line.trim().split(/\s+/))
      .filter((fields) => fields[1] === '4')
      .map((fields) => fields.at(-1)),
  );
  let count = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const inode = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`))?.[1];
      if (inode !== undefined && diag.has(inode)) count += 1;
    } catch {
      // The directory's own descriptor, gone by now.
    }
  }
  return count;
}

void test('the addon loads in worker threads (the analysis thread), and each thread releases its netlink socket when it ends', async () => {
  const { binding } = loadNativeAddon();
  assert.ok(binding, 'addon not built');
  binding.tcpLookup(4, Buffer.alloc(4), 0, Buffer.alloc(4), 0);
  const before = countSockDiagSockets();
  assert.ok(before >= 1, 'the main thread keeps its own socket');
  const indexModule = new URL('./persistent-fd-index.js', import.meta.url).href;
  const addonModule = new URL('./native-addon.js', import.meta.url).href;
  for (let round = 0; round < 2; round += 1) {
    const worker = new Worker(
      `const { parentPort } = require('node:worker_threads');
       (async () => {
         const { loadNativeAddon } = await import(${JSON.stringify(addonModule)});
         const { createPersistentFdIndex } = await import(${JSON.stringify(indexModule)});
         const { binding } = loadNativeAddon();
         binding.tcpLookup(4, Buffer.alloc(4), 0, Buffer.alloc(4), 0);
         const index = createPersistentFdIndex({ skipSelf: true, separateTable: false });
         const refresh = index.refresh();
         index.close();
         parentPort.postMessage({ loaded: binding !== undefined, tracked: refresh.tracked });
       })().catch((error) => parentPort.postMessage({ error: String(error) }));`,
      { eval: true },
    );
    const [message] = (await once(worker, 'message')) as [{ loaded?: boolean; tracked?: number; error?: string }];
    await once(worker, 'exit');
    assert.equal(message.error, undefined);
    assert.equal(message.loaded, true);
    assert.ok((message.tracked ?? 0) > 0, 'the index in the thread sees processes');
  }
  // The main thread's kept socket still works, and the threads' two are closed.
  binding.tcpLookup(4, Buffer.alloc(4), 0, Buffer.alloc(4), 0);
  assert.equal(countSockDiagSockets(), before);
});
