import { readFileSync } from 'node:fs';
import { endianness } from 'node:os';

import type { RawTcpEntry, RawUnixEntry } from './native-addon.js';

/**
 * Parsers for `/proc/net/tcp`, `/proc/net/tcp6` and `/proc/net/unix`: the fallback when the
 * netlink addon is unavailable. They return the same raw records as the addon, so
 * linux-sockets.ts converts both the same way. Reading these files makes the kernel format
 * every socket of the namespace, which is why they are only the fallback (DESIGN.md, host view).
 */

/**
 * Decodes one address column of /proc/net/tcp{,6}. The kernel prints each 32-bit word of the
 * address with `%08X` as a host-order integer (net/ipv4/tcp_ipv4.c, net/ipv6/tcp_ipv6.c), so
 * on little-endian hosts the bytes of every word appear reversed: 127.0.0.1 is `0100007F`.
 */
export function decodeProcAddress(hex: string, littleEndian: boolean = endianness() === 'LE'): Buffer {
  if ((hex.length !== 8 && hex.length !== 32) || !/^[0-9A-Fa-f]+$/.test(hex)) {
    throw new SyntaxError(`Cannot parse /proc/net address: ${JSON.stringify(hex)}`);
  }
  const out = Buffer.alloc(hex.length / 2);
  for (let word = 0; word < hex.length / 8; word++) {
    const value = Number.parseInt(hex.slice(word * 8, word * 8 + 8), 16);
    if (littleEndian) out.writeUInt32LE(value, word * 4);
    else out.writeUInt32BE(value, word * 4);
  }
  return out;
}

function parseEndpoint(text: string | undefined, littleEndian: boolean): { addr: Buffer; port: number } {
  const colon = text?.indexOf(':') ?? -1;
  if (text === undefined || colon < 0) throw new SyntaxError(`Cannot parse /proc/net endpoint: ${JSON.stringify(text)}`);
  const port = Number.parseInt(text.slice(colon + 1), 16);
  if (!(port >= 0 && port <= 65535)) throw new SyntaxError(`Cannot parse /proc/net endpoint: ${JSON.stringify(text)}`);
  return { addr: decodeProcAddress(text.slice(0, colon), littleEndian), port };
}

function parseDecimal(text: string | undefined, what: string): number {
  const value = text !== undefined && /^\d+$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(value)) throw new SyntaxError(`Cannot parse /proc/net ${what}: ${JSON.stringify(text)}`);
  return value;
}

/**
 * Parses the text of `/proc/net/tcp` (family 4) or `/proc/net/tcp6` (family 6). The header
 * line is skipped; a malformed line throws a SyntaxError (the format is the kernel's, so a
 * mismatch means this parser is wrong, and silently dropping sockets would hide that).
 * `littleEndian` defaults to this host's byte order, which is the one the kernel printed in.
 */
export function parseProcNetTcp(text: string, family: 4 | 6, options: { littleEndian?: boolean } = {}): RawTcpEntry[] {
  const littleEndian = options.littleEndian ?? endianness() === 'LE';
  const out: RawTcpEntry[] = [];
  const lines = text.split('\n');
  // Columns: sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]?.trim();
    if (!line) continue;
    const fields = line.split(/\s+/);
    const local = parseEndpoint(fields[1], littleEndian);
    const remote = parseEndpoint(fields[2], littleEndian);
    if (local.addr.length !== (family === 4 ? 4 : 16) || remote.addr.length !== local.addr.length) {
      throw new SyntaxError(`Cannot parse /proc/net/tcp${family === 4 ? '' : '6'} line: address length does not match`);
    }
    const state = Number.parseInt(fields[3] ?? '', 16);
    if (!(state >= 0 && state <= 255)) throw new SyntaxError(`Cannot parse /proc/net TCP state: ${JSON.stringify(fields[3])}`);
    out.push({
      family,
      state,
      localAddr: local.addr,
      localPort: local.port,
      remoteAddr: remote.addr,
      remotePort: remote.port,
      uid: parseDecimal(fields[7], 'uid'),
      inode: parseDecimal(fields[9], 'inode'),
    });
  }
  return out;
}

/**
 * Parses the text of `/proc/net/unix`. This file has no peer column, so `peer` is always 0;
 * the kernel already prints every NUL of an abstract name as `@` (net/unix/af_unix.c).
 * Lines that are not rows (fragments of paths containing a newline) are skipped.
 */
export function parseProcNetUnix(text: string): RawUnixEntry[] {
  const out: RawUnixEntry[] = [];
  const lines = text.split('\n');
  // Columns: Num RefCount Protocol Flags Type St Inode [Path]; the path is the rest of the line.
  const row = /^\s*[0-9A-Fa-f]+:\s+[0-9A-Fa-f]+\s+[0-9A-Fa-f]+\s+[0-9A-Fa-f]+\s+([0-9A-Fa-f]+)\s+([0-9A-Fa-f]+)\s+(\d+)(?: (.*))?$/;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i];
    if (line === undefined || line.trim() === '') continue;
    const match = row.exec(line);
    // Unlike the TCP files, this one prints user-chosen text: a socket path may contain a
    // newline, which splits its row. Skip such fragments rather than let any local user make
    // the whole view fail.
    if (match === null) continue;
    const [, type = '', state = '', inode = '', path] = match;
    out.push({
      inode: parseDecimal(inode, 'inode'),
      type: Number.parseInt(type, 16),
      state: Number.parseInt(state, 16),
      path: path === undefined || path === '' ? null : path,
      peer: 0,
    });
  }
  return out;
}

/** Reads and parses `/proc/net/tcp` (4) or `/proc/net/tcp6` (6); a missing file (no IPv6) is an empty table. */
export function readProcNetTcp(family: 4 | 6, options: { procRoot?: string } = {}): RawTcpEntry[] {
  const text = readOptional(`${options.procRoot ?? '/proc'}/net/tcp${family === 4 ? '' : '6'}`);
  return text === undefined ? [] : parseProcNetTcp(text, family);
}

/** Reads and parses `/proc/net/unix`; a missing file is an empty table. */
export function readProcNetUnix(options: { procRoot?: string } = {}): RawUnixEntry[] {
  const text = readOptional(`${options.procRoot ?? '/proc'}/net/unix`);
  return text === undefined ? [] : parseProcNetUnix(text);
}

function readOptional(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    // A kernel without IPv6 has no tcp6; anything else (EACCES, EIO) is a real failure.
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}
