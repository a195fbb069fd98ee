import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError } from '../errors.js';
import type { ListenAddress } from '../daemon/server.js';

/** `parseArgs` with strict checking, turning its errors into one-sentence UsageErrors. */
export function parseCommandLine<T extends ParseArgsConfig & { strict?: true }>(
  config: T,
  program: string,
): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs<T>(config);
  } catch (error) {
    const message = (error as Error).message.replace(/\. To specify a positional argument.*$/s, '');
    throw new UsageError(`${message.replace(/\.$/, '')}; see \`${program} --help\``);
  }
}

/** `stopctl COMMAND --help`: that command's section of the whole help, as a usage line and its text. */
export function formatCommandHelp(section: string): string {
  return `Usage: stopctl ${section.trimStart()}`;
}

/** An integer option within bounds, or a UsageError naming the option. */
export function parseInteger(text: string, options: { name: string; min: number; max: number }): number {
  if (!/^\d+$/.test(text) || Number(text) < options.min || Number(text) > options.max) {
    throw new UsageError(`${options.name} must be a whole number from ${options.min} to ${options.max}, not ${JSON.stringify(text)}`);
  }
  return Number(text);
}

/** `ADDR:PORT`, `[IPV6]:PORT`; the port may be 0 (any free port, printed at start). */
export function parseListenAddress(text: string): ListenAddress {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|(\d{1,3}(?:\.\d{1,3}){3}|[A-Za-z0-9.-]+)):(\d{1,5})$/.exec(text);
  if (match === null) {
    throw new UsageError(`must be ADDR:PORT such as 0.0.0.0:113 or [::]:113, not ${JSON.stringify(text)}`);
  }
  const host = match[1] ?? match[2] ?? '';
  const port = Number(match[3]);
  if (port > 65535) throw new UsageError(`must have a port from 0 to 65535, not ${JSON.stringify(text)}`);
  return { host, port };
}

const DURATION_UNITS: Readonly<Record<string, number>> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** A duration such as `90s`, `30m`, `24h` or `7d`, in milliseconds; a UsageError naming the option otherwise. */
export function parseDuration(text: string, name: string): number {
  const match = /^(\d{1,9})([smhd])$/.exec(text.trim());
  const unit = match === null ? undefined : DURATION_UNITS[match[2] ?? ''];
  if (match === null || unit === undefined || Number(match[1]) === 0) {
    throw new UsageError(`${name} must be a duration such as 90s, 30m, 24h or 7d, not ${JSON.stringify(text)}`);
  }
  return Number(match[1]) * unit;
}
