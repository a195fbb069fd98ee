// Builds the netlink addon at install time. The addon is an optimisation with a fallback
// (src/host reads /proc/net/tcp when it cannot load), so a failed build warns and does not
// fail the install. Offline machines with Node's headers in /usr/include/node build against
// them; elsewhere node-gyp fetches the headers as usual.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const args = ['rebuild'];
const localHeaders = `/usr/include/node/node_api.h`;
if (existsSync(localHeaders) && !process.env.npm_config_nodedir) args.push('--nodedir=/usr');
const result = spawnSync('node-gyp', args, { stdio: 'inherit', shell: false });
if (result.error || result.status !== 0) {
  const why = result.error ? result.error.message : `node-gyp exited with status ${result.status}`;
  console.warn(`stopd: cannot build the netlink addon (${why}); stopd will fall back to /proc/net/tcp`);
}
