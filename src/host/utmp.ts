/**
 * The utmp login records (paper Table II, per request: "entries in utmp for users in
 * report"), read from glibc's binary file. Layout of `struct utmp` on x86_64 and other
 * 64-bit glibc targets (bits/utmp.h, `__WORDSIZE_TIME64_COMPAT32`: session and time are
 * 32-bit so 32- and 64-bit programs share the file), 384 bytes:
 *
 * | offset | field |
 * |---|---|
 * | 0 | ut_type int16 (+2 pad) |
 * | 4 | ut_pid int32 |
 * | 8 | ut_line char[32] |
 * | 40 | ut_id char[4] |
 * | 44 | ut_user char[32] |
 * | 76 | ut_host char[256] |
 * | 332 | ut_exit {int16 termination, int16 exit} |
 * | 336 | ut_session int32 |
 * | 340 | ut_tv {int32 sec, int32 usec} |
 * | 348 | ut_addr_v6 int32[4] (network byte order) |
 * | 364 | reserved char[20] |
 */
import { readFileSync } from 'node:fs';
import { HostLookupError } from '../errors.js';
import { formatIpBytes } from '../protocol/index.js';
import type { UtmpEntry } from './types.js';

/** Size of one glibc `struct utmp` record on x86_64. */
export const UTMP_RECORD_SIZE = 384;

/** `ut_type` names, indexed by value (bits/utmp.h). */
export const UTMP_TYPES = [
  'EMPTY',
  'RUN_LVL',
  'BOOT_TIME',
  'NEW_TIME',
  'OLD_TIME',
  'INIT_PROCESS',
  'LOGIN_PROCESS',
  'USER_PROCESS',
  'DEAD_PROCESS',
  'ACCOUNTING',
] as const;

/**
 * Parses a utmp file's bytes into entries, in file order. A trailing partial record (the file
 * read while a writer extends it) is ignored. Unknown types are kept as `TYPE_<n>`.
 */
export function parseUtmp(buf: Buffer): UtmpEntry[] {
  const out: UtmpEntry[] = [];
  for (let base = 0; base + UTMP_RECORD_SIZE <= buf.length; base += UTMP_RECORD_SIZE) {
    const typeValue = buf.readInt16LE(base);
    const seconds = buf.readInt32LE(base + 340);
    const micros = buf.readInt32LE(base + 344);
    out.push({
      type: UTMP_TYPES[typeValue] ?? `TYPE_${typeValue}`,
      pid: buf.readInt32LE(base + 4),
      line: readCString(buf, base + 8, 32),
      user: readCString(buf, base + 44, 32),
      host: readCString(buf, base + 76, 256),
      time: new Date(seconds * 1000 + Math.trunc(micros / 1000)).toISOString(),
      address: readAddress(buf.subarray(base + 348, base + 364)),
    });
  }
  return out;
}

/**
 * Reads and parses a utmp file; [] when the file does not exist (DESIGN.md: the file may be
 * missing, e.g. in containers). Throws HostLookupError when it exists but cannot be read.
 */
export function readUtmp(path = '/var/run/utmp'): UtmpEntry[] {
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch (error) {
    if (typeof error === 'object' && error !== null && 'code' in error && error.code === 'ENOENT') return [];
    throw new HostLookupError(`Cannot read utmp file ${path}: ${String(error)}`, { cause: error });
  }
  return parseUtmp(buf);
}

/**
 * The entries whose user name is one of `users` (paper Table II: utmp entries for users in
 * the report), in file order, whatever their type: a DEAD_PROCESS entry that still names a
 * user tells an investigator that the session has ended.
 */
export function filterUtmpForUsers(entries: readonly UtmpEntry[], users: readonly string[]): UtmpEntry[] {
  const wanted = new Set(users.filter((user) => user !== ''));
  return entries.filter((entry) => wanted.has(entry.user));
}

/** A fixed-size char array: up to the first NUL, or the whole field when it is full (nonstring). */
function readCString(buf: Buffer, offset: number, size: number): string {
  const field = buf.subarray(offset, offset + size);
  const nul = field.indexOf(0);
  return field.subarray(0, nul === -1 ? size : nul).toString('utf8');
}

/**
 * ut_addr_v6: IPv4 in the first word with the rest zero (glibc's convention for IPv4 logins),
 * or a full IPv6 address; null when all zero. Printed as every endpoint is (types.ts):
 * IPv4-mapped IPv6 as plain IPv4, other IPv6 in RFC 5952 form.
 */
function readAddress(raw: Buffer): string | null {
  if (raw.every((byte) => byte === 0)) return null;
  return formatIpBytes(raw.subarray(4).every((byte) => byte === 0) ? raw.subarray(0, 4) : raw);
}
