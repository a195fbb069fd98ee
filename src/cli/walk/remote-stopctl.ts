/**
 * How the walk reaches a host's store: `stopctl` run there over the investigator's own SSH
 * (no new service, no new credential), or this host's store directly. Each command is one
 * child process, killed when the walk is interrupted or the command takes too long.
 */
import { spawn } from 'node:child_process';
import { UsageError } from '../../errors.js';
import { HostUnreachableError, type CommandOutput, type StoreReader } from './walk-chain.js';

/** The default `--ssh`: never prompt (a walk is unattended), give up on a silent host. */
export const DEFAULT_SSH = 'ssh -o BatchMode=yes -o ConnectTimeout=10';

/** At most this much output is kept from one command (a record with its processes is far less). */
const MAX_OUTPUT_BYTES = 64 * 1024 * 1024;

/** Options of {@link createStoreReader}. */
export interface StoreReaderOptions {
  /** The SSH command and its options, split into words ({@link splitCommandLine}). */
  readonly ssh: readonly string[];
  /** The command line that runs stopctl on the remote host (run by its shell). */
  readonly remoteStopctl: string;
  /** Hosts whose store is this host's (`--local`, or names of this host). */
  readonly localHosts: ReadonlySet<string>;
  /** How this host's stopctl is run: the program and its leading arguments, and the store. */
  readonly localStopctl: readonly string[];
  readonly localStore: string;
  /** A command that runs longer is killed and its host counts as unreachable. */
  readonly timeoutMs: number;
}

/** The walk's {@link StoreReader} over SSH and this host's store. */
export function createStoreReader(options: StoreReaderOptions): StoreReader {
  const access = (host: string): 'ssh' | 'local' => (options.localHosts.has(host.toLowerCase()) ? 'local' : 'ssh');
  return {
    access,
    run(host, args, { signal }) {
      if (access(host) === 'local') {
        const [program = '', ...lead] = options.localStopctl;
        return runCommand([program, ...lead, ...args, '--store', options.localStore], { signal, timeoutMs: options.timeoutMs, what: `stopctl on this host` });
      }
      const [program = 'ssh', ...sshOptions] = options.ssh;
      // ssh joins the words after the host into one line for the remote shell: the remote
      // stopctl is the investigator's text, the arguments are tokens and words we checked.
      const remote = [options.remoteStopctl, ...args].join(' ');
      return runCommand([program, ...sshOptions, '--', host, remote], { signal, timeoutMs: options.timeoutMs, what: `ssh to ${host}` });
    },
  };
}

/** Runs a command to its end, keeping its output; rejects only when it cannot start or takes too long. */
function runCommand(argv: readonly string[], options: { signal: AbortSignal; timeoutMs: number; what: string }): Promise<CommandOutput> {
  const [program = '', ...args] = argv;
  return new Promise((resolve, reject) => {
    const child = spawn(program, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    let bytes = 0;
    let failure: Error | undefined;
    const stop = (error: Error): void => {
      failure ??= error;
      child.kill('SIGTERM');
    };
    const timer = setTimeout(() => stop(new HostUnreachableError(`${options.what} took longer than ${options.timeoutMs / 1000} s (--timeout)`)), options.timeoutMs);
    const onAbort = (): void => stop(new HostUnreachableError(`${options.what} interrupted`));
    options.signal.addEventListener('abort', onAbort, { once: true });
    const keep = (into: Buffer[]) => (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes > MAX_OUTPUT_BYTES) stop(new HostUnreachableError(`${options.what} printed more than ${MAX_OUTPUT_BYTES} bytes`));
      else into.push(chunk);
    };
    child.stdout.on('data', keep(stdout));
    child.stderr.on('data', keep(stderr));
    let settled = false;
    const settle = (outcome: () => void): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      options.signal.removeEventListener('abort', onAbort);
      outcome();
    };
    // A program that cannot start gets 'error' (and maybe 'close') and never 'spawn'.
    child.on('error', (error) => settle(() => reject(failure ?? new HostUnreachableError(`cannot run ${program}: ${error.message}`))));
    child.on('close', (status) => {
      settle(() => {
        if (failure !== undefined) reject(failure);
        else resolve({ status, stdout: Buffer.concat(stdout).toString('utf8'), stderr: Buffer.concat(stderr).toString('utf8') });
      });
    });
  });
}

/**
 * Splits `--ssh "ssh -i 'my key' -o BatchMode=yes"` into words as a POSIX shell would for
 * plain words, single and double quotes and backslashes (no expansions: nothing is run by a
 * shell here).
 */
export function splitCommandLine(text: string): string[] {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  let quote: "'" | '"' | null = null;
  for (let i = 0; i < text.length; i++) {
    const char = text[i] ?? '';
    if (quote === "'") {
      if (char === "'") quote = null;
      else word += char;
    } else if (quote === '"') {
      if (char === '"') quote = null;
      else if (char === '\\' && i + 1 < text.length && '"\\$`'.includes(text[i + 1] ?? '')) word += text[++i];
      else word += char;
    } else if (char === "'" || char === '"') {
      quote = char;
      inWord = true;
    } else if (char === '\\' && i + 1 < text.length) {
      word += text[++i];
      inWord = true;
    } else if (/\s/.test(char)) {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
    } else {
      word += char;
      inWord = true;
    }
  }
  if (quote !== null) throw new UsageError(`--ssh has an unterminated ${quote} quote: ${JSON.stringify(text)}`);
  if (inWord) words.push(word);
  if (words.length === 0) throw new UsageError('--ssh must name a command, for example "ssh -i KEY -o BatchMode=yes"');
  return words;
}
