import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import { findPackageRoot, loadNativeAddon } from './native-addon.js';

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
