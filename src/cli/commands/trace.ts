/** `stopctl trace`: a token's local answer in brief, then every upstream host it asked. */
import { redeemToken } from '../../evidence/redeem.js';
import { formatCommandHelp } from '../args.js';
import { describeTrace, formatTraceText } from '../format-trace.js';
import { formatTracePicture } from '../format-dot.js';
import type { StopctlCommand } from './command.js';
import { parseTokenCommand } from './parse-token-command.js';

const HELP = `  trace TOKEN [--store DIR] [--format F] [--json]
      The local answer in brief, then every upstream host the recursive request (ID_REC,
      SV_REC) asked: the port pair asked, the outcome (token, error, refused, timeout, ...)
      and the upstream token to take to that host's administrator.
      --format text|json|dot|svg   dot and svg draw the chain of hosts; --json is --format json
      Exit status as for redeem.
`;

/** `stopctl trace TOKEN ...`. */
export const TRACE_COMMAND: StopctlCommand = { name: 'trace', help: HELP, run: runTrace };

async function runTrace(argv: string[]): Promise<number> {
  const { token, storeDir, format, json, help } = parseTokenCommand(argv, 'trace');
  if (help) {
    process.stdout.write(formatCommandHelp(HELP));
    return 0;
  }
  const redemption = await redeemToken(storeDir, token);
  const view = describeTrace(token, redemption);
  if (format === 'dot' || format === 'svg') process.stdout.write(await formatTracePicture(view, { format }));
  else process.stdout.write(json ? `${JSON.stringify(view, null, 2)}\n` : formatTraceText(view));
  return redemption.status;
}
