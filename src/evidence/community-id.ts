/**
 * Community ID flow hashing, version 1 (Corelight's community-id-spec), the flow identifier
 * Zeek and Suricata write: an investigator joins a hop of a STOP chain with IDS and flow logs
 * by this one string.
 *
 * It lives in `evidence/` because it needs SHA-1 (`node:crypto`) and `protocol/` and `trace/`
 * are compiler-pure; `evidence/` is the lowest layer that both may use node modules and owns
 * what a record says about its connections (the records carry it), and `cli/` reads it from
 * here for `trace` and the walk.
 */
import { createHash } from 'node:crypto';
import { parseIpBytes } from '../protocol/ip-address.js';
import type { Endpoint } from '../host/types.js';

/** IP protocol number of TCP, the only transport STOP asks about. */
export const IPPROTO_TCP = 6;

/** Protocols whose flows are keyed by ports in Community ID v1 (TCP, UDP, SCTP). */
const PORT_PROTOCOLS = new Set([6, 17, 132]);
/** ICMP and ICMPv6 map type and code to ports (Zeek's table); STOP never needs them. */
const ICMP_PROTOCOLS = new Set([1, 58]);

/** Options of {@link formatCommunityId}. */
export interface CommunityIdOptions {
  /** IP protocol number; default TCP (6). */
  readonly protocol?: number;
  /** The spec's seed, 0..65535; default 0, what Zeek and Suricata use unless configured. */
  readonly seed?: number;
  /** Base64 digest (the spec's default, true) or lowercase hex (false). */
  readonly base64?: boolean;
}

/**
 * The Community ID v1 of the flow between two endpoints, e.g. `1:wCb3OG7yAFWelaUydu0D+125CLM=`.
 * The same for either direction (the spec orders the endpoints). IPv4-mapped IPv6
 * (`::ffff:a.b.c.d`) counts as the IPv4 address, as a monitor on the wire sees it. A port of
 * Ports are ignored (and may be null) for protocols other than TCP, UDP and SCTP, as the spec says. Throws a RangeError for text that is not an IP
 * address, addresses of different families, ports out of range, or ICMP (not supported here).
 */
export function formatCommunityId(
  source: { readonly address: string; readonly port: number | null },
  destination: { readonly address: string; readonly port: number | null },
  options: CommunityIdOptions = {},
): string {
  const protocol = options.protocol ?? IPPROTO_TCP;
  const seed = options.seed ?? 0;
  if (!Number.isInteger(protocol) || protocol < 0 || protocol > 255) throw new RangeError(`Cannot compute Community ID: protocol ${protocol} is not 0..255`);
  if (ICMP_PROTOCOLS.has(protocol)) throw new RangeError(`Cannot compute Community ID: ICMP (protocol ${protocol}) is not supported`);
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffff) throw new RangeError(`Cannot compute Community ID: seed ${seed} is not 0..65535`);
  const saddr = parseIpBytes(source.address);
  const daddr = parseIpBytes(destination.address);
  if (saddr === undefined) throw new RangeError(`Cannot compute Community ID: ${JSON.stringify(source.address)} is not an IP address`);
  if (daddr === undefined) throw new RangeError(`Cannot compute Community ID: ${JSON.stringify(destination.address)} is not an IP address`);
  if (saddr.family !== daddr.family) throw new RangeError('Cannot compute Community ID: the endpoints are of different address families');
  const withPorts = PORT_PROTOCOLS.has(protocol);
  const sport = withPorts ? checkPort(source.port) : 0;
  const dport = withPorts ? checkPort(destination.port) : 0;
  // The spec: "swap the endpoints, if needed, so the numerically smaller IP:port tuple comes
  // first. If the IP addresses are equal, the ports decide."
  const order = compareBytes(saddr.bytes, daddr.bytes);
  const keep = order < 0 || (order === 0 && sport <= dport);
  const [a, b] = keep ? [saddr.bytes, daddr.bytes] : [daddr.bytes, saddr.bytes];
  const [p, q] = keep ? [sport, dport] : [dport, sport];
  // seed (2) . saddr . daddr . proto (1) . padding 0 (1) [. sport (2) . dport (2)], network order.
  const head = Buffer.from([seed >> 8, seed & 0xff]);
  const tail = withPorts ? Buffer.from([protocol, 0, p >> 8, p & 0xff, q >> 8, q & 0xff]) : Buffer.from([protocol, 0]);
  const digest = createHash('sha1').update(head).update(a).update(b).update(tail).digest();
  return `1:${options.base64 === false ? digest.toString('hex') : digest.toString('base64')}`;
}

/**
 * The Community ID of a TCP connection as records and the ledger give it (`local`, `remote`),
 * or null when an endpoint is not an IP address (a record from elsewhere may hold anything).
 */
export function describeCommunityId(connection: { readonly local: Endpoint; readonly remote: Endpoint }): string | null {
  try {
    return formatCommunityId(connection.local, connection.remote);
  } catch {
    return null;
  }
}

function checkPort(port: number | null): number {
  if (port === null || !Number.isInteger(port) || port < 0 || port > 0xffff) {
    throw new RangeError(`Cannot compute Community ID: port ${String(port)} is not 0..65535`);
  }
  return port;
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < a.length; i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}
