/**
 * `stopctl history`: the connections the history journal recorded (issue 14), for the
 * administrator who wants to look without a token. It reads the journal's files, which are
 * append-only, so it works whether the daemon runs or not.
 */
import { existsSync } from 'node:fs';
import { DEFAULTS } from '../../daemon/daemon.js';
import type { HistoryConnection } from '../../evidence/history-entry.js';
import { readHistory, type HistoryFilter } from '../../evidence/history-read.js';
import { StopdError, StoreOpenError, UsageError } from '../../errors.js';
import { parseIpAddress } from '../../protocol/ip-address.js';
import { formatCommandHelp, parseCommandLine, parseDuration, parseInteger } from '../args.js';
import type { StopctlCommand } from './command.js';

const HELP = `  history [--since T] [--until T] [--uid N] [--address ADDR] [--port N] [--limit N] [--store DIR] [--json]
      List the outbound TCP connections the history journal recorded (oldest first): when,
      both ends, the process (pid, comm), its uid and login uid, and when it closed. T is a
      time (2026-05-01T12:00:00Z, 2026-05-01) or a duration ago (90s, 30m, 24h, 7d); --address
      and --port match either end. Works while the daemon runs, and while it is stopped.
      Exit status: 0 listed (also when none matched), 2 a bad filter or option (one sentence
      on stderr), 1 the store is missing or unreadable.
`;

/** `stopctl history ...`: prints the connections; returns 0, 1 or 2. */
export const HISTORY_COMMAND: StopctlCommand = { name: 'history', help: HELP, run: runHistory };

async function runHistory(argv: string[]): Promise<number> {
  let request: { storeDir: string; filter: HistoryFilter; json: boolean } | 'help';
  try {
    request = parseHistoryCommand(argv, Date.now());
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    // The contract for this command: a bad filter is exit 2, like `stopctl redeem` of an unknown token.
    process.stderr.write(`stopctl: ${error.message}\n`);
    return 2;
  }
  if (request === 'help') {
    process.stdout.write(formatCommandHelp(HELP));
    return 0;
  }
  let connections: HistoryConnection[];
  try {
    if (!existsSync(request.storeDir)) {
      throw new StoreOpenError(`Cannot read the store ${request.storeDir}: the directory does not exist; give the daemon's store directory with --store`);
    }
    connections = await readHistory(request.storeDir, request.filter);
  } catch (error) {
    const message = error instanceof StopdError ? error.message : `Cannot read the history journal in ${request.storeDir}: ${(error as Error).message}`;
    process.stderr.write(`stopctl: ${message}\n`);
    return 1;
  }
  if (request.json) process.stdout.write(`${JSON.stringify(connections, null, 2)}\n`);
  else process.stdout.write(formatHistoryText(connections));
  return 0;
}

/** The command line of `stopctl history`, checked: a UsageError says what is wrong with it. */
export function parseHistoryCommand(argv: string[], now: number): { storeDir: string; filter: HistoryFilter; json: boolean } | 'help' {
  const { values, positionals } = parseCommandLine(
    {
      args: argv,
      allowPositionals: true,
      options: {
        store: { type: 'string' },
        since: { type: 'string' },
        until: { type: 'string' },
        uid: { type: 'string' },
        address: { type: 'string' },
        port: { type: 'string' },
        limit: { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    },
    'stopctl history',
  );
  if (values.help === true) return 'help';
  if (positionals.length > 0) throw new UsageError(`history takes no arguments, only options; got ${JSON.stringify(positionals[0])}`);
  const filter: { -readonly [K in keyof HistoryFilter]: HistoryFilter[K] } = {};
  if (values.since !== undefined) filter.since = parseTime(values.since, '--since', now);
  if (values.until !== undefined) filter.until = parseTime(values.until, '--until', now);
  if (filter.since !== undefined && filter.until !== undefined && filter.since > filter.until) {
    throw new UsageError(`--since (${new Date(filter.since).toISOString()}) is after --until (${new Date(filter.until).toISOString()})`);
  }
  if (values.uid !== undefined) filter.uid = parseInteger(values.uid, { name: '--uid', min: 0, max: 4_294_967_295 });
  if (values.port !== undefined) filter.port = parseInteger(values.port, { name: '--port', min: 1, max: 65_535 });
  if (values.limit !== undefined) filter.limit = parseInteger(values.limit, { name: '--limit', min: 1, max: 100_000_000 });
  if (values.address !== undefined) {
    if (parseIpAddress(values.address) === undefined) throw new UsageError(`--address must be an IPv4 or IPv6 address, not ${JSON.stringify(values.address)}`);
    filter.address = values.address;
  }
  return { storeDir: values.store ?? DEFAULTS.storeDir, filter, json: values.json === true };
}

/** A time on the command line: ISO 8601 (a date alone is midnight UTC) or a duration before `now`. */
function parseTime(text: string, name: string, now: number): number {
  if (/^\d+[smhd]$/.test(text)) return now - parseDuration(text, name);
  if (/^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?$/.test(text)) {
    const time = Date.parse(text.length === 10 ? `${text}T00:00:00Z` : text);
    if (Number.isFinite(time)) return time;
  }
  throw new UsageError(`${name} must be a time such as 2026-05-01T12:00:00Z or 2026-05-01, or a duration ago such as 30m or 24h, not ${JSON.stringify(text)}`);
}

/** One line per connection, then a count. */
export function formatHistoryText(connections: readonly HistoryConnection[]): string {
  const lines = connections.map((c) => {
    const closed = c.closedAt === null ? 'open or close not seen' : `closed ${c.closedAt}`;
    const login = c.loginuid === 4_294_967_295 ? 'no login' : `login uid ${c.loginuid}`;
    return `seq ${c.seq}  ${c.connectedAt}  ${formatEndpoint(c.local)} -> ${formatEndpoint(c.remote)}  uid ${c.uid} (${login})  pid ${c.pid} ${c.comm}  ${closed}`;
  });
  lines.push(`${connections.length} connection${connections.length === 1 ? '' : 's'}`);
  return `${lines.join('\n')}\n`;
}

function formatEndpoint(endpoint: { address: string; port: number }): string {
  return endpoint.address.includes(':') ? `[${endpoint.address}]:${endpoint.port}` : `${endpoint.address}:${endpoint.port}`;
}
