/**
 * stopd's settings: the table behind its command line, its configuration file and its
 * `--help`, and the translation of settings into `DaemonOptions`.
 */
import { readFileSync } from 'node:fs';
import { DEFAULTS, type DaemonOptions } from '../daemon/daemon.js';
import type { Logger } from '../daemon/logger.js';
import { UsageError } from '../errors.js';
import { parseSyslogTarget } from '../evidence/forwarder.js';
import { parseByteSize } from '../evidence/quota.js';
import { isRingRecordsPerCpu, RING_RECORDS_MAX, RING_RECORDS_MIN } from '../host/connection-recorder.js';
import { parseSaveCategories } from '../evidence/record.js';
import { parseDuration, parseListenAddress } from './args.js';
import type { OptionSpec, OptionValue, Settings } from './options.js';

/** A ledger segment smaller than this would rotate at nearly every entry. */
const MIN_SEGMENT_BYTES = 1024;
/** A history journal smaller than this would drop a segment at nearly every write. */
const MIN_HISTORY_BYTES = 1024 * 1024;

/** Every setting of stopd, in `--help` order. */
export const DAEMON_OPTIONS: readonly OptionSpec[] = [
  { name: 'listen', kind: 'list', arg: 'ADDR:PORT', default: ['[::]:113'], reload: 'restart',
    help: 'address to listen on; repeat for several; [::] is dual stack; port 0 picks a free port, printed at start. Ignored when systemd passes sockets (LISTEN_FDS)' },
  { name: 'store', kind: 'string', arg: 'DIR', default: DEFAULTS.storeDir, reload: 'restart',
    help: 'evidence store directory, created mode 0700' },
  { name: 'random-errors', kind: 'flag', reload: 'live', help: 'reply a token instead of every error' },
  { name: 'unknown-error', kind: 'flag', reload: 'live', help: 'reply UNKNOWN-ERROR instead of the precise error' },
  { name: 'opt-in', kind: 'flag', reload: 'live',
    help: 'let users list, in ~/.ident, hosts (names, addresses or CIDRs) that may see their user name in ID replies' },
  { name: 'max-connections', kind: 'integer', arg: 'N', min: 1, max: 1_000_000, default: DEFAULTS.maxConnections, reload: 'live',
    help: 'open client connections at most; when full, a client from an address holding fewer takes the slot of the oldest idle connection (no request waiting for its reply) of the address holding most, otherwise it is closed at once' },
  { name: 'max-connections-per-requester', kind: 'integer', arg: 'N', min: 1, max: 1_000_000, default: DEFAULTS.maxConnectionsPerRequester, reload: 'live',
    help: 'open connections of one requester (an IPv4 address, an IPv6 /64) at most; more are closed at once' },
  { name: 'rate-analysis', kind: 'integer', arg: 'N', min: 0, max: 6_000_000, default: DEFAULTS.rateAnalysisPerMinute, reload: 'live',
    help: 'SV, SV_REC and ID_REC requests per minute of one requester (the sender, also for CL_IP requests), after a burst; more get UNKNOWN-ERROR (a token with CL_IP or --random-errors), counted in one rate-limited ledger entry per requester and minute; 0: no limit' },
  { name: 'rate-analysis-burst', kind: 'integer', arg: 'N', min: 1, max: 1_000_000, default: DEFAULTS.rateAnalysisBurst, reload: 'live',
    help: 'SV, SV_REC and ID_REC requests one requester may send at once before --rate-analysis applies' },
  { name: 'rate-id', kind: 'integer', arg: 'N', min: 0, max: 6_000_000, default: DEFAULTS.rateIdPerMinute, reload: 'live',
    help: 'ID requests (and lines that do not parse) per minute of one requester, after a burst; more are refused like --rate-analysis; 0: no limit' },
  { name: 'rate-id-burst', kind: 'integer', arg: 'N', min: 1, max: 1_000_000, default: DEFAULTS.rateIdBurst, reload: 'live',
    help: 'ID requests one requester may send at once before --rate-id applies' },
  { name: 'max-lookups', kind: 'integer', arg: 'N', min: 1, max: 10_000, default: DEFAULTS.maxLookups, reload: 'restart',
    help: 'connection lookups running at once' },
  { name: 'max-analysis-queue', kind: 'integer', arg: 'N', min: 0, max: 10_000, default: DEFAULTS.maxAnalysisQueue, reload: 'restart',
    help: 'SV, SV_REC and ID_REC requests waiting for their analysis (one runs at a time); more are answered UNKNOWN-ERROR at once' },
  { name: 'inline-analyses', kind: 'flag', reload: 'restart',
    help: 'run SV, SV_REC and ID_REC analyses on the event loop instead of their worker thread, so that ID replies wait behind them (for measurement; inetd mode always does)' },
  { name: 'idle-timeout', kind: 'integer', arg: 'SEC', min: 1, max: 86_400, default: DEFAULTS.idleTimeoutSec, reload: 'live',
    help: 'close a client that sends nothing for SEC seconds' },
  { name: 'max-line', kind: 'integer', arg: 'BYTES', min: 64, max: 65_536, default: DEFAULTS.maxLineLength, reload: 'live',
    help: 'longest request line; a longer one closes the connection' },
  { name: 'token-hash', kind: 'string', arg: 'NAME', default: DEFAULTS.tokenHash, reload: 'restart',
    help: 'sha256 (64 hex digits) or sha1 (40, as in the STOP paper): SV tokens are that hash of their record, and every token has that length' },
  { name: 'save', kind: 'list', arg: 'LIST', default: ['all'], reload: 'live',
    help: 'what SV records keep: processes, cmdline, sockets, pipes, utmp, host, or all (comma-separated on the command line, a list in the file)' },
  { name: 'ledger-key', kind: 'string', arg: 'FILE', reload: 'restart',
    help: 'install the initial ledger key made by `stopctl keygen --out FILE`: the daemon moves it into the store (FILE is deleted) and from then on authenticates every ledger entry with a forward-secure MAC; keep a copy off this host for `stopctl verify --key`' },
  { name: 'upstream-port', kind: 'integer', arg: 'N', min: 1, max: 65_535, default: DEFAULTS.upstreamPort, reload: 'live',
    help: 'STOP port asked on upstream hosts by ID_REC/SV_REC' },
  { name: 'upstream-timeout', kind: 'integer', arg: 'SEC', min: 1, max: 600, default: DEFAULTS.upstreamTimeoutSec, reload: 'live',
    help: 'connect and reply deadline of each upstream request' },
  { name: 'max-fanout', kind: 'integer', arg: 'N', min: 0, max: 10_000, default: DEFAULTS.maxFanOut, reload: 'live',
    help: 'upstream hosts asked per recursive request; more are logged as skipped' },
  { name: 'nat', kind: 'flag', reload: 'restart',
    help: 'gateway mode: a connection no local socket holds is looked up in conntrack by its translated tuple; the gateway replies its own token and asks the host behind the translation (needs CAP_NET_ADMIN)' },
  { name: 'max-upstream', kind: 'integer', arg: 'N', min: 1, max: 10_000, default: DEFAULTS.maxUpstream, reload: 'restart',
    help: 'upstream requests in flight at once' },
  { name: 'loop-window', kind: 'integer', arg: 'SEC', min: 1, max: 86_400, default: DEFAULTS.loopWindowSec, reload: 'restart',
    help: 'a recursive request repeated within SEC seconds (same SID, requester and connection) gets a token but is not processed' },
  { name: 'max-per-sid', kind: 'integer', arg: 'N', min: 1, max: 1_000_000, default: DEFAULTS.maxPerSid, reload: 'restart',
    help: 'work per SID and loop window: requests processed plus upstream requests sent' },
  { name: 'syslog', kind: 'string', arg: 'HOST:PORT', reload: 'restart',
    help: 'also send every ledger entry to a syslog collector: RFC 5424 (authpriv.notice, APP-NAME stopd, MSGID ledger, [stopd@32473 seq="N"], the ledger line as MSG) over TCP with octet counting (RFC 6587). Never delays replies; while the collector is away entries wait in the ledger and are sent when it returns (also after a restart: the last delivered seq is kept in STORE/forward-state). At least once, in order; only entries of the last seconds before a lost connection may come twice, with the same seq' },
  { name: 'syslog-tls', kind: 'flag', reload: 'restart', help: 'wrap the syslog connection in TLS (RFC 5425)' },
  { name: 'syslog-ca', kind: 'string', arg: 'FILE', reload: 'restart', help: "PEM certificates to trust for --syslog-tls instead of the system's" },
  { name: 'max-records', kind: 'integer', arg: 'N', min: 0, max: Number.MAX_SAFE_INTEGER, reload: 'restart',
    help: 'SV records kept at most; past it SV replies go on as usual, the record is not saved and the ledger says so (no limit by default)' },
  { name: 'max-store-bytes', kind: 'string', arg: 'SIZE', default: '1G', reload: 'restart',
    help: 'total size of SV records kept at most, e.g. 500M or 2G; past it SV replies go on, new records are not saved and the ledger says so; remove old records with `stopctl prune`' },
  { name: 'max-requester-share', kind: 'integer', arg: 'PERCENT', min: 1, max: 100, default: DEFAULTS.maxRequesterSharePercent, reload: 'restart',
    help: 'part of --max-store-bytes (and --max-records) the records of one requester (an IPv4 address, an IPv6 /64) may fill; its further records are not kept, the others keep their room (100: no share)' },
  { name: 'ledger-segment-bytes', kind: 'string', arg: 'SIZE', default: '16M', reload: 'restart',
    help: 'start a new ledger segment (the old one moves to STORE/ledger-segments/) once the current one holds SIZE; at most half of --ledger-max-bytes' },
  { name: 'ledger-max-bytes', kind: 'string', arg: 'SIZE', default: '1G', reload: 'restart',
    help: 'total size of the ledger kept: past it the oldest segments are deleted, after a segment-dropped entry records the hash they end with, so `stopctl verify` checks the rest' },
  { name: 'ledger-retention', kind: 'integer', arg: 'DAYS', min: 1, max: 36_500, default: DEFAULTS.ledgerRetentionDays, reload: 'restart',
    help: 'delete ledger segments whose last entry is older than DAYS days (checked as entries are written), noted the same way' },
  { name: 'history', kind: 'string', arg: 'auto|off', default: 'auto', reload: 'restart',
    help: 'auto: record every outbound TCP connection with eBPF where the kernel allows it (the start-up log says once if not, and why) and answer requests about closed ones from the history journal in STORE/history; off: answer only connections open when the request arrives' },
  { name: 'process-index', kind: 'string', arg: 'auto|schedstat', default: 'auto', reload: 'restart',
    help: 'auto: the descriptor index kept between SV requests learns which processes ran from a small eBPF program where the kernel allows it (the start-up log says once if not, and why), so that an SV costs the same with 100 or 10 000 idle processes and threads; schedstat: from a schedstat file per thread, as before' },
  { name: 'history-retention', kind: 'string', arg: 'DURATION', default: '24h', reload: 'restart',
    help: 'keep the history of outbound connections this long (e.g. 90m, 24h, 7d): older journal segments are deleted, each after a history-dropped ledger entry' },
  { name: 'history-max-bytes', kind: 'string', arg: 'SIZE', default: '1G', reload: 'restart',
    help: 'total size of the history journal (STORE/history/, about 700 bytes a connection): past it the oldest segments are deleted the same way' },
  { name: 'history-ring-records', kind: 'string', arg: 'auto|N', default: 'auto', reload: 'restart',
    help: 'records each CPU\'s ring of the recorder holds (a power of two from 64 to 1048576; 120 bytes each, two a connection); auto: 4096, fewer beyond 64 CPUs. Larger rings lose less in a burst while the daemon is busy, and cost each connect a little more' },
];

