/**
 * Every setting of stopd in one table: the command line (`--name`), the configuration file
 * (`name = value` in TOML, the same names) and `--help` are all made from it, so they cannot
 * drift apart. Flags override the file; the file overrides the defaults.
 */
import { UsageError } from '../errors.js';

/** How a setting is written. */
export type OptionKind = 'flag' | 'integer' | 'string' | 'list';

/** One setting. */
export interface OptionSpec {
  /** The long option (`--name`) and the configuration key (`name = ...`). */
  readonly name: string;
  readonly kind: OptionKind;
  /** The placeholder in `--help` (`N`, `SEC`, `DIR`, ...). */
  readonly arg?: string;
  /** Bounds of an integer. */
  readonly min?: number;
  readonly max?: number;
  /** The default, as shown in `--help` (undefined: none). */
  readonly default?: string | number | boolean | readonly string[];
  /** `--help` text: a sentence fragment, without the default. */
  readonly help: string;
  /** Whether SIGHUP can change it while running (`restart`: read at start only). */
  readonly reload: 'live' | 'restart';
}

/** A setting's value once read. */
export type OptionValue = boolean | number | string | readonly string[];

/** Settings by name, as read from the file and the command line. */
export type Settings = ReadonlyMap<string, OptionValue>;

/** Where a value came from, for error messages. */
export interface Origin {
  /** `--name` or `FILE:LINE: name`. */
  readonly where: string;
  /**
   * A value from the TOML file has a type of its own: there a number must be written as a
   * number (`idle-timeout = 60`), not as a string (`"60"`), as TOML and the example file do.
   * On the command line every value is text.
   */
  readonly typed?: boolean;
}

/**
 * Turns one raw value (a command-line string, or a TOML value) into a setting, or throws a
 * UsageError naming where it came from and what is expected.
 */
export function readOption(spec: OptionSpec, raw: unknown, origin: Origin): OptionValue {
  const fail = (expected: string): never => {
    throw new UsageError(`${origin.where} must be ${expected}, not ${describe(raw)}`);
  };
  switch (spec.kind) {
    case 'flag':
      if (typeof raw === 'boolean') return raw;
      return fail('true or false');
    case 'integer': {
      const min = spec.min ?? 0;
      const max = spec.max ?? Number.MAX_SAFE_INTEGER;
      const expected = `a whole number from ${min} to ${max}`;
      let value: number;
      if (typeof raw === 'number' || typeof raw === 'bigint') value = Number(raw);
      else if (typeof raw === 'string' && /^\d+$/.test(raw)) {
        if (origin.typed === true) return fail(`${expected} written without quotes`);
        value = Number(raw);
      }
      else return fail(expected);
      if (!Number.isSafeInteger(value) || value < min || value > max) return fail(expected);
      return value;
    }
    case 'string':
      if (typeof raw === 'string' && raw.length > 0) return raw;
      return fail('a non-empty string');
    case 'list':
      if (typeof raw === 'string' && raw.length > 0) return [raw];
      if (Array.isArray(raw) && raw.length > 0 && raw.every((item) => typeof item === 'string' && item.length > 0)) {
        return raw as string[];
      }
      return fail('a string or a non-empty list of strings');
  }
}

function describe(raw: unknown): string {
  if (typeof raw === 'string') return JSON.stringify(raw);
  if (typeof raw === 'bigint') return raw.toString();
  if (Array.isArray(raw)) return 'a list';
  if (raw !== null && typeof raw === 'object') return 'a table';
  return String(raw);
}

/** The `--help` lines of `specs`, aligned. */
export function formatOptionHelp(specs: readonly OptionSpec[]): string {
  const rows = specs.map((spec) => {
    const left = `  --${spec.name}${spec.kind === 'flag' ? '' : ` ${spec.arg ?? 'VALUE'}`}`;
    const shown =
      spec.default === undefined || spec.default === false
        ? ''
        : ` (default ${Array.isArray(spec.default) ? spec.default.join(', ') : String(spec.default)})`;
    const reload = spec.reload === 'restart' ? ' [restart]' : '';
    return { left, right: `${spec.help}${shown}${reload}` };
  });
  const width = Math.max(...rows.map((row) => row.left.length)) + 2;
  return rows.map((row) => wrap(row.left.padEnd(width), row.right, width)).join('\n');
}

function wrap(left: string, text: string, indent: number): string {
  const words = text.split(' ');
  const lines: string[] = [];
  let line = left;
  for (const word of words) {
    if (line.length + word.length + 1 > 96 && line.trim().length > 0 && line.length > indent) {
      lines.push(line.trimEnd());
      line = ' '.repeat(indent);
    }
    line += (line.length > indent ? ' ' : '') + word;
  }
  lines.push(line.trimEnd());
  return lines.join('\n');
}
