import { isIPv4, isIPv6 } from 'node:net';
import { networkInterfaces } from 'node:os';

/**
 * Canonical text of an address: IPv4-mapped IPv6 (`::ffff:192.0.2.1`, what a dual-stack
 * listener reports for IPv4 peers) becomes plain IPv4, IPv6 is lower-case and compressed.
 */
export function normaliseAddress(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped?.[1] !== undefined) return mapped[1];
  if (isIPv6(address)) {
    // The WHATWG URL parser prints IPv6 hosts in RFC 5952 form (lower case, longest zero run compressed).
    return new URL(`http://[${address}]/`).hostname.slice(1, -1);
  }
  return address;
}

/** 4 or 6 for a (normalised) address. */
export function addressFamily(address: string): 4 | 6 {
  return isIPv4(address) ? 4 : 6;
}

/** This host's interface addresses, normalised (loopback included). */
export function listLocalAddresses(): string[] {
  const out: string[] = [];
  for (const list of Object.values(networkInterfaces())) {
    for (const info of list ?? []) out.push(normaliseAddress(info.address.replace(/%.*$/, '')));
  }
  return out;
}
