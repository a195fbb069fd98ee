#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { DEFAULTS, startDaemon } from '../daemon/daemon.js';
import { createStreamLogger } from '../daemon/logger.js';
import { parseSaveCategories } from '../evidence/record.js';
import { parseSyslogTarget } from '../evidence/forwarder.js';
import { parseByteSize } from '../evidence/quota.js';
import { StopdError, UsageError } from '../errors.js';
import { parseCommandLine, parseInteger, parseListenAddress } from './args.js';

const HELP = `Usage: stopd [options]

Answers IDENT (RFC 1413) and STOP requests on TCP with opaque tokens, and records what each
token stands for in an append-only ledger in the store directory.

Options:
  --listen ADDR:PORT     address to listen on; repeat for several (default [::]:113, dual stack;
                         port 0 picks a free port, printed at start)
  --store DIR            evidence store directory, created mode 0700 (default ${DEFAULTS.storeDir})
  --random-errors        reply a token instead of every error
  --unknown-error        reply UNKNOWN-ERROR instead of the precise error
  --opt-in               let users list, in ~/.ident, hosts (names, addresses or CIDRs)
                         that may see their user name in ID replies
  --max-connections N    open client connections at most; more are closed (default ${DEFAULTS.maxConnections})
  --max-lookups N        connection lookups running at once (default ${DEFAULTS.maxLookups})
  --idle-timeout SEC     close a client that sends nothing for SEC seconds (default ${DEFAULTS.idleTimeoutSec})
  --max-line BYTES       longest request line; a longer one closes the connection (default ${DEFAULTS.maxLineLength})
  --token-hash NAME      sha256 (64 hex digits, default) or sha1 (40, as in the STOP paper);
                         SV tokens are that hash of their record; every token has that length
  --save LIST            what SV records keep, comma-separated: processes, cmdline, sockets,
                         pipes, utmp, host, or all (default all)
  --ledger-key FILE      install the initial ledger key made by \`stopctl keygen --out FILE\`:
                         the daemon moves it into the store (FILE is deleted) and from then on
                         authenticates every ledger entry with a forward-secure MAC; keep a
                         copy off this host for \`stopctl verify --key\`
  --upstream-port N      STOP port asked on upstream hosts by ID_REC/SV_REC (default ${DEFAULTS.upstreamPort})
  --upstream-timeout SEC connect and reply deadline of each upstream request (default ${DEFAULTS.upstreamTimeoutSec})
  --max-fanout N         upstream hosts asked per recursive request; more are logged as
                         skipped (default ${DEFAULTS.maxFanOut})
  --max-upstream N       upstream requests in flight at once (default ${DEFAULTS.maxUpstream})
  --loop-window SEC      a recursive request repeated within SEC seconds (same SID, requester
                         and connection) gets a token but is not processed (default ${DEFAULTS.loopWindowSec})
  --max-per-sid N        work per SID and loop window: requests processed plus upstream
                         requests sent (default ${DEFAULTS.maxPerSid})
  --syslog HOST:PORT     also send every ledger entry to a syslog collector: RFC 5424
                         (authpriv.notice, APP-NAME stopd, MSGID ledger, [stopd@32473 seq="N"],
                         the ledger line as MSG) over TCP with octet counting (RFC 6587).
                         Never delays replies; while the collector is away entries wait in the
                         ledger and are sent when it returns (also after a restart: the last
                         delivered seq is kept in STORE/forward-state). At least once, in
                         order; only entries of the last seconds before a lost connection may
                         come twice, with the same seq
  --syslog-tls           wrap the syslog connection in TLS (RFC 5425)
  --syslog-ca FILE       PEM certificates to trust for --syslog-tls instead of the system's
  --max-records N        SV records kept at most; past it SV replies go on as usual, the
                         record is not saved and the ledger says so (no limit by default)
  --max-store-bytes SIZE total size of SV records kept at most, e.g. 500M or 2G (no limit by
                         default; the ledger is never limited). Remove old records with
                         \`stopctl prune\`
  --version              print the version and exit
  -h, --help             print this help and exit

Request types: ID and the bare RFC 1413 form get a random token for an established outbound
connection. SV and SV_REC also save the processes and IPC behind it as a record whose hash
is the token. ID_REC and SV_REC then ask the same question, with the same SID, of every
upstream host found behind the connection, and keep their answers in the ledger.

Signals: SIGTERM and SIGINT stop accepting, answer what was received, flush the ledger and
exit 0.
`;

