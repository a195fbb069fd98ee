import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UsageError } from '../errors.js';
import { parseConfigText } from './config-file.js';
import { DAEMON_OPTIONS, optionSpec } from './daemon-options.js';
import { readOption } from './options.js';

/** The one-sentence error of `text`, or a failure if it parses. */
function errorOf(text: string): string {
  try {
    parseConfigText(text, DAEMON_OPTIONS, 'stopd.toml');
  } catch (error) {
    assert.ok(error instanceof UsageError, `not a UsageError: ${String(error)}`);
    return error.message;
  }
  return assert.fail(`${JSON.stringify(text)} was accepted`);
}

test('parseConfigText reports a string cut by the end of its line as not closed', () => {
  for (const text of ['store = "/var/lib/stopd\nmax-lookups = 4\n', 'store = "/var/lib/stopd\r\nmax-lookups = 4\r\n', "store = '/var/lib/stopd\n"]) {
    const message = errorOf(text);
    assert.equal(message, 'stopd.toml:1: a quoted value is not closed: end it with its quote on the same line; the file must be TOML (name = value)');
  }
});

test('parseConfigText reports a string cut by the end of the file as not closed', () => {
  assert.equal(errorOf('max-lookups = 4\nstore = "/var/lib/stopd'), 'stopd.toml:2: a quoted value is not closed: add its closing quote; the file must be TOML (name = value)');
});

test('parseConfigText still names a control character inside a closed string', () => {
  assert.match(errorOf('store = "/var/\u0001lib"\n'), /^stopd\.toml:1: control characters are not allowed in strings;/);
});

test('parseConfigText refuses a whole number written as a string, naming the line and the setting', () => {
  assert.equal(errorOf('# comment\nidle-timeout = "60"\n'), 'stopd.toml:2: idle-timeout must be a whole number from 1 to 86400 written without quotes, not "60"');
  assert.match(errorOf('max-lookups = "4"\n'), /^stopd\.toml:1: max-lookups must be a whole number from 1 to 10000 written without quotes, not "4"$/);
});

test('parseConfigText says only what is expected of a string that is no number at all', () => {
  assert.equal(errorOf('max-lookups = "many"\n'), 'stopd.toml:1: max-lookups must be a whole number from 1 to 10000, not "many"');
});

test('parseConfigText reads a whole number written as a number', () => {
  const settings = parseConfigText('idle-timeout = 60\n', DAEMON_OPTIONS, 'stopd.toml');
  assert.deepEqual(settings.get('idle-timeout'), { value: 60, line: 1 });
});

test('readOption reads a whole number from the command line, where every value is text', () => {
  assert.equal(readOption(optionSpec('idle-timeout'), '60', { where: '--idle-timeout' }), 60);
  assert.throws(() => readOption(optionSpec('idle-timeout'), '6o', { where: '--idle-timeout' }), {
    message: '--idle-timeout must be a whole number from 1 to 86400, not "6o"',
  });
});
