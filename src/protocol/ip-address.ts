/**
 * IP address text, validated and canonicalised without `node:net` (the codec is pure).
 *
 * IPv4 is strict dotted-quad: exactly four decimal parts 0..255 with no leading zeros, since
 * `010.1.1.1` means 8.1.1.1 to inet_aton and 10.1.1.1 to a human. IPv6 follows RFC 4291
 * section 2.2 and prints per RFC 5952 (lower case, no leading zeros, longest run of two or
 * more zero groups compressed, the first such run on a tie).
 */

/** An IP address in canonical text. IPv4-mapped IPv6 (`::ffff:a.b.c.d`) is given as family 4. */
export interface IpAddress {
  readonly family: 4 | 6;
  readonly address: string;
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

/** Formats eight 16-bit groups as RFC 5952 text; IPv4-mapped addresses in mixed notation (RFC 5952 section 5). */
export function formatIpv6Groups(groups: readonly number[]): string {
  if (groups.length !== 8) throw new RangeError('Cannot format IPv6 address: it needs 8 groups');
  if (isV4Mapped(groups)) {
    const lo = groups[6] ?? 0;
    const hi = groups[7] ?? 0;
    return `::ffff:${lo >> 8}.${lo & 0xff}.${hi >> 8}.${hi & 0xff}`;
  }
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
    if (isV4Mapped(groups)) {
      const lo = groups[6] ?? 0;
      const hi = groups[7] ?? 0;
      return { family: 4, address: `${lo >> 8}.${lo & 0xff}.${hi >> 8}.${hi & 0xff}` };
    }
    return { family: 6, address: formatIpv6Groups(groups) };
  }
  return parseIpv4Bytes(text) === undefined ? undefined : { family: 4, address: text };
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
