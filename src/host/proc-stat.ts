/**
 * Pure parsers for the /proc text files the Linux process view reads (proc(5)). No I/O here,
 * so every quirk (a comm with spaces and parentheses, tty device numbers) is unit-tested on
 * literal strings.
 */
import { HostLookupError } from '../errors.js';

/** The fields of `/proc/PID/stat` that the evidence record needs (paper Table II, per process). */
export interface ProcStat {
  readonly pid: number;
  /** comm: the executable's name, at most 15 bytes, may contain anything but NUL. */
  readonly name: string;
  /** One-letter state (`R`, `S`, `Z`, ...). */
  readonly state: string;
  readonly ppid: number;
  readonly pgrp: number;
  readonly session: number;
  /** Encoded controlling terminal device number; 0 when there is none. */
  readonly ttyNr: number;
  readonly priority: number;
  readonly nice: number;
  /** Start time in clock ticks since boot. */
  readonly startTicks: number;
}

/**
 * Parses the single line of `/proc/PID/stat`.
 *
 * The comm field is wrapped in parentheses but is not escaped: a program named `a) b (c`
 * yields `1 (a) b (c) S ...`. Only the last `)` of the line closes it, because every field
 * after comm is numeric or a single state letter.
 */
export function parseProcStat(text: string): ProcStat {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 1 || close < open) throw statError('no comm field in parentheses');
  const pid = Number(text.slice(0, open).trim());
  const name = text.slice(open + 1, close);
  // Fields after comm, numbered from 3 as in proc(5): rest[0] is field 3 (state).
  const rest = text.slice(close + 1).trim().split(/\s+/);
  const field = (n: number): number => {
    const raw = rest[n - 3];
    const value = raw === undefined ? Number.NaN : Number(raw);
    if (!Number.isFinite(value)) throw statError(`field ${n} is missing or not a number`);
    return value;
  };
  const state = rest[0];
  if (!Number.isSafeInteger(pid) || state === undefined || state === '') {
    throw statError('pid or state is malformed');
  }
  return {
    pid,
    name,
    state,
    ppid: field(4),
    pgrp: field(5),
    session: field(6),
    ttyNr: field(7),
    priority: field(18),
    nice: field(19),
    startTicks: field(22),
  };
}

/** Real and effective uid from the `Uid:` line of `/proc/PID/status` (real, effective, saved, fs). */
export function parseStatusUids(text: string): { real: number; effective: number } {
  const match = /^Uid:\s+(\d+)\s+(\d+)/m.exec(text);
  if (match?.[1] === undefined || match[2] === undefined) {
    throw new HostLookupError('Cannot parse /proc/PID/status: no Uid line');
  }
  return { real: Number(match[1]), effective: Number(match[2]) };
}

/** Boot time in seconds since the epoch, from the `btime` line of `/proc/stat`. */
export function parseBootTime(text: string): number {
  const match = /^btime\s+(\d+)\s*$/m.exec(text);
  if (match?.[1] === undefined) throw new HostLookupError('Cannot parse /proc/stat: no btime line');
  return Number(match[1]);
}

/**
 * Device name of a `tty_nr` from `/proc/PID/stat`, or null for 0 (no controlling terminal).
 *
 * The kernel encodes the device number as in `new_encode_dev`: minor bits 0-7, major bits
 * 8-19, minor bits 8-19 in bits 20-31. Majors follow Documentation/admin-guide/devices.txt;
 * a device this table does not name is given as `/dev/char/MAJOR:MINOR`, the udev link that
 * resolves to it on the host.
 */
export function decodeTtyNr(ttyNr: number): string | null {
  if (ttyNr === 0) return null;
  const major = (ttyNr >>> 8) & 0xfff;
  const minor = (ttyNr & 0xff) | ((ttyNr >>> 12) & 0xfff00);
  // Unix98 pty slaves: majors 136-143; modern kernels use major 136 with a 20-bit minor.
  if (major >= 136 && major <= 143) return `/dev/pts/${(major - 136) * 256 + minor}`;
  switch (major) {
    case 4:
      if (minor === 0) return '/dev/tty0';
      return minor < 64 ? `/dev/tty${minor}` : `/dev/ttyS${minor - 64}`;
    case 5:
      if (minor === 0) return '/dev/tty';
      if (minor === 1) return '/dev/console';
      if (minor === 2) return '/dev/ptmx';
      break;
    case 166:
      return `/dev/ttyACM${minor}`;
    case 188:
      return `/dev/ttyUSB${minor}`;
    case 204:
      // Low-density serial ports: 64 and up are the AMBA (ttyAMA) ports on ARM boards.
      if (minor >= 64 && minor <= 77) return `/dev/ttyAMA${minor - 64}`;
      break;
    case 229:
      return `/dev/hvc${minor}`;
    default:
      break;
  }
  return `/dev/char/${major}:${minor}`;
}

/** Encodes a device number the way `/proc/PID/stat` shows `tty_nr` (the inverse of {@link decodeTtyNr}, for tests). */
export function encodeTtyNr(major: number, minor: number): number {
  return ((minor & 0xff) | ((major & 0xfff) << 8) | ((minor & ~0xff) << 12)) >>> 0;
}

/**
 * CLK_TCK (the unit of `starttime`) from the `AT_CLKTCK` entry of an auxiliary vector
 * (`/proc/self/auxv`): what `sysconf(_SC_CLK_TCK)` returns, without a native call or a
 * `getconf` child process. Undefined when the vector has no such entry.
 */
export function parseAuxvClockTicks(
  auxv: Buffer,
  options: { wordSize?: 4 | 8; littleEndian?: boolean } = {},
): number | undefined {
  const AT_NULL = 0;
  const AT_CLKTCK = 17;
  const wordSize = options.wordSize ?? 8;
  const littleEndian = options.littleEndian ?? true;
  const read = (offset: number): number => {
    if (wordSize === 4) return littleEndian ? auxv.readUInt32LE(offset) : auxv.readUInt32BE(offset);
    return Number(littleEndian ? auxv.readBigUInt64LE(offset) : auxv.readBigUInt64BE(offset));
  };
  for (let offset = 0; offset + 2 * wordSize <= auxv.length; offset += 2 * wordSize) {
    const type = read(offset);
    if (type === AT_NULL) return undefined;
    if (type === AT_CLKTCK) {
      const ticks = read(offset + wordSize);
      return ticks > 0 ? ticks : undefined;
    }
  }
  return undefined;
}

function statError(reason: string): HostLookupError {
  return new HostLookupError(`Cannot parse /proc/PID/stat: ${reason}`);
}
