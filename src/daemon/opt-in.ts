import { lookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';
import { normaliseAddress } from '../protocol/index.js';

/** How long one host name of a `~/.ident` list may take to resolve before it counts as no match. */
const RESOLVE_TIMEOUT_MS = 1000;

/**
 * Whether a user's opt-in list (paper 4, `~/.ident`) admits `requester`: an exact address, a
 * CIDR (`192.0.2.0/24`, `2001:db8::/32`), or a host name whose addresses include the requester.
 * Anything unparseable is ignored: opt-in only ever widens disclosure when it is unambiguous.
 */
export async function optInAdmits(entries: readonly string[], requester: string): Promise<boolean> {
  const address = normaliseAddress(requester);
  const family = isIP(address) === 6 ? 'ipv6' : 'ipv4';
  const list = new BlockList();
  const names: string[] = [];
  for (const entry of entries) {
    const [base = '', prefix] = entry.split('/');
    const version = isIP(base);
    if (version === 0) {
      if (prefix === undefined && /^[a-z0-9.-]+$/i.test(entry)) names.push(entry);
      continue;
    }
    const type = version === 6 ? 'ipv6' : 'ipv4';
    if (prefix === undefined) {
      list.addAddress(normaliseAddress(base), isIP(normaliseAddress(base)) === 6 ? 'ipv6' : 'ipv4');
    } else if (/^\d{1,3}$/.test(prefix) && Number(prefix) <= (version === 6 ? 128 : 32)) {
      list.addSubnet(base, Number(prefix), type);
    }
  }
  if (list.check(address, family)) return true;
  for (const name of names) {
    const addresses = await resolveWithin(name, RESOLVE_TIMEOUT_MS);
    if (addresses.some((a) => normaliseAddress(a) === address)) return true;
  }
  return false;
}

async function resolveWithin(name: string, ms: number): Promise<string[]> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<string[]>((resolve) => {
    timer = setTimeout(() => resolve([]), ms);
  });
  try {
    const resolved = lookup(name, { all: true }).then(
      (list) => list.map((entry) => entry.address),
      () => [],
    );
    return await Promise.race([resolved, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
