#!/usr/bin/env -S node --max-semi-space-size=1 --optimize-for-size
// The V8 flags above keep the daemon's resident memory under 80 MB at full load (bench/README.md):
// a 1 MB young generation instead of up to 16 MB, and a heap that grows less eagerly. Throughput is
// unchanged within the bench's noise. `npm start` and the bench run this file through this line.
import { runProgram } from './run-program.js';
import { createWriteStream, lstatSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { Socket } from 'node:net';
import { startDaemon, type DaemonOptions, type RunningDaemon } from '../daemon/daemon.js';
import { createStreamLogger, type Logger } from '../daemon/logger.js';
import type { ListenAddress } from '../daemon/server.js';
import { parseCommandLine } from './args.js';
import { DEFAULT_CONFIG_FILE, loadConfigFile, type FileSetting } from './config-file.js';
import { buildDaemonOptions, DAEMON_OPTIONS, planReload } from './daemon-options.js';
import { formatOptionHelp, readOption, type OptionValue, type Settings } from './options.js';

const HELP = `Usage: stopd [options]

Answers IDENT (RFC 1413) and STOP requests on TCP with opaque tokens, and records what each
token stands for in an append-only ledger in the store directory.

Request types: ID and the bare RFC 1413 form get a random token for an established outbound
connection. SV and SV_REC also save the processes and IPC behind it as a record whose hash
is the token. ID_REC and SV_REC then ask the same question, with the same SID, of every
upstream host found behind the connection, and keep their answers in the ledger.

Settings (also in the configuration file, as \`name = value\` with the same names; flags
override the file; [restart] ones are not changed by SIGHUP):
${formatOptionHelp(DAEMON_OPTIONS)}

Program options:
  --config FILE        configuration file (default ${DEFAULT_CONFIG_FILE}; a missing default is ignored)
  --check-config       validate the configuration and the command line, print the result, exit
  --inetd              serve the one connection on stdin/stdout, then exit (xinetd, systemd Accept=yes)
  --log-file FILE      append log lines to FILE instead of stderr (in --inetd mode, logs are
                       dropped unless this is given: stderr may be the connection)
  --version            print the version and exit
  -h, --help           print this help and exit

Sockets passed by systemd socket activation (LISTEN_FDS) are used instead of --listen.

Signals: SIGTERM and SIGINT stop accepting, answer what was received, flush the ledger and
exit 0. SIGHUP re-reads the configuration file: a valid one takes effect for new requests
(connections are kept, nothing is lost), an invalid one is reported and the running
configuration stays.
`;

async function main(argv: string[]): Promise<number> {
  const { values } = parseCommandLine(
    {
      args: argv,
      options: {
        ...Object.fromEntries(
          DAEMON_OPTIONS.map((spec) => [spec.name, spec.kind === 'flag' ? { type: 'boolean' as const } : { type: 'string' as const, multiple: spec.kind === 'list' }]),
        ),
        config: { type: 'string' },
        'check-config': { type: 'boolean' },
        inetd: { type: 'boolean' },
        'log-file': { type: 'string' },
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
  const inetd = values.inetd === true;
  const logFile = values['log-file'];
  const log = createLogger(typeof logFile === 'string' ? logFile : undefined, { inetd });
  const configFile = typeof values.config === 'string' ? values.config : DEFAULT_CONFIG_FILE;
  const flags = readFlags(values);
  const listen = inetd ? [] : flags.has('listen') ? undefined : inheritedSockets();
  const read = (): LoadedSettings => {
    const file = loadConfigFile(configFile, DAEMON_OPTIONS, { required: typeof values.config === 'string' });
    return readSettings({ file, flags, configFile, log, listen });
  };
  const loaded = read();
  // inetd mode starts a process per connection: they take turns on the store's lock, and there
  // is no later request to keep a descriptor index for.
  // History needs a resident recorder: a process per connection has none (README, Limits).
  const options: DaemonOptions = inetd
    ? { ...loaded.options, storeLockWaitMs: 30_000, keepFdIndex: false, inlineAnalyses: true, history: 'off' }
    : loaded.options;
  if (values['check-config'] === true) {
    process.stdout.write(`stopd: configuration is valid (${describeSources(configFile, values.config !== undefined)})\n`);
    return 0;
  }

  // A start that fails (an address in use, a store locked by another daemon) must not leave
  // behind the store directory it made: remember whether there was one.
  const madeStore = findMissingAncestor(resolve(options.storeDir));
  let daemon: RunningDaemon;
  try {
    daemon = await startDaemon(options);
  } catch (error) {
    if (madeStore !== undefined) removeIfUnused(madeStore);
    throw error;
  }
  for (const endpoint of daemon.endpoints) {
    const host = endpoint.address.includes(':') ? `[${endpoint.address}]` : endpoint.address;
    log.info(`listening on ${host}:${endpoint.port}`);
  }
  let running = loaded.settings;
  process.on('SIGHUP', () => {
    running = reload(daemon, { running, read, log });
  });
  if (inetd) {
    // inetd and systemd Accept=yes pass the connected TCP socket as stdin/stdout.
    await daemon.serve(new Socket({ fd: 0, readable: true, writable: true }));
  } else {
    await new Promise<void>((resolve) => {
      const stop = (signal: string): void => {
        log.info(`${signal} received: draining connections`);
        resolve();
      };
      process.once('SIGTERM', () => stop('SIGTERM'));
      process.once('SIGINT', () => stop('SIGINT'));
    });
  }
  await daemon.close();
  log.info('stopped');
  return 0;
}

/** The settings given on the command line, validated. */
function readFlags(values: Record<string, unknown>): Map<string, OptionValue> {
  const flags = new Map<string, OptionValue>();
  for (const spec of DAEMON_OPTIONS) {
    let raw = values[spec.name];
    if (raw === undefined) continue;
    // Lists are repeated flags (--listen A --listen B) or comma-separated (--save a,b).
    if (spec.kind === 'list' && Array.isArray(raw)) raw = (raw as string[]).flatMap((item) => (spec.name === 'save' ? item.split(',') : [item]));
    flags.set(spec.name, readOption(spec, raw, { where: `--${spec.name}` }));
  }
  return flags;
}

/** The settings in force (file and flags merged) and the daemon options built from them. */
interface LoadedSettings {
  readonly settings: Settings;
  readonly options: DaemonOptions;
}

/** File settings overridden by flags, turned into daemon options. */
function readSettings(context: {
  file: Map<string, FileSetting>;
  flags: Map<string, OptionValue>;
  configFile: string;
  log: Logger;
  listen: ListenAddress[] | undefined;
}): LoadedSettings {
  const merged = new Map<string, OptionValue>([...[...context.file].map(([name, setting]) => [name, setting.value] as const), ...context.flags]);
  const origin = (name: string): string => {
    const line = context.file.get(name)?.line;
    return context.flags.has(name) || line === undefined ? `--${name}` : `${context.configFile}:${line}: ${name}`;
  };
  const options = buildDaemonOptions(merged, { log: context.log, origin, ...(context.listen === undefined ? {} : { listen: context.listen }) });
  return { settings: merged, options };
}

/**
 * SIGHUP: re-read the file; keep the running configuration if it is invalid. The settings
 * table says what applies: the daemon gets the new live options (built from the live settings
 * alone), and changed restart settings are logged and keep their running value. Returns the
 * settings now in force.
 */
function reload(daemon: RunningDaemon, context: { running: Settings; read: () => LoadedSettings; log: Logger }): Settings {
  const { log } = context;
  let next: LoadedSettings;
  try {
    next = context.read();
  } catch (error) {
    log.error(`Configuration not reloaded, the running one stays: ${error instanceof Error ? error.message : String(error)}`);
    return context.running;
  }
  const plan = planReload(context.running, next.settings);
  daemon.reconfigure(next.options);
  log.info('configuration reloaded');
  if (plan.kept.length > 0) log.warn(`changed settings that need a restart were kept as they are: ${plan.kept.join(', ')}`);
  return plan.settings;
}

/** Listening sockets passed by systemd (sd_listen_fds(3)): fds 3.. when LISTEN_PID is us. */
function inheritedSockets(): ListenAddress[] | undefined {
  const pid = Number(process.env.LISTEN_PID);
  const count = Number(process.env.LISTEN_FDS);
  if (pid !== process.pid || !Number.isInteger(count) || count < 1) return undefined;
  return Array.from({ length: count }, (_, i) => ({ fd: 3 + i }));
}

/** The highest directory on the way to `dir` that does not exist yet (what `mkdir -p` would make), if any. */
function findMissingAncestor(dir: string): string | undefined {
  let missing: string | undefined;
  for (let current = dir; ; current = dirname(current)) {
    try {
      lstatSync(current);
      return missing;
    } catch {
      missing = current;
    }
    if (dirname(current) === current) return missing;
  }
}

/**
 * Removes `dir` if it holds nothing but empty files and directories (an empty ledger, an empty
 * records/): what a failed start made. Anything with content, even a byte, stays.
 */
function removeIfUnused(dir: string): void {
  const unused = (path: string): boolean => {
    try {
      const stat = lstatSync(path);
      if (stat.isDirectory()) return readdirSync(path).every((name) => unused(join(path, name)));
      return stat.isFile() && stat.size === 0;
    } catch {
      return false;
    }
  };
  if (unused(dir)) rmSync(dir, { recursive: true, force: true });
}

function createLogger(file: string | undefined, options: { inetd: boolean }): Logger {
  if (file !== undefined) return createStreamLogger(createWriteStream(file, { flags: 'a', mode: 0o600 }));
  if (options.inetd) return createStreamLogger({ write: () => true });
  return createStreamLogger(process.stderr);
}

function describeSources(file: string, named: boolean): string {
  return named ? `${file} and the command line` : `${file} if present, and the command line`;
}

function readVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

runProgram('stopd', main);
