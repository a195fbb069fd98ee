/**
 * `stopctl verify`: the investigator's integrity check of a store (paper 6.5; with the
 * initial key, forward-mac.ts).
 */
import { DEFAULTS } from '../../daemon/daemon.js';
import { readLedgerKeyFile, forgetKey } from '../../evidence/forward-mac.js';
import { verifyStore, type VerifyReport } from '../../evidence/verify.js';
import { UsageError } from '../../errors.js';
import { formatCommandHelp, parseCommandLine } from '../args.js';
import { reportCommandError, type StopctlCommand } from './command.js';

const HELP = `  verify [--store DIR] [--key FILE] [--json]
      Check the whole store (default ${DEFAULTS.storeDir}): every record against its token,
      the ledger's hash chain and sequence numbers, records named by the ledger but missing,
      record files nobody names, stray files, and the history journal's chain against the
      hashes the ledger keeps of it (sealed segments, clean stops, dropped segments). With --key, the initial ledger key kept off
      the host, every entry's forward-secure MAC is recomputed, which detects entries altered
      or forged even by someone who holds the host's current key. Prints one line per finding
      and a summary. After a crash, start the daemon once before verifying: it recovers the
      traces a crash leaves (a partial last line, unfinished record writes).
      Exit status: 0 clean, 3 tampered (findings), 1 the store is missing or unreadable.
`;

/** `stopctl verify [--store DIR] [--key FILE] [--json]`: prints the findings; returns 0, 3, 1 or 64. */
export const VERIFY_COMMAND: StopctlCommand = { name: 'verify', help: HELP, run: runVerify };

async function runVerify(argv: string[]): Promise<number> {
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
      process.stdout.write(formatCommandHelp(HELP));
      return 0;
    }
    if (positionals.length > 0) throw new UsageError(`verify takes no arguments, only options; got ${JSON.stringify(positionals[0])}`);
    options = { storeDir: values.store ?? DEFAULTS.storeDir, keyFile: values.key, json: values.json === true };
  } catch (error) {
    return reportCommandError(error);
  }
  let key: Buffer | undefined;
  if (options.keyFile !== undefined) {
    try {
      key = readLedgerKeyFile(options.keyFile);
    } catch (error) {
      if (error instanceof UsageError) return reportCommandError(error);
      return reportCommandError(new UsageError(`Cannot read --key ${options.keyFile}: ${(error as Error).message}`));
    }
  }
  let report: VerifyReport;
  try {
    report = await verifyStore(options.storeDir, key === undefined ? {} : { key });
  } catch (error) {
    return reportCommandError(error);
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
  const history = report.history;
  if (history !== null) {
    const kept = history.firstSeq === null ? 'no entries' : `${history.entries} entries, seq ${history.firstSeq}..${history.lastSeq}`;
    const dropped = history.droppedThroughSeq === null ? '' : `; seqs 1..${history.droppedThroughSeq} dropped by retention, as the ledger notes`;
    out.push(`History  ${kept} in ${history.segments} segment files; ${history.anchorsChecked} anchors in the ledger checked${dropped}`);
  }
  out.push(report.clean ? 'Verdict  clean' : `Verdict  TAMPERED: ${report.findings.length} finding${report.findings.length === 1 ? '' : 's'}`);
  return out.join('\n') + '\n';
}
