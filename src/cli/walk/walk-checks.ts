/**
 * The walk's verdicts on one hop, as pure functions of what the host's own `stopctl` printed:
 * the record against its token (`redeem`), the whole store (`verify`), and the link from the
 * previous hop (paper 3.1.3: the upstream token host N recorded must be the one host N+1
 * issued for the same request, SID and connection).
 */
import { describeCommunityId } from '../../evidence/community-id.js';
import type { WalkCheck, WalkEndpoint, WalkHop, WalkKeyProcess, WalkStart, WalkUpstreamEntry } from './walk-document.js';

type Json = Readonly<Record<string, unknown>>;

/** At most this many processes are named in a hop's summary (the record has them all). */
export const MAX_KEY_PROCESSES = 6;

/** The record check: `redeem` found the token and its record (or ID entry) hashes to it. */
export function checkRecord(redeem: Json | null, status: number | null): WalkCheck {
  if (redeem === null) return { ok: false, detail: `redeem printed no JSON (exit status ${status ?? 'none'})` };
  const verdict = redeem.verdict;
  if (verdict === 'verified') {
    return { ok: true, detail: redeem.recordAbsent === undefined ? 'the record hashes to its token' : 'the ledger entry is intact (the record itself was pruned)' };
  }
  const problems = Array.isArray(redeem.problems) ? redeem.problems.filter((p): p is string => typeof p === 'string') : [];
  if (verdict === 'unknown-token') return { ok: false, detail: `the host does not know this token${problems[0] === undefined ? '' : `: ${problems[0]}`}` };
  return { ok: false, detail: `integrity failure: ${problems.join('; ') || String(verdict)}` };
}

/** The ledger check: `verify` found the store clean (records against tokens, the hash chain). */
export function checkLedger(verify: Json | null, status: number | null): WalkCheck {
  if (verify === null) return { ok: false, detail: `verify printed no JSON (exit status ${status ?? 'none'})` };
  if (verify.clean === true) return { ok: true, detail: 'the store verified clean (every record and the ledger chain)' };
  const findings = Array.isArray(verify.findings) ? verify.findings : [];
  const first = findings[0] as { kind?: unknown; where?: unknown; detail?: unknown } | undefined;
  const sample = first === undefined ? '' : `, first: ${String(first.kind)} ${String(first.where)}: ${String(first.detail)}`;
  return { ok: false, detail: `the store has ${findings.length} verification finding${findings.length === 1 ? '' : 's'}${sample}` };
}

/** What identifies the request and connection a token was issued for, read from `redeem --json`. */
export interface IssuedFor {
  readonly request: string | null;
  readonly type: string | null;
  readonly sid: string | null;
  readonly local: WalkEndpoint | null;
  readonly remote: WalkEndpoint | null;
}

/** Reads {@link IssuedFor} from a `redeem --json` document (SV and ID tokens differ in shape). */
export function readIssuedFor(redeem: Json | null): IssuedFor {
  const request = asObject(redeem?.request);
  const connection = asObject(redeem?.connection);
  const line = typeof request?.line === 'string' ? request.line : null;
  const parsed = line === null ? null : parseRequestLine(line);
  return {
    request: line,
    type: typeof redeem?.type === 'string' ? redeem.type : (parsed?.type ?? null),
    sid: typeof redeem?.sid === 'string' ? redeem.sid : (parsed?.sid ?? null),
    local: asEndpoint(connection?.local),
    remote: asEndpoint(connection?.remote),
  };
}

/**
 * The link check of a hop reached through `via`, an upstream entry of its parent: the token
 * must have been issued for the very request the parent sent (same ports, type and SID) about
 * the same connection seen from the other end (the parent's local end is this host's remote).
 */
export function checkLink(via: WalkUpstreamEntry, issued: IssuedFor): WalkCheck {
  if (issued.request === null) return { ok: false, detail: 'the host shows no request for this token, so the link cannot be checked' };
  const problems: string[] = [];
  if (normalizeLine(issued.request) !== normalizeLine(via.request)) {
    problems.push(`the token was issued for ${JSON.stringify(issued.request)}, but the previous host asked ${JSON.stringify(via.request)}`);
  }
  if (issued.local === null || issued.remote === null) problems.push('the host recorded no connection for this token');
  else {
    if (!sameEndpoint(issued.local, via.connection.remote)) {
      problems.push(`its connection starts at ${showEndpoint(issued.local)}, the previous host's ends at ${showEndpoint(via.connection.remote)}`);
    }
    if (!sameEndpoint(issued.remote, via.connection.local)) {
      problems.push(`its connection goes to ${showEndpoint(issued.remote)}, the previous host's was at ${showEndpoint(via.connection.local)}`);
    }
  }
  if (problems.length > 0) return { ok: false, detail: problems.join('; ') };
  const sid = issued.sid === null ? '' : `, SID ${issued.sid}`;
  return { ok: true, detail: `issued for the previous host's request ${JSON.stringify(via.request)}${sid} about the same connection` };
}

/**
 * The link check of the start hop. With `--ask`, the reply we received named this token for
 * the request we sent about the connection we named; a start token from the command line has
 * nothing to link to (null).
 */
