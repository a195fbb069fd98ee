/** `stopctl query`: ask a STOP/IDENT daemon about one connection and print its reply. */
import { queryStop } from '../../daemon/client.js';
import { StopdError, UsageError } from '../../errors.js';
import { parseRequest, RequestSyntaxError, type Request } from '../../protocol/index.js';
import { formatCommandHelp, parseCommandLine, parseInteger } from '../args.js';
import type { StopctlCommand } from './command.js';

const HELP = `  query HOST[:PORT] CL_PORT SV_PORT [--type T] [--sid N] [--ip ADDR] [--timeout SEC] [--json]
      Ask the STOP/IDENT daemon on HOST (port 113 unless given; IPv6 as [addr]:port) about the
      connection from its CL_PORT to our SV_PORT. Prints the reply line.
      --type ID|ID_REC|SV|SV_REC   request type (default: the bare RFC 1413 form)
      --sid N                      session identifier, 0..2^64-1 (required for ID_REC/SV_REC;
                                   a random 32-bit one is made when omitted)
      --ip ADDR                    CL_IP: ask about a connection with ADDR instead of us
      --timeout SEC                give up after SEC seconds (default 10)
      --json                       print the parsed reply as JSON
      Exit status: 0 USERID reply, 1 ERROR reply, 2 no answer (refused, timeout, malformed).
`;

/** `stopctl query HOST[:PORT] CL_PORT SV_PORT ...`. */
export const QUERY_COMMAND: StopctlCommand = { name: 'query', help: HELP, run: runQuery };

async function runQuery(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandLine(
    {
      args: argv,
      allowPositionals: true,
      options: {
        type: { type: 'string' },
        sid: { type: 'string' },
        ip: { type: 'string' },
        timeout: { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    },
    'stopctl query',
  );
  if (values.help === true) {
    process.stdout.write(formatCommandHelp(HELP));
    return 0;
  }
  if (positionals.length !== 3) {
    throw new UsageError('query needs HOST[:PORT] CL_PORT SV_PORT, for example `stopctl query 192.0.2.1 40000 22`');
  }
  const [target = '', clientPort = '', serverPort = ''] = positionals;
  const { host, port } = parseTarget(target);
  const request = buildRequest({ clientPort, serverPort, type: values.type, sid: values.sid, ip: values.ip });
  const timeoutMs = 1000 * parseInteger(values.timeout ?? '10', { name: '--timeout', min: 1, max: 3600 });
  try {
    const { reply, line } = await queryStop(request, { host, port, timeoutMs });
    if (values.json === true) process.stdout.write(`${JSON.stringify({ ...reply, line })}\n`);
    else process.stdout.write(`${line}\n`);
    return reply.kind === 'error' ? 1 : 0;
  } catch (error) {
    if (!(error instanceof StopdError)) throw error;
    process.stderr.write(`stopctl: ${error.message}\n`);
    return 2;
  }
}

/** Builds the request through the codec, so stopctl can only send what a daemon would accept (also `walk --ask`). */
export function buildRequest(options: {
  clientPort: string;
  serverPort: string;
  type: string | undefined;
  sid: string | undefined;
  ip: string | undefined;
}): Request {
  const { type } = options;
  if (type === undefined && (options.sid !== undefined || options.ip !== undefined)) {
    throw new UsageError('--sid and --ip need --type, because the bare RFC 1413 form has no room for them');
  }
  const recursive = type === 'ID_REC' || type === 'SV_REC';
  const sid = options.sid ?? (recursive ? String(Math.floor(Math.random() * 2 ** 32)) : undefined);
  if (!recursive && options.sid !== undefined) throw new UsageError(`--sid only goes with --type ID_REC or SV_REC`);
  const ip = options.ip === undefined ? undefined : options.ip.includes(':') && !options.ip.startsWith('[') ? `[${options.ip}]` : options.ip;
  const line = [`${options.clientPort},${options.serverPort}`, type, sid, ip].filter((part) => part !== undefined).join(':');
  try {
    return parseRequest(line);
  } catch (error) {
    if (!(error instanceof RequestSyntaxError)) throw error;
    throw new UsageError(`${error.message.replace(/^Cannot parse request: /, 'Cannot build the request: ')}`);
  }
}

/** `HOST[:PORT]` or `[IPV6]:PORT`, port 113 unless given (also `walk --ask`). */
export function parseTarget(text: string): { host: string; port: number } {
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  if (bracketed !== null) {
    return { host: bracketed[1] ?? '', port: parseInteger(bracketed[2] ?? '113', { name: 'port', min: 1, max: 65535 }) };
  }
  const parts = text.split(':');
  if (parts.length > 2) return { host: text, port: 113 }; // bare IPv6 address
  const [host = '', port = '113'] = parts;
  if (host === '') throw new UsageError('query needs a host name or address before the port');
  return { host, port: parseInteger(port, { name: 'port', min: 1, max: 65535 }) };
}
