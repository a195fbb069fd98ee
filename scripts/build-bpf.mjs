// Builds the BPF objects (native/bpf/*.bpf.o: the connection recorder, the run tracker) from
// // their sources. The objects are committed and shipped: CO-RE makes them independent of the
// running kernel, so installing stopd needs neither clang nor libbpf-dev, only libbpf1 at run time.
// Run this (npm run build-bpf) after changing a source, with Debian's clang and libbpf-dev;
// src/host/connection-recorder.test.ts rebuilds them and checks the shipped bytes match.
//
// The flags make the bytes reproducible: no absolute path of the checkout is recorded
// (-fdebug-compilation-dir), and no kernel or architecture header is read (the source
// declares what it needs), so the same clang and libbpf headers give the same object anywhere.
//
//   node scripts/build-bpf.mjs [--out-dir DIR]     (default: beside the sources, the shipped objects)
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const dir = join(root, 'native', 'bpf');
const outAt = process.argv.indexOf('--out-dir');
const outDir = outAt > 0 && process.argv[outAt + 1] ? resolve(process.argv[outAt + 1]) : dir;

for (const source of readdirSync(dir).filter((name) => name.endsWith('.bpf.c')).sort()) {
  // The clang command line (the test runs this script with --out-dir to compare). -mcpu=v3:
  // the recorder publishes a record with an atomic exchange (BPF_XCHG, Linux 5.12).
  const args = ['-target', 'bpf', '-mcpu=v3', '-O2', '-g', '-fdebug-compilation-dir=.', '-Wall', '-Werror', '-c', source, '-o', join(outDir, source.replace(/\.c$/, '.o'))];
  const result = spawnSync('clang', args, { cwd: dir, stdio: 'inherit' });
  if (result.error) {
    console.error(`build-bpf: cannot run clang (${result.error.message}); install Debian's clang and libbpf-dev`);
    process.exit(2);
  }
  if (result.status !== 0) process.exit(result.status ?? 1);
}
