#!/usr/bin/env node
import { existsSync } from 'node:fs';
import { queryStop } from '../daemon/client.js';
import { DEFAULTS } from '../daemon/daemon.js';
import { storePaths } from '../evidence/store.js';
import { redeemToken, type LedgerFinding } from '../evidence/redeem.js';
import { isTokenShaped } from '../evidence/tokens.js';
import { isReplyEntry } from '../evidence/entries.js';
import { StopdError, UsageError } from '../errors.js';
import { parseRequest, RequestSyntaxError, type Request } from '../protocol/index.js';
import { parseCommandLine, parseInteger } from './args.js';
import { describeRecordJson, describeUnreadableRecordJson, formatRecordText, formatUnreadableRecordText } from './format-record.js';
import { describeTrace, formatTraceText } from './format-trace.js';
import { runKeygen, runVerify, VERIFY_HELP } from './verify-command.js';
import { PRUNE_HELP, runPrune } from './prune-command.js';
import { formatRecordPicture, formatTracePicture } from './format-dot.js';
import { quote, showEndpoint } from './show.js';

const HELP = `Usage: stopctl <command> [options]

Commands:
  query HOST[:PORT] CL_PORT SV_PORT [--type T] [--sid N] [--ip ADDR] [--timeout SEC] [--json]
      Ask the STOP/IDENT daemon on HOST (port 113 unless given; IPv6 as [addr]:port) about the
      connection from its CL_PORT to our SV_PORT. Prints the reply line.
      --type ID|ID_REC|SV|SV_REC   request type (default: the bare RFC 1413 form)
      --sid N                      session identifier, 0..2^64-1 (required for ID_REC/SV_REC;
                                   a random 32-bit one is made when omitted)
      --ip ADDR                    CL_IP: ask about a connection with ADDR instead of us
      --timeout SEC                give up after SEC seconds (default 10)
      Exit status: 0 USERID reply, 1 ERROR reply, 2 no answer (refused, timeout, malformed).

  redeem TOKEN [--store DIR] [--format F] [--json]
      Print what TOKEN stands for, from the store (default ${DEFAULTS.storeDir}): for ID
      tokens the connection and user; for SV tokens the saved record (processes, sockets,
      pipes), checked against its token. The whole ledger's hash chain is checked too.
      --format dot|svg draws an SV record's processes and IPC as a Graphviz graph
      (integrity problems go to stderr and into the picture's title).
      Exit status: 0 verified, 2 unknown token, 3 integrity failure.

  trace TOKEN [--store DIR] [--format F] [--json]
      The local answer in brief, then every upstream host the recursive request (ID_REC,
      SV_REC) asked: the port pair asked, the outcome (token, error, refused, timeout, ...)
      and the upstream token to take to that host's administrator.
      --format dot|svg draws the chain of hosts.
      Exit status as for redeem.

${VERIFY_HELP}
${PRUNE_HELP}
Common options:
  --json       print JSON instead of text (redeem, trace: the same as --format json)
  --format F   redeem, trace: text (default), json, dot (Graphviz source) or svg (a picture)
  -h, --help   print this help
`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'query':
      return runQuery(rest);
    case 'redeem':
      return runRedeem(rest);
    case 'trace':
      return runTrace(rest);
    case 'verify':
      return runVerify(rest);
    case 'keygen':
      return runKeygen(rest);
    case 'prune':
      return runPrune(rest);
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      process.stdout.write(HELP);
      return command === undefined ? 64 : 0;
    default:
      throw new UsageError(`Unknown command ${JSON.stringify(command)}; use query, redeem, trace, verify, keygen or prune (see \`stopctl --help\`)`);
  }
}

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
    process.stdout.write(HELP);
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

