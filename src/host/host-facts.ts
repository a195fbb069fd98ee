/**
 * Per-request facts about the host (paper Table II, per request: host name, boot time,
 * OS/version/kernel), so an investigator can tell which machine and which boot a record
 * came from.
 */
import { readFileSync } from 'node:fs';
import { hostname, release, version } from 'node:os';
import { HostLookupError } from '../errors.js';
import { describeProcError } from './proc-fd-reader.js';
import { parseBootTime } from './proc-stat.js';
import type { HostFacts } from './types.js';

/** Options of {@link readHostFacts}. */
export interface ReadHostFactsOptions {
  /** Where procfs is mounted; default `/proc`. */
  readonly procRoot?: string;
  /** os-release files tried in order; default `/etc/os-release` then `/usr/lib/os-release` (os-release(5)). */
  readonly osReleasePaths?: readonly string[];
}

/**
 * Reads the host's name, boot time (`btime` of /proc/stat), kernel (`uname -r` and `-v`) and
 * OS (`PRETTY_NAME` of os-release, or null when no file has it). Throws HostLookupError
 * when /proc/stat cannot be read.
 */
export function readHostFacts(options: ReadHostFactsOptions = {}): HostFacts {
  return {
    hostname: hostname(),
    bootTime: new Date(readBootTimeMs(options.procRoot)).toISOString(),
    kernel: `${release()} ${version()}`.trim(),
    os: readPrettyName(options.osReleasePaths ?? ['/etc/os-release', '/usr/lib/os-release']),
  };
}

/** The boot time (`btime` of PROCROOT/stat) in milliseconds since the epoch. Throws HostLookupError when unreadable. */
export function readBootTimeMs(procRoot = '/proc'): number {
  const path = `${procRoot}/stat`;
  let text: string;
  try {
    text = readFileSync(path, 'latin1');
  } catch (error) {
    throw new HostLookupError(`Cannot read ${path}: ${describeProcError(error)}`, { cause: error });
  }
  return parseBootTime(text) * 1000;
}

/**
 * Parses os-release(5) text: `KEY=value` lines, values optionally in single or double quotes
 * with shell-style backslash escapes inside double quotes; comments and blank lines skipped.
 */
export function parseOsRelease(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const rawLine of text.split('\n')) {
    const line = rawLine.trim();
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (match?.[1] === undefined || match[2] === undefined) continue;
    out.set(match[1], unquote(match[2]));
  }
  return out;
}

function unquote(value: string): string {
  if (value.length >= 2 && value.startsWith("'") && value.endsWith("'")) return value.slice(1, -1);
  if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) {
    return value.slice(1, -1).replace(/\\([$"\\`])/g, '$1');
  }
  return value;
}

function readPrettyName(paths: readonly string[]): string | null {
  for (const path of paths) {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch {
      // os-release(5): the first file that exists wins; a missing one is not an error.
      continue;
    }
    return parseOsRelease(text).get('PRETTY_NAME') ?? null;
  }
  return null;
}
