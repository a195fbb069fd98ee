/** `stopctl prune`: remove (or gzip) old SV records, noting each in the ledger. */
import { DEFAULTS } from '../../daemon/daemon.js';
import { pruneRecords } from '../../evidence/prune.js';
import { UsageError } from '../../errors.js';
import { formatCommandHelp, parseCommandLine, parseInteger } from '../args.js';
import type { StopctlCommand } from './command.js';

const HELP = `  prune --older-than DAYS [--gzip] [--store DIR] [--json]
      Remove SV records whose files are more than DAYS days old (or, with --gzip, compress
      them to TOKEN.json.gz, which redeem reads and checks as before), noting each one in the
      ledger, so that redeem later says "pruned" instead of reporting a missing record. The
      ledger itself is never pruned. Runs only while stopd is stopped: the daemon owns the
      ledger (and the store lock); stop it, prune, start it again.
      Exit status: 0 done, 1 some records could not be pruned (listed on stderr), the daemon
      holds the store, or the store is missing or unreadable.
`;

/** `stopctl prune --older-than DAYS ...`: returns the exit status. */
export const PRUNE_COMMAND: StopctlCommand = { name: 'prune', help: HELP, run: runPrune };

async function runPrune(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandLine(
    {
      args: argv,
      allowPositionals: true,
      options: {
        store: { type: 'string' },
        'older-than': { type: 'string' },
        gzip: { type: 'boolean' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    },
    'stopctl prune',
  );
  if (values.help === true) {
    process.stdout.write(formatCommandHelp(HELP));
    return 0;
  }
  if (positionals.length > 0) throw new UsageError(`prune takes no arguments, only options; got ${JSON.stringify(positionals[0])}`);
  if (values['older-than'] === undefined) {
    throw new UsageError('prune needs --older-than DAYS, for example `stopctl prune --older-than 90`');
  }
  const olderThanDays = parseInteger(values['older-than'], { name: '--older-than', min: 0, max: 36_500 });
  const storeDir = values.store ?? DEFAULTS.storeDir;
  const result = await pruneRecords(storeDir, { olderThanDays, gzip: values.gzip === true });
  if (values.json === true) {
    process.stdout.write(`${JSON.stringify({ store: storeDir, olderThanDays, ...result }, null, 2)}\n`);
  } else {
    const done = values.gzip === true ? `${result.gzipped.length} gzipped` : `${result.removed.length} removed`;
    process.stdout.write(`Pruned records last modified before ${result.cutoff} (older than ${olderThanDays} days): ${done}; noted in the ledger.\n`);
    if (result.unverified.length > 0) {
      process.stdout.write(`${result.unverified.length} of them no longer matched their token (noted as unverified): ${result.unverified.join(', ')}\n`);
    }
  }
  for (const failure of result.failed) process.stderr.write(`stopctl: Cannot prune record ${failure.token}: ${failure.error}\n`);
  return result.failed.length > 0 ? 1 : 0;
}
