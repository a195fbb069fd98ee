/**
 * `stopctl verify` and `stopctl keygen`: the investigator's integrity check of a store and the
 * administrator's initial ledger key (paper 6.5; forward-mac.ts).
 */
import { closeSync, fchmodSync, fsyncSync, openSync, writeSync } from 'node:fs';
import { DEFAULTS } from '../daemon/daemon.js';
import { generateLedgerKey, ledgerKeyId, readLedgerKeyFile, forgetKey } from '../evidence/forward-mac.js';
import { verifyStore, type VerifyReport } from '../evidence/verify.js';
import { StopdError, UsageError } from '../errors.js';
import { formatCommandHelp, parseCommandLine } from './args.js';

/** Help of `stopctl verify`, for `stopctl --help`. */
export const VERIFY_HELP = `  verify [--store DIR] [--key FILE] [--json]
      Check the whole store (default ${DEFAULTS.storeDir}): every record against its token,
      the ledger's hash chain and sequence numbers, records named by the ledger but missing,
      record files nobody names, and stray files. With --key, the initial ledger key kept off
      the host, every entry's forward-secure MAC is recomputed, which detects entries altered
      or forged even by someone who holds the host's current key. Prints one line per finding
      and a summary. After a crash, start the daemon once before verifying: it recovers the
      traces a crash leaves (a partial last line, unfinished record writes).
      Exit status: 0 clean, 3 tampered (findings), 1 the store is missing or unreadable.
`;

/** Help of `stopctl keygen`, for `stopctl --help`. */
export const KEYGEN_HELP = `  keygen --out FILE
      Write a new random initial ledger key to FILE (mode 0600; never overwrites). Keep a
      copy off this host, then start the daemon once with \`stopd --ledger-key FILE\`: it
      moves the key into its store and deletes FILE.
      Exit status: 0 written, 1 the file exists or cannot be written.
`;

/** `stopctl verify [--store DIR] [--key FILE] [--json]`: prints the findings; returns 0, 3, 1 or 64. */
export async function runVerify(argv: string[]): Promise<number> {
  let options: { storeDir: string; keyFile: string | undefined; json: boolean } | undefined;
  try {
    const { values, positionals } = parseCommandLine(
      {
        args: argv,
        allowPositionals: true,
        options: {
          store: { type: 'string' },
          key: { type: 'string' },
          json: { type: 'boolean' },
          help: { type: 'boolean', short: 'h' },
        },
      },
      'stopctl verify',
    );
    if (values.help === true) {
      process.stdout.write(formatCommandHelp(VERIFY_HELP));
      return 0;
    }
    if (positionals.length > 0) throw new UsageError(`verify takes no arguments, only options; got ${JSON.stringify(positionals[0])}`);
    options = { storeDir: values.store ?? DEFAULTS.storeDir, keyFile: values.key, json: values.json === true };
  } catch (error) {
    return reportError(error);
  }
  let key: Buffer | undefined;
  if (options.keyFile !== undefined) {
    try {
      key = readLedgerKeyFile(options.keyFile);
    } catch (error) {
      if (error instanceof UsageError) return reportError(error);
      return reportError(new UsageError(`Cannot read --key ${options.keyFile}: ${(error as Error).message}`));
    }
  }
  let report: VerifyReport;
  try {
    report = await verifyStore(options.storeDir, key === undefined ? {} : { key });
  } catch (error) {
    return reportError(error);
  } finally {
    if (key !== undefined) forgetKey(key);
  }
  process.stdout.write(options.json ? `${JSON.stringify(report, null, 2)}\n` : formatVerifyText(report, { keyGiven: key !== undefined }));
  return report.clean ? 0 : 3;
}

/** The text form of a report: one line per finding, then a summary. */
export function formatVerifyText(report: VerifyReport, options: { keyGiven: boolean }): string {
  const out: string[] = [];
  for (const finding of report.findings) out.push(`${finding.kind.toUpperCase()}  ${finding.where}: ${finding.detail}`);
  const { ledger, records } = report;
  const range = ledger.firstSeq === null ? 'no entries' : `${ledger.entries} entries, seq ${ledger.firstSeq}..${ledger.lastSeq}`;
  let macs: string;
  if (ledger.keyId === null) macs = 'no forward-secure MACs (no key installed)';
  else if (options.keyGiven) macs = `${ledger.macsChecked} MACs checked with the initial key (key id ${ledger.keyId})`;
  else macs = `MACs not checked (key id ${ledger.keyId}): give the initial key with --key FILE`;
  const files = ledger.segments > 1 ? ` (${ledger.segments} segment files)` : '';
  out.push(`Ledger   ${range} in ${ledger.lines} lines${files}; ${macs}`);
  if (ledger.droppedThroughSeq !== null && ledger.checkedFromSeq !== null) {
    out.push(
      `Checked  from seq ${ledger.checkedFromSeq} on: seqs 1..${ledger.droppedThroughSeq} were dropped by the ledger's retention, and the first kept entry chains onto the hash their segment-dropped entry recorded`,
    );
  }
  out.push(
    `Records  ${records.count} files; ${records.referenced} named by the ledger` +
      (records.unreplied > 0 ? `, ${records.unreplied} saved for requests never replied (recovery entries)` : '') +
      (records.absent > 0 ? `; ${records.absent} absent as the ledger says (pruned, or not kept at the quota)` : '') +
      (records.beforeKeptLedger > 0 ? `; ${records.beforeKeptLedger} older than the kept ledger (their entries were dropped; their bytes were checked)` : ''),
  );
  out.push(report.clean ? 'Verdict  clean' : `Verdict  TAMPERED: ${report.findings.length} finding${report.findings.length === 1 ? '' : 's'}`);
  return out.join('\n') + '\n';
}

/** `stopctl keygen --out FILE`: writes a new initial ledger key; returns 0, 1 (FILE exists or cannot be written) or 64. */
export function runKeygen(argv: string[]): Promise<number> {
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
      process.stdout.write(formatCommandHelp(KEYGEN_HELP));
      return 0;
    }
    if (positionals.length > 0) throw new UsageError(`keygen takes no arguments; write the key with --out FILE`);
    if (values.out === undefined) throw new UsageError('keygen needs --out FILE, the file to write the new key to');
    out = values.out;
  } catch (error) {
    return reportError(error);
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

function reportError(error: unknown): number {
  if (error instanceof StopdError) {
    process.stderr.write(`stopctl: ${error.message}\n`);
    return error instanceof UsageError ? 64 : 1;
  }
  throw error;
}