async function main(argv: string[]): Promise<number> {
  const { values } = parseCommandLine(
    {
      args: argv,
      options: {
        listen: { type: 'string', multiple: true },
        store: { type: 'string' },
        'random-errors': { type: 'boolean' },
        'unknown-error': { type: 'boolean' },
        'opt-in': { type: 'boolean' },
        'max-connections': { type: 'string' },
        'max-lookups': { type: 'string' },
        'idle-timeout': { type: 'string' },
        'max-line': { type: 'string' },
        'token-hash': { type: 'string' },
        save: { type: 'string' },
        'upstream-port': { type: 'string' },
        'upstream-timeout': { type: 'string' },
        'max-fanout': { type: 'string' },
        'max-upstream': { type: 'string' },
        'loop-window': { type: 'string' },
        'max-per-sid': { type: 'string' },
        'ledger-key': { type: 'string' },
        syslog: { type: 'string' },
        'syslog-tls': { type: 'boolean' },
        'syslog-ca': { type: 'string' },
        'max-records': { type: 'string' },
        'max-store-bytes': { type: 'string' },
        version: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    },
    'stopd',
  );
  if (values.help === true) {
    process.stdout.write(HELP);
    return 0;
  }
  if (values.version === true) {
    process.stdout.write(`${readVersion()}\n`);
    return 0;
  }
  const tokenHash = values['token-hash'] ?? DEFAULTS.tokenHash;
  if (tokenHash !== 'sha256' && tokenHash !== 'sha1') {
    throw new UsageError(`--token-hash must be sha256 or sha1, not ${JSON.stringify(tokenHash)}`);
  }
  const syslog = readSyslogOptions(values.syslog, { tls: values['syslog-tls'] === true, caFile: values['syslog-ca'] });
  const log = createStreamLogger(process.stderr);
  const daemon = await startDaemon({
    listen: values.listen?.map(parseListenAddress) ?? DEFAULTS.listen,
    storeDir: values.store ?? DEFAULTS.storeDir,
    policy: { randomErrors: values['random-errors'] === true, unknownError: values['unknown-error'] === true },
    optIn: values['opt-in'] === true,
    maxConnections: integer(values['max-connections'], DEFAULTS.maxConnections, { name: '--max-connections', min: 1, max: 1_000_000 }),
    maxLookups: integer(values['max-lookups'], DEFAULTS.maxLookups, { name: '--max-lookups', min: 1, max: 10_000 }),
    idleTimeoutMs: 1000 * integer(values['idle-timeout'], DEFAULTS.idleTimeoutSec, { name: '--idle-timeout', min: 1, max: 86_400 }),
    maxLineLength: integer(values['max-line'], DEFAULTS.maxLineLength, { name: '--max-line', min: 64, max: 65_536 }),
    tokenHash,
    save: values.save === undefined ? DEFAULTS.save : parseSaveCategories(values.save),
    upstreamPort: integer(values['upstream-port'], DEFAULTS.upstreamPort, { name: '--upstream-port', min: 1, max: 65535 }),
    upstreamTimeoutMs: 1000 * integer(values['upstream-timeout'], DEFAULTS.upstreamTimeoutSec, { name: '--upstream-timeout', min: 1, max: 600 }),
    maxFanOut: integer(values['max-fanout'], DEFAULTS.maxFanOut, { name: '--max-fanout', min: 0, max: 10_000 }),
    maxUpstream: integer(values['max-upstream'], DEFAULTS.maxUpstream, { name: '--max-upstream', min: 1, max: 10_000 }),
    loopWindowMs: 1000 * integer(values['loop-window'], DEFAULTS.loopWindowSec, { name: '--loop-window', min: 1, max: 86_400 }),
    maxPerSid: integer(values['max-per-sid'], DEFAULTS.maxPerSid, { name: '--max-per-sid', min: 1, max: 1_000_000 }),
    ...(values['ledger-key'] === undefined ? {} : { ledgerKeyFile: values['ledger-key'] }),
    ...(syslog === undefined ? {} : { syslog }),
    ...(values['max-records'] === undefined
      ? {}
      : { maxRecords: parseInteger(values['max-records'], { name: '--max-records', min: 0, max: Number.MAX_SAFE_INTEGER }) }),
    ...(values['max-store-bytes'] === undefined ? {} : { maxStoreBytes: parseByteSize(values['max-store-bytes']) }),
    log,
  });
  for (const endpoint of daemon.endpoints) {
    const host = endpoint.address.includes(':') ? `[${endpoint.address}]` : endpoint.address;
    log.info(`listening on ${host}:${endpoint.port}`);
  }
  await new Promise<void>((resolve) => {
    const stop = (signal: string): void => {
      log.info(`${signal} received: draining connections`);
      resolve();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  await daemon.close();
  log.info('stopped');
  return 0;
}

/** `--syslog`, `--syslog-tls`, `--syslog-ca` together; the CA file is read here, once. */
function readSyslogOptions(
  target: string | undefined,
  options: { tls: boolean; caFile: string | undefined },
): { target: ReturnType<typeof parseSyslogTarget>; tls?: { ca?: Buffer } } | undefined {
  if (target === undefined) {
    if (options.tls || options.caFile !== undefined) throw new UsageError('--syslog-tls and --syslog-ca need --syslog HOST:PORT');
    return undefined;
  }
  if (options.caFile !== undefined && !options.tls) throw new UsageError('--syslog-ca goes with --syslog-tls');
  let ca: Buffer | undefined;
  if (options.caFile !== undefined) {
    try {
      ca = readFileSync(options.caFile);
    } catch (error) {
      throw new UsageError(`Cannot read --syslog-ca ${options.caFile}: ${(error as Error).message}`);
    }
  }
  return { target: parseSyslogTarget(target), ...(options.tls ? { tls: ca === undefined ? {} : { ca } } : {}) };
}

/** An optional integer option, or its default. */
function integer(text: string | undefined, fallback: number, bounds: { name: string; min: number; max: number }): number {
  return text === undefined ? fallback : parseInteger(text, bounds);
}

function readVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    if (error instanceof StopdError) {
      process.stderr.write(`stopd: ${error.message}\n`);
      process.exit(error instanceof UsageError ? 64 : 1);
    }
    process.stderr.write(`stopd: unexpected failure: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(70);
  },
);