export function checkStartLink(start: WalkStart, issued: IssuedFor): WalkCheck {
  const ask = start.ask;
  if (ask === undefined) return { ok: null, detail: 'the start token, given on the command line: nothing before it to link it to' };
  const problems: string[] = [];
  if (issued.request === null) return { ok: false, detail: 'the host shows no request for this token, so the link cannot be checked' };
  const line = normalizeLine(issued.request);
  if (line !== normalizeLine(ask.request)) problems.push(`the token was issued for ${JSON.stringify(issued.request)}, but we asked ${JSON.stringify(ask.request)}`);
  const { local, remote } = ask.connection;
  if (local !== null && (issued.local === null || issued.local.port !== local.port || (local.address !== '' && !sameAddress(issued.local.address, local.address)))) {
    problems.push(`its connection does not start at port ${local.port} as asked`);
  }
  if (remote !== null && (issued.remote === null || issued.remote.port !== remote.port || !sameAddress(issued.remote.address, remote.address))) {
    problems.push(`its connection does not go to ${showEndpoint(remote)} as asked`);
  }
  if (problems.length > 0) return { ok: false, detail: problems.join('; ') };
  return { ok: true, detail: `the reply to our request ${JSON.stringify(ask.request)} about this connection` };
}

/** A hop is verified when the record and the store check out and the link (where one applies) does. */
export function isVerified(checks: WalkHop['checks']): boolean {
  return checks.record.ok === true && checks.ledger.ok === true && checks.link.ok !== false;
}

/** The story's summary of a hop: its connection, user and the processes worth naming. */
export function summarizeRedeem(redeem: Json | null): WalkHop['summary'] {
  if (redeem === null || redeem.verdict === 'unknown-token') return null;
  const issued = readIssuedFor(redeem);
  const connection = asObject(redeem.connection);
  const processes = Array.isArray(redeem.processes) ? redeem.processes.map(asObject).filter((p) => p !== undefined) : [];
  const host = asObject(redeem.host);
  return {
    type: issued.type,
    sid: issued.sid,
    time: typeof redeem.time === 'string' ? redeem.time : null,
    connection: issued.local === null || issued.remote === null ? null : { local: issued.local, remote: issued.remote },
    user: typeof connection?.user === 'string' ? connection.user : typeof redeem.user === 'string' ? redeem.user : null,
    uid: typeof connection?.uid === 'number' ? connection.uid : typeof redeem.uid === 'number' ? redeem.uid : null,
    hostname: typeof host?.hostname === 'string' ? host.hostname : null,
    keyProcesses: pickKeyProcesses(processes),
    ...withCommunityId(issued.local, issued.remote),
  };
}

/** The connection's Community ID (worked out from its ends, whatever the record says), when it has one. */
function withCommunityId(local: WalkEndpoint | null, remote: WalkEndpoint | null): { communityId?: string } {
  const communityId = local === null || remote === null ? null : describeCommunityId({ local, remote });
  return communityId === null ? {} : { communityId };
}

/**
 * The processes to name: the holders of the queried socket and the processes reached through
 * IPC come first (the record's roles), init and kernel threads are left out, and each name once.
 */
function pickKeyProcesses(processes: readonly Json[]): WalkKeyProcess[] {
  const ranked = processes
    .filter((p) => typeof p.pid === 'number' && p.pid !== 1)
    .map((p) => ({ p, holder: Array.isArray(p.sockets) && p.sockets.length > 0 ? 0 : 1 }))
    .sort((a, b) => a.holder - b.holder);
  return ranked.slice(0, MAX_KEY_PROCESSES).map(({ p }) => {
    const uid = asObject(p.uid);
    return {
      pid: p.pid as number,
      name: typeof p.name === 'string' ? p.name : '?',
      user: typeof p.user === 'string' ? p.user : null,
      uid: typeof uid?.real === 'number' ? uid.real : null,
      role: typeof p.role === 'string' ? p.role : null,
      cmdline: typeof p.cmdline === 'string' ? p.cmdline : Array.isArray(p.cmdline) ? p.cmdline.map(String).join(' ') : null,
    };
  });
}

/** `cl,sv:TYPE[:sid][:ip]`: the type and SID of a request line (enough for the walk's checks). */
export function parseRequestLine(line: string): { type: string; sid: string | null } | null {
  const fields = line.split(':').map((field) => field.trim());
  const type = fields[1];
  if (type === undefined || type === '') return { type: 'ID', sid: null };
  const recursive = type === 'ID_REC' || type === 'SV_REC';
  return { type, sid: recursive ? (fields[2] ?? null) : null };
}

/** Request lines compared without the spaces RFC 1413 allows around every field. */
function normalizeLine(line: string): string {
  return line.replace(/[ \t\r\n]/g, '');
}

/** Addresses compared with IPv4-mapped IPv6 (`::ffff:a.b.c.d`) equal to IPv4, as the host view does. */
export function sameAddress(a: string, b: string): boolean {
  const plain = (text: string): string => text.toLowerCase().replace(/^\[|\]$/g, '').replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/, '$1');
  return plain(a) === plain(b);
}

function sameEndpoint(a: WalkEndpoint, b: WalkEndpoint): boolean {
  return a.port === b.port && sameAddress(a.address, b.address);
}

function showEndpoint(endpoint: WalkEndpoint): string {
  return endpoint.address.includes(':') ? `[${endpoint.address}]:${endpoint.port}` : `${endpoint.address}:${endpoint.port}`;
}

function asObject(value: unknown): Json | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Json) : undefined;
}

function asEndpoint(value: unknown): WalkEndpoint | null {
  const object = asObject(value);
  return typeof object?.address === 'string' && typeof object.port === 'number' ? { address: object.address, port: object.port } : null;
}
