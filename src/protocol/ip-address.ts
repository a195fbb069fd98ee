/**
 * IP addresses, the one module that reads and writes them: text to bytes or groups, bytes to
 * canonical text, validated and canonicalised without `node:net` (the codec is pure). `host`
 * uses it for the kernel's address bytes (netlink, /proc) and for the peers Node reports;
 * `daemon` for requesters and CL_IP.
 *
 * IPv4 is strict dotted-quad: exactly four decimal parts 0..255 with no leading zeros, since
 * `010.1.1.1` means 8.1.1.1 to inet_aton and 10.1.1.1 to a human. IPv6 follows RFC 4291
 * section 2.2 and prints per RFC 5952 (lower case, no leading zeros, longest run of two or
 * more zero groups compressed, the first such run on a tie).
 *
 * Mixed notation: RFC 5952 section 5 recommends the dotted quad only for well-known prefixes
 * that carry an IPv4 address. Only IPv4-mapped addresses (`::ffff:0:0/96`) get it here, and
 * where an address names a peer they are given as plain IPv4 instead, because that is what a
 * dual-stack listener's IPv4 peer is. Everything else prints in hex, as the WHATWG URL
 * serialiser does: the deprecated IPv4-compatible `::1.2.3.4` (RFC 4291 section 2.5.5.1) is
 * `::102:304`, although inet_ntop (and so `net.SocketAddress`) prints `::1.2.3.4`, and the
 * NAT64 `64:ff9b::192.0.2.33` is `64:ff9b::c000:221`.
 */

/** An IP address in canonical text. IPv4-mapped IPv6 (`::ffff:a.b.c.d`) is given as family 4. */
export interface IpAddress {
  readonly family: 4 | 6;
  readonly address: string;
}

/** An IP address as bytes in network order: 4 for IPv4, 16 for IPv6, as the kernel gives them. */
export interface IpBytes {
  readonly family: 4 | 6;
  readonly bytes: Uint8Array;
}

const IPV4_PART = /^(?:0|[1-9][0-9]{0,2})$/;
const HEX_GROUP = /^[0-9A-Fa-f]{1,4}$/;

/**
 * Parses dotted IPv4 text (`192.0.2.1`): four parts 0..255 without leading zeros. Returns
 * the four bytes, or undefined when `text` is not exactly that.
 */
export function parseIpv4Bytes(text: string): [number, number, number, number] | undefined {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  const bytes: number[] = [];
  for (const part of parts) {
    if (!IPV4_PART.test(part)) return undefined;
    const value = Number(part);
    if (value > 255) return undefined;
    bytes.push(value);
  }
  return bytes as [number, number, number, number];
}

/**
 * Parses IPv6 text without brackets or zone (`2001:db8::1`, `::ffff:192.0.2.1`) into its
 * eight 16-bit groups, or undefined when it is not valid RFC 4291 text.
 */
export function parseIpv6Groups(text: string): number[] | undefined {
  // Longest valid text is 45 characters (six groups and a dotted quad); refusing more keeps
  // the work bounded on hostile input.
  if (text.length < 2 || text.length > 45) return undefined;
  let head = text;
  let tail: string | undefined;
  const gap = text.indexOf('::');
  if (gap >= 0) {
    if (text.indexOf('::', gap + 1) >= 0) return undefined; // RFC 4291: "::" at most once
    head = text.slice(0, gap);
    tail = text.slice(gap + 2);
  }
  const headGroups = parseGroupList(head, tail === undefined);
  if (headGroups === undefined) return undefined;
  if (tail === undefined) return headGroups.length === 8 ? headGroups : undefined;
  const tailGroups = parseGroupList(tail, true);
  if (tailGroups === undefined) return undefined;
  // "::" stands for one or more zero groups (RFC 4291 section 2.2).
  const missing = 8 - headGroups.length - tailGroups.length;
  if (missing < 1) return undefined;
  return [...headGroups, ...new Array<number>(missing).fill(0), ...tailGroups];
}

