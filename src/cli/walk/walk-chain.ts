/**
 * The walk itself: breadth-first from the start token, each hop read and verified on its own
 * host through a {@link StoreReader} (SSH or this host's store: remote-stopctl.ts), following
 * every upstream token of a verified hop, never a (host, token) twice, within the bounds on
 * hops and hosts. Pure apart from the reader, so unit tests walk hosts made of JSON.
 */
import { isTokenShaped } from '../../evidence/tokens.js';
import { checkLedger, checkLink, checkRecord, checkStartLink, isVerified, readIssuedFor, summarizeRedeem } from './walk-checks.js';
import {
  WALK_DOCUMENT_VERSION,
  type WalkDocument,
  type WalkEnd,
  type WalkHop,
  type WalkStart,
  type WalkUpstreamEntry,
} from './walk-document.js';

/** What one `stopctl` command printed on a host. */
export interface CommandOutput {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `stopctl ARGS` where a host's store lives; rejects with {@link HostUnreachableError} when it cannot. */
export interface StoreReader {
  /** How the host's store is reached. */
  access(host: string): 'ssh' | 'local';
  /** Runs `stopctl` with `args` (`redeem TOKEN --json`, ...) for `host`. */
  run(host: string, args: readonly string[], options: { signal: AbortSignal }): Promise<CommandOutput>;
}

/** A host whose store the walk could not read: the branch ends there, with this reason. */
export class HostUnreachableError extends Error {
  override readonly name = 'HostUnreachableError';
}

/** Counts for the progress line. */
export interface WalkProgress {
  readonly reached: number;
  readonly verified: number;
  readonly failed: number;
  readonly pending: number;
  readonly current: string | null;
}

/** Options of {@link walkChain}. */
export interface WalkOptions {
  readonly reader: StoreReader;
  /** Hops from the start the walk may go (the start is depth 0). */
  readonly maxHops: number;
  /** Distinct hosts the walk may reach. */
  readonly maxHosts: number;
  /** Aborted by Ctrl-C: the walk stops and returns what it gathered. */
  readonly signal: AbortSignal;
  /** How long to wait for a host's upstream questions that have no outcome in its ledger yet. */
  readonly settleMs?: number;
  /** Waits between re-reads of a trace with pending questions (injectable for tests). */
  readonly wait?: (ms: number, signal: AbortSignal) => Promise<void>;
  readonly onProgress?: (progress: WalkProgress) => void;
  readonly now?: () => Date;
}

interface Pending {
  readonly host: string;
  readonly token: string;
  readonly depth: number;
  readonly parent: number | null;
  readonly via: WalkUpstreamEntry | null;
}

/** Walks from `start`; resolves with the whole document, also when interrupted. */
export async function walkChain(start: WalkStart, options: WalkOptions): Promise<WalkDocument> {
  const now = options.now ?? ((): Date => new Date());
  const startedAt = now().toISOString();
  const hops: WalkHop[] = [];
  const ends: WalkEnd[] = [];
  const seen = new Set<string>([visitKey(start.host, start.token)]);
  const hosts = new Set<string>([start.host]);
  const queue: Pending[] = [{ host: start.host, token: start.token, depth: 0, parent: null, via: null }];
  const report = (current: string | null): void =>
    options.onProgress?.({
      reached: hops.length,
      verified: hops.filter((hop) => hop.verified).length,
      failed: hops.filter((hop) => !hop.verified).length + ends.filter((end) => end.reason === 'unreachable').length,
      pending: queue.length,
      current,
    });
  for (let next = queue.shift(); next !== undefined; next = queue.shift()) {
    if (options.signal.aborted) {
      ends.push(interruptedEnd(next));
      continue;
    }
    report(next.host);
    const began = Date.now();
    let read: HostReading;
    try {
      read = await readHost(next, options);
    } catch (error) {
      if (options.signal.aborted) ends.push(interruptedEnd(next));
      else if (error instanceof HostUnreachableError) {
        ends.push({
          hop: next.parent,
          reason: 'unreachable',
          host: next.host,
          token: next.token,
          message: `${error.message}; take token ${next.token} to the administrator of ${next.host}`,
        });
      } else throw error;
      continue;
    }
    const issued = readIssuedFor(read.redeem);
    const checks = {
      record: checkRecord(read.redeem, read.status.redeem),
      ledger: checkLedger(read.verify, read.status.verify),
      link: next.via === null ? checkStartLink(start, issued) : checkLink(next.via, issued),
    };
    const hop: WalkHop = {
      index: hops.length,
      host: next.host,
      token: next.token,
      depth: next.depth,
      parent: next.parent,
      via: next.via,
      access: options.reader.access(next.host),
      verified: isVerified(checks),
      checks,
      summary: summarizeRedeem(read.redeem),
      redeem: read.redeem,
      upstream: read.upstream,
      verify: read.verify,
      exitStatus: read.status,
      elapsedMs: Date.now() - began,
    };
    hops.push(hop);
    planNext(hop, read.pending, { queue, ends, seen, hosts, maxHops: options.maxHops, maxHosts: options.maxHosts });
  }
  report(null);
  const interrupted = options.signal.aborted;
  return {
    version: WALK_DOCUMENT_VERSION,
    tool: 'stopctl walk',
    startedAt,
    finishedAt: now().toISOString(),
    start,
    limits: { maxHops: options.maxHops, maxHosts: options.maxHosts },
    hops,
    ends,
    interrupted,
    verdict: decideVerdict(hops, ends, interrupted),
  };
}

/** The walk's verdict: `failed` beats `incomplete` beats `verified`. */
export function decideVerdict(hops: readonly WalkHop[], ends: readonly WalkEnd[], interrupted: boolean): WalkDocument['verdict'] {
  if (hops.some((hop) => !hop.verified)) return 'failed';
  const cut = ends.some((end) => !['origin', 'upstream-outcome', 'already-visited'].includes(end.reason));
  return interrupted || cut || hops.length === 0 ? 'incomplete' : 'verified';
}

/** Where the hop's branch goes next: each upstream token to follow, or how the branch ended. */
function planNext(
  hop: WalkHop,
  pending: number,
  state: { queue: Pending[]; ends: WalkEnd[]; seen: Set<string>; hosts: Set<string>; maxHops: number; maxHosts: number },
): void {
  const { queue, ends, seen, hosts } = state;
  const end = (reason: WalkEnd['reason'], host: string, token: string | null, message: string): void => {
    ends.push({ hop: hop.index, reason, host, token, message });
  };
  if (hop.checks.record.ok !== true && hop.redeem?.verdict === 'unknown-token') {
    end('unknown-token', hop.host, hop.token, `${hop.host} does not know token ${hop.token}: ${hop.checks.record.detail}`);
    return;
  }
  if (hop.upstream.length === 0 && pending === 0) {
    end('origin', hop.host, null, `the chain starts at ${hop.host}: nothing upstream was asked (no inbound connection behind this one, or not recursive)`);
  }
  if (pending > 0) {
    end('pending', hop.host, null, `${pending} upstream question${pending === 1 ? '' : 's'} of ${hop.host} had no outcome in its ledger yet; walk again later`);
  }
  for (const u of hop.upstream) {
    if (u.outcome !== 'token' || u.token === null) {
      end('upstream-outcome', u.host, null, `${hop.host} asked ${u.host}:${u.port} and got ${u.outcome}${u.message === null ? '' : `: ${u.message}`}`);
      continue;
    }
    if (!hop.verified) {
      end('verification-failed', u.host, u.token, `not followed: ${hop.host} failed verification, so its upstream token is not trusted; take ${u.token} to the administrator of ${u.host} if you want it anyway`);
      continue;
    }
    if (!isTokenShaped(u.token) || !isWalkableHost(u.host)) {
      end('upstream-outcome', u.host, null, `${hop.host} recorded an upstream host or token the walk will not pass to SSH: ${JSON.stringify(u.host)} ${JSON.stringify(u.token)}`);
      continue;
    }
    const key = visitKey(u.host, u.token);
    if (seen.has(key)) {
      end('already-visited', u.host, u.token, `${u.host} with token ${u.token} is walked on another branch`);
      continue;
    }
    if (hop.depth + 1 > state.maxHops) {
      end('hop-limit', u.host, u.token, `not followed: --max-hops ${state.maxHops} reached; take ${u.token} to ${u.host}, or walk again from there`);
      continue;
    }
    if (!hosts.has(u.host) && hosts.size >= state.maxHosts) {
      end('host-limit', u.host, u.token, `not followed: --max-hosts ${state.maxHosts} reached; take ${u.token} to ${u.host}, or walk again from there`);
      continue;
    }
    seen.add(key);
    hosts.add(u.host);
    queue.push({ host: u.host, token: u.token, depth: hop.depth + 1, parent: hop.index, via: u });
  }
}

/**
 * A host name the walk passes to SSH as an argument: an address, or a DNS name. Upstream hosts
 * come from a ledger that may have been written by a hostile host: nothing starting with '-'
 * (an SSH option) or holding shell characters gets through.
 */
export function isWalkableHost(host: string): boolean {
  if (/^[0-9a-fA-F:.]+$/.test(host) && host.includes(':')) return true;
  return /^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$/.test(host);
}

function visitKey(host: string, token: string): string {
  return `${host.toLowerCase()} ${token}`;
}

function interruptedEnd(pending: Pending): WalkEnd {
  return {
    hop: pending.parent,
    reason: 'interrupted',
    host: pending.host,
    token: pending.token,
    message: `interrupted before ${pending.host} was reached; take token ${pending.token} there, or walk again`,
  };
}

interface HostReading {
  readonly redeem: Readonly<Record<string, unknown>> | null;
  readonly upstream: readonly WalkUpstreamEntry[];
  readonly pending: number;
  readonly verify: Readonly<Record<string, unknown>> | null;
  readonly status: { readonly redeem: number | null; readonly trace: number | null; readonly verify: number | null };
}

/**
 * `redeem`, `trace` and `verify` on the host. A trace whose upstream questions have no outcome
 * yet (the host replied first and asks upstream afterwards, DESIGN duty 6) is read again until
 * they do, for at most `settleMs`.
 */
async function readHost(pending: Pending, options: WalkOptions): Promise<HostReading> {
  const { reader, signal } = options;
  // Three independent commands: run side by side, each host costs one round trip, not three.
  const [redeem, first, verifyRun] = await Promise.allSettled([
    runJson(reader, pending.host, ['redeem', pending.token, '--json'], signal),
    runJson(reader, pending.host, ['trace', pending.token, '--json'], signal),
    runJson(reader, pending.host, ['verify', '--json'], signal),
  ]).then((results) => results.map((result) => {
    if (result.status === 'rejected') throw result.reason;
    return result.value;
  }) as [JsonOutput, JsonOutput, JsonOutput]);
  let trace = first;
  const deadline = Date.now() + (options.settleMs ?? 10_000);
  const wait = options.wait ?? waitFor;
  while (pendingOf(trace.json) > 0 && Date.now() < deadline && !signal.aborted) {
    await wait(250, signal);
    trace = await runJson(reader, pending.host, ['trace', pending.token, '--json'], signal);
  }
  const verify = verifyRun;
  const upstream = Array.isArray(trace.json?.upstream) ? (trace.json.upstream as WalkUpstreamEntry[]) : [];
  return {
    redeem: redeem.json,
    upstream,
    pending: pendingOf(trace.json),
    verify: verify.json,
    status: { redeem: redeem.status, trace: trace.status, verify: verify.status },
  };
}

function pendingOf(trace: Readonly<Record<string, unknown>> | null): number {
  return typeof trace?.pending === 'number' ? trace.pending : 0;
}

interface JsonOutput {
  readonly json: Readonly<Record<string, unknown>> | null;
  readonly status: number | null;
}

/**
 * One command's JSON. `stopctl` prints JSON with exit 0, 2 (unknown token) and 3 (integrity
 * failure); anything else (1: no store, 64, 127: no stopctl, 255: SSH failed) means the
 * host's store could not be read.
 */
async function runJson(
  reader: StoreReader,
  host: string,
  args: readonly string[],
  signal: AbortSignal,
): Promise<JsonOutput> {
  const output = await reader.run(host, args, { signal });
  if (output.status !== 0 && output.status !== 2 && output.status !== 3) {
    const why = lastLine(output.stderr) || `exit status ${output.status ?? 'none (killed)'}`;
    throw new HostUnreachableError(`stopctl ${args[0] ?? ''} on ${host} failed: ${why}`);
  }
  try {
    const json = JSON.parse(output.stdout) as unknown;
    if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new Error('not an object');
    return { json: json as Readonly<Record<string, unknown>>, status: output.status };
  } catch {
    throw new HostUnreachableError(`stopctl ${args[0] ?? ''} on ${host} printed no JSON document (is --remote-stopctl a stopctl with --json?)`);
  }
}

function lastLine(text: string): string {
  return text.trim().split('\n').at(-1)?.trim() ?? '';
}

function waitFor(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
  });
}