/** Looks a setting up by name (a programming error if it is not in the table). */
export function optionSpec(name: string): OptionSpec {
  const spec = DAEMON_OPTIONS.find((candidate) => candidate.name === name);
  if (spec === undefined) throw new Error(`No stopd option named ${name}`);
  return spec;
}

/** What a SIGHUP does with the settings read anew: see {@link planReload}. */
export interface ReloadPlan {
  /** The settings now in force: the new ones, except that `restart` ones keep their running value. */
  readonly settings: Settings;
  /** The `restart` settings whose new value was not applied, in table order. */
  readonly kept: readonly string[];
}

/**
 * Sorts new settings by the table's `reload` column, its only source: a changed `live` setting
 * applies (the daemon takes the live part of the options built from them), a changed `restart`
 * one keeps its running value and is named, for the log. A setting left out counts as its default.
 */
export function planReload(running: Settings, next: Settings): ReloadPlan {
  const settings = new Map(next);
  const kept: string[] = [];
  for (const spec of DAEMON_OPTIONS) {
    if (spec.reload !== 'restart') continue;
    const before = running.get(spec.name);
    if (JSON.stringify(before ?? spec.default) === JSON.stringify(next.get(spec.name) ?? spec.default)) continue;
    kept.push(spec.name);
    if (before === undefined) settings.delete(spec.name);
    else settings.set(spec.name, before);
  }
  return { settings, kept };
}

