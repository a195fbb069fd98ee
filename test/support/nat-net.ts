/**
 * A NAT gateway between two documentation networks, built on the test-net harness
 * (testnet.ts): every host hangs on the one switch, but routing splits them in two networks.
 *
 *   inside  198.51.100.0/24  IN .10 (default route via GW's .1)
 *   outside 192.0.2.0/24     OUT .20, no route to the inside network
 *   GW      192.0.2.1 and 198.51.100.1 on its eth0, forwarding, nftables masquerade of the
 *           inside network (and, on request, a port forward to IN with SNAT)
 *
 * OUT cannot reach an inside address at all (no route: connects fail at once), so everything
 * IN sends out arrives from GW's 192.0.2.1 with a port GW picked: the masquerade an operator's
 * office gateway does. Both networks share one L2 segment, so GW forwards out of the interface
 * a packet came in on: it must not send ICMP redirects, which would point IN at OUT directly.
 */
import type { TestHost } from './testnet.js';

export const INSIDE_GATEWAY = '198.51.100.1';
export const INSIDE_NETWORK = '198.51.100.0/24';

/** Runs `cmd` in `host` and throws with its stderr when it fails. */
export async function mustRun(host: TestHost, cmd: readonly string[]): Promise<string> {
  const result = await host.exec(cmd);
  if (result.code !== 0) throw new Error(`${cmd.join(' ')} failed in ${host.name}: ${result.stderr}`);
  return result.stdout;
}

/** Writes a sysctl inside `host` (its /proc/sys/net is the host's network namespace). */
async function setSysctl(host: TestHost, key: string, value: string): Promise<void> {
  await mustRun(host, ['sh', '-c', `echo ${value} > /proc/sys/${key.replaceAll('.', '/')}`]);
}

/** Turns `gateway` into a masquerading router for the inside network and routes `insiders` through it. */
export async function makeNatGateway(gateway: TestHost, insiders: readonly TestHost[]): Promise<void> {
  await mustRun(gateway, ['ip', 'addr', 'add', `${INSIDE_GATEWAY}/24`, 'dev', 'eth0']);
  await setSysctl(gateway, 'net.ipv4.ip_forward', '1');
  for (const conf of ['all', 'default', 'eth0']) await setSysctl(gateway, `net.ipv4.conf.${conf}.send_redirects`, '0');
  const ruleset = [
    'table ip stopd_nat {',
    '  chain prerouting { type nat hook prerouting priority dstnat; }',
    '  chain postrouting {',
    '    type nat hook postrouting priority srcnat;',
    `    ip saddr ${INSIDE_NETWORK} ip daddr != ${INSIDE_NETWORK} masquerade`,
    '  }',
    '}',
  ].join('\n');
  await mustRun(gateway, ['sh', '-c', `printf '%s\\n' "$1" | nft -f -`, 'nft', ruleset]);
  for (const host of insiders) await mustRun(host, ['ip', 'route', 'add', 'default', 'via', INSIDE_GATEWAY]);
}

/**
 * A port forward on `gateway`: connections to its outside address at `port` go to
 * `target:targetPort`, their source rewritten to the gateway's inside address (DNAT + SNAT, the
 * usual "hairpin-safe" forward, so the inside host answers through the gateway).
 */
export async function addPortForward(gateway: TestHost, options: { port: number; target: string; targetPort: number }): Promise<void> {
  await mustRun(gateway, ['nft', 'add', 'rule', 'ip', 'stopd_nat', 'prerouting', 'ip', 'daddr', gateway.address, 'tcp', 'dport', String(options.port), 'dnat', 'to', `${options.target}:${options.targetPort}`]);
  await mustRun(gateway, ['nft', 'add', 'rule', 'ip', 'stopd_nat', 'postrouting', 'ip', 'daddr', options.target, 'tcp', 'dport', String(options.targetPort), 'ct', 'status', 'dnat', 'snat', 'to', INSIDE_GATEWAY]);
}