/** Parses `a:b:c` (possibly empty) into groups; a dotted quad is allowed last when `last` is set. */
function parseGroupList(text: string, last: boolean): number[] | undefined {
  if (text === '') return [];
  const parts = text.split(':');
  const groups: number[] = [];
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i] ?? '';
    if (last && i === parts.length - 1 && part.includes('.')) {
      // RFC 4291 section 2.2 form 3: the low 32 bits may be written as dotted IPv4.
      const bytes = parseIpv4Bytes(part);
      if (bytes === undefined) return undefined;
      groups.push((bytes[0] << 8) | bytes[1], (bytes[2] << 8) | bytes[3]);
    } else {
      if (!HEX_GROUP.test(part)) return undefined;
      groups.push(parseInt(part, 16));
    }
  }
  return groups.length <= 8 ? groups : undefined;
}

/** True when the eight groups are an IPv4-mapped address, `::ffff:0:0/96` (RFC 4291 section 2.5.5.2). */
function isV4Mapped(groups: readonly number[]): boolean {
  return groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff;
}

/** Dotted text of the IPv4 address in the last two of eight groups. */
function formatLowDottedQuad(groups: readonly number[]): string {
  const lo = groups[6] ?? 0;
  const hi = groups[7] ?? 0;
  return `${lo >> 8}.${lo & 0xff}.${hi >> 8}.${hi & 0xff}`;
}

/** The eight 16-bit groups of 16 address bytes. */
function groupsOfBytes(bytes: Uint8Array): number[] {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0));
  return groups;
}

/** True when 16 address bytes are an IPv4-mapped address (`::ffff:0:0/96`); no allocation, /proc/net scans call it per row. */
function isV4MappedBytes(bytes: Uint8Array): boolean {
  if (bytes.length !== 16 || bytes[10] !== 0xff || bytes[11] !== 0xff) return false;
  for (let i = 0; i < 10; i++) if (bytes[i] !== 0) return false;
  return true;
}

