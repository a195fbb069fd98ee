import { networkInterfaces } from 'node:os';

import { normaliseAddress } from '../protocol/index.js';

/** This host's interface addresses, normalised (loopback included). */
export function listLocalAddresses(): string[] {
  const out: string[] = [];
  for (const list of Object.values(networkInterfaces())) {
    for (const info of list ?? []) out.push(normaliseAddress(info.address.replace(/%.*$/, '')));
  }
  return out;
}
