/** The command line shared by `stopctl redeem` and `stopctl trace`. */
import { DEFAULTS } from '../../daemon/daemon.js';
import { requireStore } from '../../evidence/store.js';
import { isTokenShaped } from '../../evidence/tokens.js';
import { UsageError } from '../../errors.js';
import { parseCommandLine } from '../args.js';

const OUTPUT_FORMATS = ['text', 'json', 'dot', 'svg'] as const;
/** How redeem and trace print: text, JSON, or a Graphviz picture (dot source or SVG). */
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

/** Options shared by `redeem` and `trace`: one TOKEN, `--store`, `--format` (`--json` is `--format json`). */
export function parseTokenCommand(
  argv: string[],
  command: string,
): { token: string; storeDir: string; format: OutputFormat; json: boolean; help: boolean } {
  const { values, positionals } = parseCommandLine(
    {
      args: argv,
      allowPositionals: true,
      options: {
        store: { type: 'string' },
        format: { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    },
    `stopctl ${command}`,
  );
  if (values.help === true) return { token: '', storeDir: '', format: 'text', json: false, help: true };
  const format = values.format ?? (values.json === true ? 'json' : 'text');
  if (!(OUTPUT_FORMATS as readonly string[]).includes(format)) {
    throw new UsageError(`--format must be one of ${OUTPUT_FORMATS.join(', ')}, not ${JSON.stringify(format)}`);
  }
  if (values.json === true && format !== 'json') throw new UsageError(`--json contradicts --format ${format}`);
  const [token] = positionals;
  if (token === undefined || positionals.length !== 1) throw new UsageError(`${command} needs exactly one TOKEN`);
  if (!isTokenShaped(token)) {
    throw new UsageError(`${JSON.stringify(token)} is not a token: tokens are 40 or 64 lowercase hex digits`);
  }
  const storeDir = values.store ?? DEFAULTS.storeDir;
  requireStore(storeDir);
  return { token, storeDir, format: format as OutputFormat, json: format === 'json', help: false };
}