/** Builds the request through the codec, so stopctl can only send what a daemon would accept. */
function buildRequest(options: {
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

function parseTarget(text: string): { host: string; port: number } {
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

const OUTPUT_FORMATS = ['text', 'json', 'dot', 'svg'] as const;
type OutputFormat = (typeof OUTPUT_FORMATS)[number];

/** Options shared by `redeem` and `trace`: one TOKEN, `--store`, `--format` (`--json` is `--format json`). */
function parseTokenCommand(
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
  if (!existsSync(storePaths(storeDir).ledger)) {
    throw new UsageError(`${storeDir} holds no ledger; give the daemon's store directory with --store`);
  }
  return { token, storeDir, format: format as OutputFormat, json: format === 'json', help: false };
}

async function runRedeem(argv: string[]): Promise<number> {
  const { token, storeDir, format, json, help } = parseTokenCommand(argv, 'redeem');
  if (help) {
    process.stdout.write(HELP);
    return 0;
  }
  const redemption = await redeemToken(storeDir, token);
  const { finding, record, status, problems } = redemption;
  if (json) {
    const ledger = { line: finding.lineNumber ?? null, lines: finding.lines, brokenLines: finding.brokenLines };
    const body =
      record === undefined
        ? describeFinding(token, finding, status)
        : record.record === undefined
          ? describeUnreadableRecordJson(token, { parseError: record.parseError, verified: record.verified, actualHash: record.actualHash })
          : describeRecordJson(token, record.record, { verified: record.verified, actualHash: record.actualHash });
    const absence = redemption.absence === undefined ? {} : { recordAbsent: { reason: redemption.absence.reason, note: redemption.absence.note, seq: redemption.absence.entry.seq } };
    process.stdout.write(`${JSON.stringify({ ...body, verdict: VERDICTS[status], problems, ledger, ...absence }, null, 2)}\n`);
    return status;
  }
  let text: string;
  if (record === undefined) text = formatFinding(token, finding);
  else if (record.record === undefined) {
    text = formatUnreadableRecordText(token, { parseError: record.parseError, verified: record.verified, actualHash: record.actualHash });
  } else text = formatRecordText(token, record.record, { verified: record.verified, actualHash: record.actualHash });
  if (record !== undefined) {
    text += finding.entry === undefined ? '' : `Ledger      issued at line ${finding.lineNumber} of ${finding.lines}\n`;
  }
  for (const problem of problems) text += `${status === 2 ? 'Unknown' : 'INTEGRITY FAILURE'}: ${problem}\n`;
  if (redemption.absence !== undefined) text += `Record      ${redemption.absence.note}\n`;
  if (format === 'dot' || format === 'svg') {
    if (record?.record !== undefined) {
      process.stdout.write(await formatRecordPicture(token, record.record, { format, problems }));
      for (const problem of problems) process.stderr.write(`stopctl: INTEGRITY FAILURE: ${problem}\n`);
      return status;
    }
    // Nothing to draw (an ID token, an unknown token, an unreadable record): say why on stderr.
    if (status === 0) throw new UsageError(`redeem --format ${format} draws SV records, and ${token} is not one; use --format text or json`);
    process.stderr.write(text);
    return status;
  }
  process.stdout.write(text);
  return status;
}

const VERDICTS = { 0: 'verified', 2: 'unknown-token', 3: 'integrity-failure' } as const;

function describeFinding(token: string, finding: LedgerFinding, status: 0 | 2 | 3): Record<string, unknown> {
  const entry = finding.entry;
  if (entry === undefined || !isReplyEntry(entry)) return { token, verdict: VERDICTS[status] };
  return {
    token,
    verdict: VERDICTS[status],
    type: entry.type ?? null,
    time: entry.time,
    request: { line: entry.request, requester: entry.requester },
    connection: entry.connection ?? null,
    decision: entry.decision,
    reason: entry.reason ?? null,
    replaces: entry.replaces ?? null,
    uid: entry.uid ?? null,
    user: entry.user ?? null,
  };
}

function formatFinding(token: string, finding: LedgerFinding): string {
  const out: string[] = [];
  const entry = finding.entry;
  if (entry === undefined) {
    out.push(`Token ${token} is not in this store's ledger.`);
  } else if (isReplyEntry(entry)) {
    out.push(`Token       ${token}`);
    out.push(`Issued      ${entry.time} (ledger line ${finding.lineNumber})`);
    out.push(`Request     ${quote(entry.request)} from ${showEndpoint(entry.requester)}`);
    out.push(`Type        ${entry.type ?? 'unparsed'}${entry.sid === undefined ? '' : `, SID ${entry.sid}`}`);
    if (entry.connection !== undefined) {
      out.push(`Connection  ${showEndpoint(entry.connection.local)} -> ${showEndpoint(entry.connection.remote)} (${entry.connection.state})`);
    }
    if (entry.uid !== undefined) out.push(`User        ${entry.user ?? '(no passwd entry)'} (uid ${entry.uid})`);
    if (entry.processed === false) out.push('Processed   no: a repeated or over-budget recursive request (paper 3.1.4)');
    const why = entry.replaces === undefined ? (entry.reason ?? entry.decision) : `${entry.reason ?? ''}, instead of ${entry.replaces}`;
    out.push(`Reply       token (${why})`);
  }
  if (finding.brokenLines.length === 0) out.push(`Ledger      ${finding.lines} entries, hash chain intact`);
  return out.join('\n') + '\n';
}

async function runTrace(argv: string[]): Promise<number> {
  const { token, storeDir, format, json, help } = parseTokenCommand(argv, 'trace');
  if (help) {
    process.stdout.write(HELP);
    return 0;
  }
  const redemption = await redeemToken(storeDir, token);
  const view = describeTrace(token, redemption);
  if (format === 'dot' || format === 'svg') process.stdout.write(await formatTracePicture(view, { format }));
  else process.stdout.write(json ? `${JSON.stringify(view, null, 2)}\n` : formatTraceText(view));
  return redemption.status;
}


main(process.argv.slice(2)).then(
  // A pipe takes stdout asynchronously: exit once what was written is flushed, or a large
  // `redeem --json` reaches the reader cut (the empty write's callback runs after the others).
  (code) => process.stdout.write('', () => process.exit(code)),
  (error: unknown) => {
    if (error instanceof StopdError) {
      process.stderr.write(`stopctl: ${error.message}\n`);
      process.exit(error instanceof UsageError ? 64 : 1);
    }
    process.stderr.write(`stopctl: unexpected failure: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(70);
  },
);