/** Formats eight 16-bit groups as RFC 5952 text; IPv4-mapped addresses in mixed notation (RFC 5952 section 5). */
export function formatIpv6Groups(groups: readonly number[]): string {
  if (groups.length !== 8) throw new RangeError('Cannot format IPv6 address: it needs 8 groups');
  if (isV4Mapped(groups)) return `::ffff:${formatLowDottedQuad(groups)}`;
  // RFC 5952 section 4.2: compress the longest run of zero groups, two or more long; the
  // first one when runs tie.
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLength).join(':')}`;
}

/**
 * Canonical RFC 5952 text of an IPv6 address (no brackets, no zone), or undefined when
 * `text` is not a valid IPv6 address.
 */
export function canonicalizeIpv6(text: string): string | undefined {
  const groups = parseIpv6Groups(text);
  return groups === undefined ? undefined : formatIpv6Groups(groups);
}

/**
 * Parses dotted IPv4 or (unbracketed) IPv6 text into canonical form. IPv4-mapped IPv6 is
 * returned as family 4, the way `src/host` reports endpoints, so that `[::ffff:192.0.2.1]`
 * and `192.0.2.1` name the same peer. Returns undefined for anything else (host names,
 * zones, brackets, stray white space).
 */
export function parseIpAddress(text: string): IpAddress | undefined {
  if (text.includes(':')) {
    const groups = parseIpv6Groups(text);
    if (groups === undefined) return undefined;
    if (isV4Mapped(groups)) return { family: 4, address: formatLowDottedQuad(groups) };
    return { family: 6, address: formatIpv6Groups(groups) };
  }
  return parseIpv4Bytes(text) === undefined ? undefined : { family: 4, address: text };
}

/**
 * Canonical text of an address as text reports it (a peer of a dual-stack listener, a name
 * resolved, an interface): IPv4-mapped IPv6 becomes plain IPv4 and IPv6 is RFC 5952 text, as
 * {@link parseIpAddress} gives them. Text that is not an IP address (a host name, a `%zone`
 * suffix, brackets) is returned as it is, for the caller to refuse or compare as it sees fit.
 */
export function normaliseAddress(text: string): string {
  return parseIpAddress(text)?.address ?? text;
}

/** 4 or 6 for an address already normalised by {@link normaliseAddress}: 4 exactly for dotted IPv4. */
export function addressFamily(address: string): 4 | 6 {
  return parseIpv4Bytes(address) === undefined ? 6 : 4;
}

/**
 * Parses dotted IPv4 or IPv6 text into bytes. A `%zone` suffix of IPv6 text is ignored: it
 * names the link the address is used on (RFC 4007 section 11), not part of the address the
 * kernel compares. IPv4-mapped IPv6 (`::ffff:1.2.3.4`) becomes its 4 IPv4 bytes: the kernel
 * hashes the IPv4 connections of dual-stack sockets by their IPv4 addresses, and host
 * interfaces never show v4-mapped text. Returns undefined for anything else.
 */
export function parseIpBytes(text: string): IpBytes | undefined {
  if (!text.includes(':')) {
    const quad = parseIpv4Bytes(text);
    return quad === undefined ? undefined : { family: 4, bytes: Uint8Array.from(quad) };
  }
  const zone = text.indexOf('%');
  const groups = parseIpv6Groups(zone >= 0 ? text.slice(0, zone) : text);
  if (groups === undefined) return undefined;
  const bytes = new Uint8Array(16);
  groups.forEach((group, i) => {
    bytes[2 * i] = group >> 8;
    bytes[2 * i + 1] = group & 0xff;
  });
  return isV4Mapped(groups) ? { family: 4, bytes: bytes.slice(12) } : { family: 6, bytes };
}

/**
 * Canonical text of 4 or 16 address bytes (netlink, /proc/net): dotted IPv4; IPv4-mapped IPv6
 * as plain IPv4, the way endpoints are reported; other IPv6 as RFC 5952 text, so that kernel
 * bytes and {@link normaliseAddress}d text of one address are the same string.
 */
export function formatIpBytes(bytes: Uint8Array): string {
  if (bytes.length === 4) return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`;
  if (bytes.length !== 16) throw new RangeError(`Cannot format address: ${bytes.length} bytes is neither IPv4 nor IPv6`);
  const groups = groupsOfBytes(bytes);
  return isV4Mapped(groups) ? formatLowDottedQuad(groups) : formatIpv6Groups(groups);
}

/**
 * Whether two addresses in bytes are the same address, an IPv4-mapped IPv6 address being the
 * IPv4 address it maps (a dual-stack socket's IPv4 peer in /proc/net/tcp6 is v4-mapped).
 */
export function isSameIpAddress(a: Uint8Array, b: Uint8Array): boolean {
  const left = isV4MappedBytes(a) ? a.subarray(12) : a;
  const right = isV4MappedBytes(b) ? b.subarray(12) : b;
  if (left.length !== right.length) return false;
  for (let i = 0; i < left.length; i++) if (left[i] !== right[i]) return false;
  return true;
}

/** Prefix length by which IPv6 requesters are grouped: one /64 is one LAN or one customer (RFC 6177). */
export const REQUESTER_IPV6_PREFIX = 64;

/**
 * The requester group of an address: who shares one connection, rate and store allowance
 * (issue 13). IPv4 (and IPv4-mapped IPv6) is grouped per address; IPv6 per /64, since a
 * single host or customer is routinely handed a whole /64 (RFC 6177) and could otherwise
 * take a fresh address for every connection. Returns `a.b.c.d` or `prefix::/64` text, or
 * undefined when `text` is not an IP address.
 */
export function formatRequesterGroup(text: string): string | undefined {
  const parsed = parseIpAddress(text);
  if (parsed === undefined) return undefined;
  if (parsed.family === 4) return parsed.address;
  const groups = parseIpv6Groups(parsed.address) ?? [];
  const kept = groups.map((group, index) => (index < REQUESTER_IPV6_PREFIX / 16 ? group : 0));
  return `${formatIpv6Groups(kept)}/${REQUESTER_IPV6_PREFIX}`;
}
