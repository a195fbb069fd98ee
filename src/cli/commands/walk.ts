/**
 * `stopctl walk`: the investigator's walk in one command. From a token (or from the reply to
 * a recursive request it sends first), it reads each host's store over SSH, verifies the hop
 * where it lives and follows every upstream token, breadth-first (paper 3.1.3, section 5).
 */
import { writeFileSync } from 'node:fs';
import { hostname, networkInterfaces } from 'node:os';
import { isIP } from 'node:net';
import { queryStop } from '../../daemon/client.js';
import { DEFAULTS } from '../../daemon/daemon.js';
import { isTokenShaped } from '../../evidence/tokens.js';
import { StopdError, UsageError } from '../../errors.js';
import { formatRequest } from '../../protocol/index.js';
import { formatCommandHelp, parseCommandLine, parseInteger } from '../args.js';
import { formatWalkText } from '../walk/format-walk.js';
import { renderWalkHtml } from '../walk/walk-html.js';
import { renderWalkCase } from '../walk/walk-case.js';
import { createStoreReader, DEFAULT_SSH, splitCommandLine } from '../walk/remote-stopctl.js';
import { isWalkableHost, walkChain } from '../walk/walk-chain.js';
import type { WalkDocument, WalkStart } from '../walk/walk-document.js';
import { createWalkProgress } from '../walk/walk-progress.js';
import type { StopctlCommand } from './command.js';
import { buildRequest, parseTarget } from './query.js';

const HELP = `  walk HOST TOKEN [options]
  walk --ask HOST[:PORT] CL_PORT SV_PORT [--ip ADDR] [--type SV_REC|ID_REC] [options]
      Follow a chain across the hosts you administer: on each host (over SSH, or this host's
      store) run stopctl redeem, trace and verify with --json, verify the hop there (the
      record against its token, the store's ledger chain, and the link: the token was issued
      for the request and connection the previous host recorded), and follow every upstream
      token to the host it names, breadth-first. A host you cannot reach ends its branch with
      the reason and the token to take to its administrator.
      --ask                 first send the recursive request (as stopctl query does) to HOST
                            about its CL_PORT and SV_PORT, then walk from the token it replies
      --ip ADDR, --type T, --sid N   as for query (--type SV_REC unless given)
      --ssh COMMAND         the SSH command and its options (default "${DEFAULT_SSH}"),
                            for example --ssh "ssh -i KEY -l root -o BatchMode=yes"
      --remote-stopctl CMD  what runs stopctl on the other hosts (default stopctl)
      --local HOST          HOST's store is this host's (--store); may be repeated. This
                            host's own names and addresses are local without it
      --store DIR           this host's store (default ${DEFAULTS.storeDir})
      --max-hops N          follow at most N upstream links from the start (default 16)
      --max-hosts N         reach at most N distinct hosts (default 32)
      --timeout SEC         give up on a host whose command takes longer (default 60)
      --settle SEC          wait this long for upstream questions a host has not finished
                            (default 10)
      --json                print the walk as one JSON document (schema in the README)
      --html FILE           also write the walk as one self-contained HTML report (no
                            network access when opened: inline SVG, raw records inside)
      --case FILE           also write the walk as a CASE/UCO JSON-LD bundle (each hop's
                            connection with its Community ID, processes, accounts, provenance)
      Progress goes to stderr when it is a terminal; Ctrl-C ends the walk and prints what
      was gathered. Exit status: 0 every hop verified; 3 a hop failed verification; 4 the
      walk is incomplete (a host unreachable, a token unknown, a bound reached); 2 --ask got
      no token; 130 interrupted.
`;

/** `stopctl walk ...`. */
export const WALK_COMMAND: StopctlCommand = { name: 'walk', help: HELP, run: runWalk };

/** Exit statuses of `stopctl walk` (README, Exit codes). */
export const WALK_EXIT = { verified: 0, noToken: 2, failed: 3, incomplete: 4, interrupted: 130 } as const;

