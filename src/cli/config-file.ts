/**
 * The TOML configuration file (default `/etc/stopd.toml`): `name = value` lines with the
 * long option names of the command line. Every error names the file, the line and the key,
 * and says what is expected.
 */
import { readFileSync } from 'node:fs';
import { parse, TomlError } from 'smol-toml';
import { UsageError } from '../errors.js';
import { readOption, type OptionSpec, type OptionValue } from './options.js';

/** The default configuration file; a missing default file is no error, a missing named one is. */
export const DEFAULT_CONFIG_FILE = '/etc/stopd.toml';

/** A setting read from the file, with its line for messages. */
export interface FileSetting {
  readonly value: OptionValue;
  readonly line: number;
}

/**
 * Reads and validates a configuration file against `specs`. Returns the settings it sets,
 * or an empty map when `required` is false and the file does not exist.
 */
export function loadConfigFile(path: string, specs: readonly OptionSpec[], options: { required: boolean }): Map<string, FileSetting> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && !options.required) return new Map();
    throw new UsageError(`Cannot read configuration file ${path}: ${(error as Error).message}`);
  }
  return parseConfigText(text, specs, path);
}

/** Parses configuration text (see {@link loadConfigFile}); `path` is for messages. */
export function parseConfigText(text: string, specs: readonly OptionSpec[], path: string): Map<string, FileSetting> {
  let table: Record<string, unknown>;
  try {
    table = parse(text);
  } catch (error) {
    if (error instanceof TomlError) {
      const first = error.message.split('\n')[0] ?? error.message;
      let problem = first.replace(/^Invalid TOML document: /, '');
      if (isUnterminatedString(text, error)) problem = `${UNTERMINATED}: end it with its quote on the same line`;
      else if (problem === 'unfinished string') problem = `${UNTERMINATED}: add its closing quote`;
      throw new UsageError(`${path}:${error.line}: ${problem}; the file must be TOML (name = value)`);
    }
    throw error;
  }
  const settings = new Map<string, FileSetting>();
  for (const [key, raw] of Object.entries(table)) {
    const line = lineOf(text, key);
    const spec = specs.find((candidate) => candidate.name === key);
    if (spec === undefined) {
      const near = specs.find((candidate) => candidate.name.replace(/[-_]/g, '') === key.toLowerCase().replace(/[-_]/g, ''));
      const hint = near === undefined ? 'see `stopd --help` for the settings' : `did you mean ${near.name}?`;
      throw new UsageError(`${path}:${line}: unknown setting ${JSON.stringify(key)}; ${hint}`);
    }
    const value = readOption(spec, raw, { where: `${path}:${line}: ${key}`, typed: true });
    settings.set(key, { value, line });
  }
  return settings;
}

const UNTERMINATED = 'a quoted value is not closed';

/**
 * smol-toml reports a single-line string cut by the end of its line as "control characters
 * are not allowed in strings" (the newline is one); the user's mistake is the missing quote.
 */
function isUnterminatedString(text: string, error: TomlError): boolean {
  if (!/control characters are not allowed in strings/.test(error.message)) return false;
  const line = text.split('\n')[error.line - 1] ?? '';
  // The character smol-toml stopped at (column is 1-based): the line's end, or its CR.
  const rest = line.slice(error.column - 1);
  return rest === '' || rest === '\r';
}

/** The line where `key` is set (its first `key =` at the start of a line), for messages. */
function lineOf(text: string, key: string): number {
  const lines = text.split('\n');
  const pattern = new RegExp(`^\\s*(?:${escapeRegExp(key)}|"${escapeRegExp(key)}"|'${escapeRegExp(key)}')\\s*=`);
  const index = lines.findIndex((line) => pattern.test(line));
  return index < 0 ? 1 : index + 1;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
