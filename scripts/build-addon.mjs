// Builds the netlink addon at install time. The addon is an optimisation with a fallback
// (src/host reads /proc/net/tcp when it cannot load), so a failed build warns and does not
// fail the install. Offline machines with Node's headers in /usr/include/node build against
// them; elsewhere node-gyp fetches the headers as usual.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));

// node-gyp is not a dependency of this package: npm runs install scripts with
// npm_config_node_gyp pointing at its bundled copy; run by hand, look for the copy that ships
// with npm next to this node binary, then for one on PATH.
function findNodeGyp() {
  const fromNpm = process.env.npm_config_node_gyp;
  if (fromNpm && existsSync(fromNpm)) return { command: process.execPath, prefix: [fromNpm] };
  const bundled = join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
  if (existsSync(bundled)) return { command: process.execPath, prefix: [bundled] };
  return { command: 'node-gyp', prefix: [] };
}

const args = ['rebuild'];
const localHeaders = `/usr/include/node/node_api.h`;
if (existsSync(localHeaders) && !process.env.npm_config_nodedir) args.push('--nodedir=/usr');
const { command, prefix } = findNodeGyp();
const result = spawnSync(command, [...prefix, ...args], { cwd: root, stdio: 'inherit', shell: false });
if (result.error || result.status !== 0) {
  const why = result.error ? result.error.message : `node-gyp exited with status ${result.status}`;
  console.warn(`stopd: cannot build the netlink addon (${why}); stopd will fall back to /proc/net/tcp`);
}