async function runWalk(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandLine(
    {
      args: argv,
      allowPositionals: true,
      options: {
        ask: { type: 'boolean' },
        ip: { type: 'string' },
        type: { type: 'string' },
        sid: { type: 'string' },
        ssh: { type: 'string' },
        'remote-stopctl': { type: 'string' },
        local: { type: 'string', multiple: true },
        store: { type: 'string' },
        'max-hops': { type: 'string' },
        'max-hosts': { type: 'string' },
        timeout: { type: 'string' },
        settle: { type: 'string' },
        json: { type: 'boolean' },
        html: { type: 'string' },
        case: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    },
    'stopctl walk',
  );
  if (values.help === true) {
    process.stdout.write(formatCommandHelp(HELP));
    return 0;
  }
  const maxHops = parseInteger(values['max-hops'] ?? '16', { name: '--max-hops', min: 0, max: 1000 });
  const maxHosts = parseInteger(values['max-hosts'] ?? '32', { name: '--max-hosts', min: 1, max: 10_000 });
  const timeoutMs = 1000 * parseInteger(values.timeout ?? '60', { name: '--timeout', min: 1, max: 3600 });
  const settleMs = 1000 * parseInteger(values.settle ?? '10', { name: '--settle', min: 0, max: 3600 });
  if (values.html === '') throw new UsageError('--html needs a FILE to write the report to');
  if (values.case === '') throw new UsageError('--case needs a FILE to write the CASE bundle to');
  const ssh = splitCommandLine(values.ssh ?? DEFAULT_SSH);
  const remoteStopctl = values['remote-stopctl'] ?? 'stopctl';
  if (remoteStopctl.trim() === '') throw new UsageError('--remote-stopctl must name a command, for example "sudo stopctl"');
  for (const host of values.local ?? []) {
    if (!isWalkableHost(host)) throw new UsageError(`--local needs a host name or address, not ${JSON.stringify(host)}`);
  }

  const controller = new AbortController();
  const interrupt = (): void => controller.abort();
  process.once('SIGINT', interrupt);
  process.once('SIGTERM', interrupt);
  try {
    const started = values.ask === true ? await askFirst(positionals, { ...values, timeoutMs }) : parseStart(positionals, values);
    if (typeof started === 'number') return started;
    const reader = createStoreReader({
      ssh,
      remoteStopctl,
      localHosts: namesOfThisHost(values.local ?? []),
      localStopctl: [process.execPath, process.argv[1] ?? 'stopctl'],
      localStore: values.store ?? DEFAULTS.storeDir,
      timeoutMs,
    });
    const progress = createWalkProgress(process.stderr);
    let doc: WalkDocument;
    try {
      doc = await walkChain(started, { reader, maxHops, maxHosts, settleMs, signal: controller.signal, onProgress: progress.update });
    } finally {
      progress.clear();
    }
    process.stdout.write(values.json === true ? `${JSON.stringify(doc, null, 2)}\n` : formatWalkText(doc));
    if (!(await writeReports(doc, { html: values.html, case: values.case }))) return 1;
    if (doc.interrupted) return WALK_EXIT.interrupted;
    return doc.verdict === 'verified' ? WALK_EXIT.verified : doc.verdict === 'failed' ? WALK_EXIT.failed : WALK_EXIT.incomplete;
  } finally {
    process.removeListener('SIGINT', interrupt);
    process.removeListener('SIGTERM', interrupt);
  }
}

/**
 * The reports rendered from the same document, when asked for; false (with one sentence on
 * stderr) when a file cannot be written. The files hold evidence: readable by their owner only.
 */
async function writeReports(doc: WalkDocument, files: { html: string | undefined; case: string | undefined }): Promise<boolean> {
  const reports: [string, string | undefined, () => Promise<string>][] = [
    ['--html', files.html, () => renderWalkHtml(doc)],
    ['--case', files.case, () => Promise.resolve(`${JSON.stringify(renderWalkCase(doc), null, 2)}\n`)],
  ];
  let ok = true;
  for (const [option, file, render] of reports) {
    if (file === undefined) continue;
    try {
      writeFileSync(file, await render(), { mode: 0o600 });
    } catch (error) {
      if (!(error instanceof Error && 'code' in error)) throw error;
      process.stderr.write(`stopctl: Cannot write ${option} ${file}: ${error.message}\n`);
      ok = false;
    }
  }
  return ok;
}

/** `walk HOST TOKEN`. */
function parseStart(positionals: readonly string[], values: { ip?: string; type?: string; sid?: string }): WalkStart {
  if (values.ip !== undefined || values.type !== undefined || values.sid !== undefined) {
    throw new UsageError('--ip, --type and --sid go with --ask; without it, walk starts from HOST TOKEN');
  }
  if (positionals.length !== 2) throw new UsageError('walk needs HOST TOKEN (or --ask HOST[:PORT] CL_PORT SV_PORT), for example `stopctl walk 192.0.2.2 <token>`');
  const [host = '', token = ''] = positionals;
  if (!isWalkableHost(host)) throw new UsageError(`${JSON.stringify(host)} is not a host name or address`);
  if (!isTokenShaped(token)) throw new UsageError(`${JSON.stringify(token)} is not a token: tokens are 40 or 64 lowercase hex digits`);
  return { host, token };
}

/**
 * `walk --ask`: sends the recursive request (as `stopctl query` does, from this host: the
 * question must come from the connection's other end, or carry CL_IP) and starts from the
 * token replied. Returns an exit status when there is no token to walk from.
 */
async function askFirst(
  positionals: readonly string[],
  options: { ip?: string; type?: string; sid?: string; timeoutMs: number },
): Promise<WalkStart | number> {
  if (positionals.length !== 3) throw new UsageError('walk --ask needs HOST[:PORT] CL_PORT SV_PORT, for example `stopctl walk --ask 192.0.2.2 40000 22 --ip 192.0.2.3`');
  const [target = '', clientPort = '', serverPort = ''] = positionals;
  const { host, port } = parseTarget(target);
  if (!isWalkableHost(host)) throw new UsageError(`${JSON.stringify(host)} is not a host name or address`);
  const type = options.type ?? 'SV_REC';
  if (type !== 'SV_REC' && type !== 'ID_REC') throw new UsageError(`walk --ask sends SV_REC or ID_REC (a recursive request), not ${JSON.stringify(type)}`);
  const request = buildRequest({ clientPort, serverPort, type, sid: options.sid, ip: options.ip });
  const line = formatRequest(request);
  let reply;
  try {
    reply = await queryStop(request, { host, port, timeoutMs: options.timeoutMs });
  } catch (error) {
    if (!(error instanceof StopdError)) throw error;
    process.stderr.write(`stopctl: walk: no answer from ${host}:${port}: ${error.message}\n`);
    return WALK_EXIT.noToken;
  }
  if (reply.reply.kind !== 'token' || !isTokenShaped(reply.reply.token)) {
    process.stderr.write(`stopctl: walk: ${host}:${port} answered ${JSON.stringify(reply.line)}, not a token to walk from\n`);
    return WALK_EXIT.noToken;
  }
  const remote = options.ip === undefined ? null : { address: options.ip.replace(/^\[|\]$/g, ''), port: request.serverPort };
  return {
    host,
    token: reply.reply.token,
    ask: {
      target: { address: host, port },
      request: line,
      reply: reply.line,
      connection: { local: { address: isIP(host) === 0 ? '' : host, port: request.clientPort }, remote },
      sid: 'sid' in request ? String(request.sid) : null,
      type,
    },
  };
}

/** This host's store answers for these names: `--local` ones, its host name and its addresses. */
function namesOfThisHost(local: readonly string[]): Set<string> {
  const names = new Set(local.map((name) => name.toLowerCase()));
  names.add(hostname().toLowerCase());
  names.add('localhost');
  for (const addresses of Object.values(networkInterfaces())) {
    for (const address of addresses ?? []) names.add(address.address.toLowerCase());
  }
  return names;
}
