// Builds the connection recorder's BPF object (native/bpf/connection-recorder.bpf.o) from its
// source. The object is committed and shipped: CO-RE makes it independent of the running
// kernel, so installing stopd needs neither clang nor libbpf-dev, only libbpf1 at run time.
// Run this (npm run build-bpf) after changing the source, with Debian's clang and libbpf-dev;
// src/host/connection-recorder.test.ts rebuilds it and checks the shipped bytes match.
//
// The flags make the bytes reproducible: no absolute path of the checkout is recorded
// (-fdebug-compilation-dir), and no kernel or architecture header is read (the source
// declares what it needs), so the same clang and libbpf headers give the same object anywhere.
//
//   node scripts/build-bpf.mjs [--out FILE]     (default: the shipped object)
import { spawnSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const dir = join(root, 'native', 'bpf');
const source = 'connection-recorder.bpf.c';
const outAt = process.argv.indexOf('--out');
const out = outAt > 0 && process.argv[outAt + 1] ? resolve(process.argv[outAt + 1]) : join(dir, 'connection-recorder.bpf.o');

// The clang command line (the test runs this script with --out to compare).
const CLANG_ARGS = ['-target', 'bpf', '-O2', '-g', '-fdebug-compilation-dir=.', '-Wall', '-Werror', '-c', source];

const result = spawnSync('clang', [...CLANG_ARGS, '-o', out], { cwd: dir, stdio: 'inherit' });
if (result.error) {
  console.error(`build-bpf: cannot run clang (${result.error.message}); install Debian's clang and libbpf-dev`);
  process.exit(2);
}
process.exit(result.status ?? 1);