/**
 * `DaemonOptions` from settings (file and flags merged; missing ones take their defaults).
 * Values of the right type may still be wrong (`--token-hash md5`): the UsageError names
 * `origin(name)`, the flag or the file line it came from.
 */
export function buildDaemonOptions(
  settings: Settings,
  context: { log: Logger; origin: (name: string) => string; listen?: DaemonOptions['listen'] },
): DaemonOptions {
  const get = <T extends OptionValue>(name: string): T | undefined => settings.get(name) as T | undefined;
  const int = (name: string): number => get<number>(name) ?? Number(optionSpec(name).default);
  const flag = (name: string): boolean => get<boolean>(name) === true;
  const checked = <T>(name: string, parse: () => T): T => {
    try {
      return parse();
    } catch (error) {
      if (!(error instanceof UsageError)) throw error;
      // Parsers either name the flag (`--save ...`) or say "must be ..." of the value: either
      // way the message then names where the value came from, the flag or the file line.
      const message = error.message.startsWith(`--${name}`) ? error.message.slice(name.length + 2) : ` ${error.message}`;
      throw new UsageError(`${context.origin(name)}${message}`);
    }
  };

  const tokenHash = get<string>('token-hash') ?? DEFAULTS.tokenHash;
  if (tokenHash !== 'sha256' && tokenHash !== 'sha1') {
    throw new UsageError(`${context.origin('token-hash')} must be sha256 or sha1, not ${JSON.stringify(tokenHash)}`);
  }
  const save = get<readonly string[]>('save');
  const syslogTarget = get<string>('syslog');
  const tls = flag('syslog-tls');
  const caFile = get<string>('syslog-ca');
  if (syslogTarget === undefined && (tls || caFile !== undefined)) {
    throw new UsageError('--syslog-tls and --syslog-ca need --syslog HOST:PORT');
  }
  if (caFile !== undefined && !tls) throw new UsageError('--syslog-ca goes with --syslog-tls');
  const ca = caFile === undefined ? undefined : checked('syslog-ca', () => readCa(caFile));
  const maxRecords = get<number>('max-records');
  const maxStoreBytes = get<string>('max-store-bytes');
  const ledgerSegmentBytes = checked('ledger-segment-bytes', () => parseByteSize(get<string>('ledger-segment-bytes') ?? '16M', '--ledger-segment-bytes'));
  const ledgerMaxBytes = checked('ledger-max-bytes', () => parseByteSize(get<string>('ledger-max-bytes') ?? '1G', '--ledger-max-bytes'));
  if (ledgerSegmentBytes < MIN_SEGMENT_BYTES) {
    throw new UsageError(`${context.origin('ledger-segment-bytes')} must be at least ${MIN_SEGMENT_BYTES} bytes (a ledger entry is about 520)`);
  }
  if (ledgerSegmentBytes * 2 > ledgerMaxBytes) {
    throw new UsageError(
      `${context.origin('ledger-segment-bytes')} (${ledgerSegmentBytes}) must be at most half of --ledger-max-bytes (${ledgerMaxBytes}): the active segment is never dropped`,
    );
  }
  const historyMaxBytes = checked('history-max-bytes', () => parseByteSize(get<string>('history-max-bytes') ?? '1G', '--history-max-bytes'));
  const historyRetentionMs = checked('history-retention', () => parseDuration(get<string>('history-retention') ?? '24h', '--history-retention'));
  if (historyMaxBytes < MIN_HISTORY_BYTES) {
    throw new UsageError(`${context.origin('history-max-bytes')} must be at least 1M (${MIN_HISTORY_BYTES} bytes): the journal keeps at least two segments`);
  }
  const ledgerKey = get<string>('ledger-key');
  const history = get<string>('history') ?? 'auto';
  if (history !== 'auto' && history !== 'off') {
    throw new UsageError(`${context.origin('history')} must be auto or off, not ${JSON.stringify(history)}`);
  }
  const ringRecords = get<string>('history-ring-records') ?? 'auto';
  const historyRingRecords = ringRecords === 'auto' ? undefined : Number(ringRecords);
  if (historyRingRecords !== undefined && !isRingRecordsPerCpu(historyRingRecords)) {
    throw new UsageError(`${context.origin('history-ring-records')} must be auto or a power of two from ${RING_RECORDS_MIN} to ${RING_RECORDS_MAX} (e.g. 8192), not ${JSON.stringify(ringRecords)}`);
  }
  const processIndex = get<string>('process-index') ?? 'auto';
  if (processIndex !== 'auto' && processIndex !== 'schedstat') {
    throw new UsageError(`${context.origin('process-index')} must be auto or schedstat, not ${JSON.stringify(processIndex)}`);
  }
  return {
    listen: context.listen ?? checked('listen', () => (get<readonly string[]>('listen') ?? ['[::]:113']).map(parseListenAddress)),
    storeDir: get<string>('store') ?? DEFAULTS.storeDir,
    policy: { randomErrors: flag('random-errors'), unknownError: flag('unknown-error') },
    optIn: flag('opt-in'),
    maxConnections: int('max-connections'),
    maxConnectionsPerRequester: int('max-connections-per-requester'),
    rateLimits: {
      analysis: { perMinute: int('rate-analysis'), burst: int('rate-analysis-burst') },
      id: { perMinute: int('rate-id'), burst: int('rate-id-burst') },
    },
    maxLookups: int('max-lookups'),
    maxAnalysisQueue: int('max-analysis-queue'),
    ...(flag('inline-analyses') ? { inlineAnalyses: true } : {}),
    idleTimeoutMs: 1000 * int('idle-timeout'),
    maxLineLength: int('max-line'),
    tokenHash,
    save: save === undefined ? DEFAULTS.save : checked('save', () => parseSaveCategories(save.join(','))),
    upstreamPort: int('upstream-port'),
    upstreamTimeoutMs: 1000 * int('upstream-timeout'),
    maxFanOut: int('max-fanout'),
    maxUpstream: int('max-upstream'),
    ...(flag('nat') ? { nat: true } : {}),
    loopWindowMs: 1000 * int('loop-window'),
    maxPerSid: int('max-per-sid'),
    ...(ledgerKey === undefined ? {} : { ledgerKeyFile: ledgerKey }),
    ...(syslogTarget === undefined
      ? {}
      : {
          syslog: {
            target: checked('syslog', () => parseSyslogTarget(syslogTarget)),
            ...(tls ? { tls: ca === undefined ? {} : { ca } } : {}),
          },
        }),
    ...(maxRecords === undefined ? {} : { maxRecords }),
    ...(maxStoreBytes === undefined ? {} : { maxStoreBytes: checked('max-store-bytes', () => parseByteSize(maxStoreBytes)) }),
    maxRequesterSharePercent: int('max-requester-share'),
    ledgerSegmentBytes,
    ledgerMaxBytes,
    ledgerRetentionDays: int('ledger-retention'),
    history,
    processIndex,
    historyRetentionMs,
    historyMaxBytes,
    ...(historyRingRecords === undefined ? {} : { historyRingRecords }),
    log: context.log,
  };
}

function readCa(file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (error) {
    throw new UsageError(`cannot read ${file}: ${(error as Error).message}`);
  }
}
