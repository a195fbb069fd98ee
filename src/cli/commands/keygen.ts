/** `stopctl keygen`: the administrator's initial ledger key (paper 6.5; forward-mac.ts). */
import { closeSync, fchmodSync, fsyncSync, openSync, writeSync } from 'node:fs';
import { generateLedgerKey, ledgerKeyId, forgetKey } from '../../evidence/forward-mac.js';
import { UsageError } from '../../errors.js';
import { formatCommandHelp, parseCommandLine } from '../args.js';
import { reportCommandError, type StopctlCommand } from './command.js';

const HELP = `  keygen --out FILE
      Write a new random initial ledger key to FILE (mode 0600; never overwrites). Keep a
      copy off this host, then start the daemon once with \`stopd --ledger-key FILE\`: it
      moves the key into its store and deletes FILE.
      Exit status: 0 written, 1 the file exists or cannot be written.
`;

/** `stopctl keygen --out FILE`: writes a new initial ledger key; returns 0, 1 (FILE exists or cannot be written) or 64. */
export const KEYGEN_COMMAND: StopctlCommand = { name: 'keygen', help: HELP, run: runKeygen };

function runKeygen(argv: string[]): Promise<number> {
  try {
    return Promise.resolve(keygen(argv));
  } catch (error) {
    return Promise.reject(error instanceof Error ? error : new Error(String(error)));
  }
}

function keygen(argv: string[]): number {
  let out: string;
  try {
    const { values, positionals } = parseCommandLine(
      { args: argv, allowPositionals: true, options: { out: { type: 'string' }, help: { type: 'boolean', short: 'h' } } },
      'stopctl keygen',
    );
    if (values.help === true) {
      process.stdout.write(formatCommandHelp(HELP));
      return 0;
    }
    if (positionals.length > 0) throw new UsageError(`keygen takes no arguments; write the key with --out FILE`);
    if (values.out === undefined) throw new UsageError('keygen needs --out FILE, the file to write the new key to');
    out = values.out;
  } catch (error) {
    return reportCommandError(error);
  }
  const key = generateLedgerKey();
  try {
    let fd: number;
    try {
      // 'wx': never overwrite a key (it may be the only copy of one in use).
      fd = openSync(out, 'wx', 0o600);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      process.stderr.write(
        code === 'EEXIST'
          ? `stopctl: Cannot write the key: ${out} exists; keygen never overwrites a key, choose another file\n`
          : `stopctl: Cannot write the key to ${out}: ${(error as Error).message}\n`,
      );
      return 1;
    }
    try {
      fchmodSync(fd, 0o600);
      writeSync(fd, `${key.toString('hex')}\n`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    process.stdout.write(
      `Wrote a new initial ledger key (key id ${ledgerKeyId(key)}) to ${out}.\n` +
        `Keep a copy off this host: only it can check the ledger's MACs (stopctl verify --key FILE).\n` +
        `Then start the daemon once with --ledger-key ${out}: it moves the key into its store and deletes ${out}.\n`,
    );
    return 0;
  } catch (error) {
    process.stderr.write(`stopctl: Cannot write the key to ${out}: ${(error as Error).message}\n`);
    return 1;
  } finally {
    forgetKey(key);
  }
}
