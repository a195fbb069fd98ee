/**
 * A walk document for tests of the walk's renderers (HTML, CASE): two hops whose records are
 * real records built from the paper's figures 7 and 9 (`trace/figures.ts`), redeemed as
 * `stopctl redeem --json` prints them. Not shipped (package.json `files`).
 */
import { buildRecord, formatRecordBytes, type EvidenceRecord } from '../../evidence/record.js';
import { hashToken } from '../../evidence/tokens.js';
import { resolveClosure } from '../../trace/index.js';
import { NEXT_HOST, PREVIOUS_HOST, THIS_HOST, buildFigure7, buildFigure9 } from '../../trace/figures.js';
import { describeRecordJson } from '../format-record.js';
import { summarizeRedeem } from './walk-checks.js';
import type { WalkDocument, WalkHop } from './walk-document.js';

/** Options of {@link buildWalkFigure}. */
export interface WalkFigureOptions {
  /** Appended to every name a host controls (host names, process names, users), to test escaping. */
  readonly evil?: string;
  /** Marks the second hop as failed verification (a tampered record). */
  readonly tampered?: boolean;
}

/** Hop 1 on THIS_HOST (figure 7: alice's telnet), hop 2 on PREVIOUS_HOST (figure 9), then an unreachable end. */
export function buildWalkFigure(options: WalkFigureOptions = {}): WalkDocument {
  const evil = options.evil ?? '';
  const first = recordOf(buildFigure7(), evil, '968,23:SV_REC:4242');
  const second = recordOf(buildFigure9(), evil, '4000,22:SV_REC:4242');
  const hop1 = hopOf(0, THIS_HOST, first, { parent: null, verified: true });
  const via = {
    host: PREVIOUS_HOST,
    port: 113,
    request: `${first.record.upstream[0]?.remote.port ?? 616},${first.record.upstream[0]?.local.port ?? 22}:SV_REC:4242`,
    connection: {
      local: first.record.upstream[0]?.local ?? { address: THIS_HOST, port: 22 },
      remote: first.record.upstream[0]?.remote ?? { address: PREVIOUS_HOST, port: 616 },
      communityId: first.record.upstream[0]?.communityId ?? null,
    },
    direction: 'inbound',
    outcome: 'token' as const,
    token: second.token,
    reply: `616,22:USERID:OTHER:${second.token}`,
    error: null,
    message: null,
    elapsedMs: 4,
    time: '2024-01-02T10:00:01.000Z',
  };
  const hop2 = hopOf(1, PREVIOUS_HOST + evil, second, { parent: 0, verified: options.tampered !== true, via });
  const hops: WalkHop[] = [{ ...hop1, upstream: [via] }, hop2];
  const end = {
    hop: 1,
    reason: 'unreachable' as const,
    host: `192.0.2.99${evil}`,
    token: 'ef'.repeat(32),
    message: `ssh to 192.0.2.99${evil} failed: Connection refused; take the token to its administrator`,
  };
  return {
    version: 1,
    tool: 'stopctl walk',
    startedAt: '2024-01-02T10:05:00.000Z',
    finishedAt: '2024-01-02T10:05:03.000Z',
    start: { host: THIS_HOST, token: first.token },
    limits: { maxHops: 16, maxHosts: 32 },
    hops,
    ends: [end],
    interrupted: false,
    verdict: options.tampered === true ? 'failed' : 'incomplete',
  };
}

function recordOf(fixture: ReturnType<typeof buildFigure7> | ReturnType<typeof buildFigure9>, evil: string, line: string): { record: EvidenceRecord; token: string } {
  const closure = resolveClosure(fixture.host, { socket: fixture.socket });
  const named = { ...closure, processes: closure.processes.map((process) => ({ ...process, name: process.name + evil })) };
  const record = buildRecord({
    closure: named,
    request: { line, requester: { address: NEXT_HOST, port: 40123 } },
    userName: (uid) => (uid === 0 ? 'root' : uid === 1000 ? `alice${evil}` : null),
    host: { hostname: `host.example${evil}`, bootTime: '2024-01-01T00:00:00.000Z', kernel: '6.1.0-test', os: 'Debian GNU/Linux 12 (bookworm)' },
    utmp: [],
    denied: [],
    save: ['processes', 'cmdline', 'sockets', 'pipes', 'utmp', 'host'],
    type: 'SV_REC',
    sid: '4242',
    now: new Date('2024-01-02T10:00:00Z'),
  });
  return { record, token: hashToken(formatRecordBytes(record)) };
}

function hopOf(
  index: number,
  host: string,
  built: { record: EvidenceRecord; token: string },
  options: { parent: number | null; verified: boolean; via?: WalkHop['via'] },
): WalkHop {
  const description = describeRecordJson(built.token, built.record, { verified: options.verified, actualHash: built.token });
  const redeem = JSON.parse(JSON.stringify({ ...description, problems: options.verified ? [] : ['the record was altered'] })) as Record<string, unknown>;
  const ok = { ok: true, detail: 'checked' };
  return {
    index,
    host,
    token: built.token,
    depth: index,
    parent: options.parent,
    via: options.via ?? null,
    access: index === 0 ? 'local' : 'ssh',
    verified: options.verified,
    checks: {
      record: options.verified ? ok : { ok: false, detail: "the record's bytes hash to another token" },
      ledger: ok,
      link: options.parent === null ? { ok: null, detail: 'the start' } : ok,
    },
    summary: summarizeRedeem(redeem),
    redeem,
    upstream: [],
    verify: { verdict: options.verified ? 'clean' : 'tampered' },
    exitStatus: { redeem: options.verified ? 0 : 3, trace: 0, verify: options.verified ? 0 : 3 },
    elapsedMs: 12,
  };
}
