/**
 * `stopctl trace`: what an investigator takes to the next administrator. The local answer in
 * brief, then each upstream host asked (paper 3.1.3): the port pair asked, the outcome, and
 * the upstream token, which only that host's administrator can redeem.
 */
import type { Redemption } from '../evidence/redeem.js';
import { isReplyEntry, isUpstreamEntry, type UpstreamEntry } from '../evidence/ledger-format.js';
import { describeCommunityId } from '../evidence/community-id.js';
import type { Endpoint } from '../host/types.js';
import type { AnalysisProblem } from '../trace/types.js';
import { showProblem } from './format-record.js';
import { quote, quoteStored, show, showEndpoint, showStored } from './show.js';

/** The JSON of `stopctl trace --json`. */
export interface TraceView {
  readonly token: string;
  readonly verdict: 'verified' | 'unknown-token' | 'integrity-failure';
  readonly problems: readonly string[];
  readonly local: {
    readonly type: string | null;
    readonly sid: string | null;
    readonly time: string;
    readonly request: string;
    readonly requester: Endpoint;
    /** `communityId`: the connection's Community ID (null when an end is not an IP address). */
    readonly connection: { readonly local: Endpoint; readonly remote: Endpoint; readonly communityId: string | null } | null;
    readonly user: string | null;
    readonly uid: number | null;
    /**
     * Where the connection was found (issue 14): `live`, or `history` when it had closed and
     * the answer came from the history journal (then `closedAt` and `capturedAt` say when); null
     * when no connection was found.
     */
    readonly source?: 'live' | 'history' | null;
    readonly closedAt?: string | null;
    readonly capturedAt?: string | null;
    readonly processes: number | null;
    readonly record: boolean;
    readonly processed: boolean;
    /** What the record's analysis could not see (`redeem` shows them too). */
    readonly analysisProblems: readonly AnalysisProblem[];
  } | null;
  readonly upstream: readonly {
    readonly host: string;
    readonly port: number;
    readonly request: string;
    readonly connection: { readonly local: Endpoint; readonly remote: Endpoint; readonly communityId: string | null };
    readonly direction: string;
    readonly outcome: UpstreamEntry['outcome'];
    readonly token: string | null;
    /** The reply line as received. */
    readonly reply: string | null;
    readonly error: string | null;
    readonly message: string | null;
    /** Milliseconds the question took (absent in entries written before it was recorded). */
    readonly elapsedMs: number | null;
    readonly time: string;
  }[];
  /** Upstream hosts found whose outcome is not in the ledger (yet). */
  readonly pending: number;
}

/** Builds the trace view from a redemption (ledger entry, upstream entries, record). */
export function describeTrace(token: string, redemption: Redemption): TraceView {
  const { finding, record } = redemption;
  const entry = finding.entry !== undefined && isReplyEntry(finding.entry) ? finding.entry : undefined;
  const upstream = finding.upstream.filter(isUpstreamEntry).map((u) => ({
    host: u.peer.address,
    port: u.peer.port,
    request: u.request,
    connection: { local: u.connection.local, remote: u.connection.remote, communityId: describeCommunityId(u.connection) },
    direction: u.direction,
    outcome: u.outcome,
    token: u.token ?? null,
    reply: u.reply ?? null,
    error: u.error ?? null,
    message: u.message ?? null,
    elapsedMs: typeof u.elapsedMs === 'number' ? u.elapsedMs : null,
    time: u.time,
  }));
  const verdict = redemption.status === 0 ? 'verified' : redemption.status === 2 ? 'unknown-token' : 'integrity-failure';
  return {
    token,
    verdict,
    problems: redemption.problems,
    local:
      entry === undefined
        ? null
        : {
            type: entry.type ?? null,
            sid: entry.sid ?? null,
            time: entry.time,
            request: entry.request,
            requester: entry.requester,
            connection:
              entry.connection === undefined
                ? null
                : { local: entry.connection.local, remote: entry.connection.remote, communityId: describeCommunityId(entry.connection) },
            user: entry.user ?? null,
            uid: entry.uid ?? null,
            source: entry.source ?? (entry.connection === undefined ? null : 'live'),
            closedAt: record?.record?.history?.closedAt ?? entry.closedAt ?? null,
            capturedAt: record?.record?.history?.capturedAt ?? null,
            processes: record?.record?.processes?.length ?? entry.processes ?? null,
            record: record !== undefined,
            processed: entry.processed !== false,
            analysisProblems: record?.record?.problems ?? [],
          },
    upstream,
    pending: Math.max(0, (entry?.upstream ?? 0) - upstream.length),
  };
}

/** Why a token may be unknown, said after the store that was read (`redeem` and `trace`). */
export const UNKNOWN_TOKEN_HINT = 'a token is known only in the store of the daemon that issued it (name that store with --store)';

/** The text of `stopctl trace`. */
export function formatTraceText(view: TraceView): string {
  const out: string[] = [`Token       ${view.token}`];
  const local = view.local;
  if (local === null) {
    // Nothing local, so nothing upstream to report either: saying "the chain starts here"
    // would claim what this store cannot know.
    if (view.verdict === 'unknown-token') {
      for (const problem of view.problems) out.push(`Unknown     ${problem}; ${UNKNOWN_TOKEN_HINT}`);
    } else {
      out.push("Local       not in this store's ledger");
      for (const problem of view.problems) out.push(`INTEGRITY FAILURE: ${problem}`);
    }
    return out.join('\n') + '\n';
  }
  out.push(`Request     ${quote(local.request)} from ${showEndpoint(local.requester)} at ${local.time}`);
  out.push(`Type        ${show(local.type ?? 'unparsed')}${local.sid === null ? '' : `, SID ${show(local.sid)}`}`);
  if (local.connection !== null) {
    out.push(`Connection  ${showEndpoint(local.connection.local)} -> ${showEndpoint(local.connection.remote)}`);
    if (local.connection.communityId !== null) out.push(`Community   ${local.connection.communityId}`);
  }
  if (local.uid !== null) out.push(`User        ${local.user === null ? '(no passwd entry)' : show(local.user)} (uid ${local.uid})`);
  if (local.source === 'history') {
    out.push(
      `Source      HISTORY: answered from the history journal, the connection closed ${local.closedAt === null || local.closedAt === undefined ? '(close not seen)' : show(local.closedAt)}` +
        `${local.capturedAt === null || local.capturedAt === undefined ? '' : `, processes captured ${show(local.capturedAt)}`}`,
    );
  }
  if (local.processes !== null) out.push(`Processes   ${local.processes}${local.record ? ' (see stopctl redeem for the record)' : ''}`);
  for (const problem of local.analysisProblems) out.push(`PROBLEM     ${showProblem(problem)}`);
  if (!local.processed) out.push('Processed   no: a repeated or over-budget recursive request (paper 3.1.4)');
  if (view.upstream.length === 0 && view.pending === 0) {
    out.push('', 'Upstream    none: no inbound connection behind this one (the chain starts here, or was not recursive)');
  } else {
    out.push('', `Upstream hosts asked (${view.upstream.length}${view.pending > 0 ? `, ${view.pending} not answered yet` : ''}):`);
    for (const u of view.upstream) {
      out.push(`  ${showEndpoint({ address: u.host, port: u.port })}  asked ${quote(u.request)}`);
      out.push(`      about ${showEndpoint(u.connection.remote)} -> ${showEndpoint(u.connection.local)} (${show(u.direction)})`);
      if (u.connection.communityId !== null) out.push(`      community ID ${u.connection.communityId}`);
      out.push(`      ${describeOutcome(u)}${u.elapsedMs === null ? '' : ` (${u.elapsedMs} ms)`}`);
    }
  }
  for (const problem of view.problems) out.push(`INTEGRITY FAILURE: ${problem}`);
  return out.join('\n') + '\n';
}

/**
 * One line on how an upstream question ended. Every field came from the ledger, and most of
 * them from the upstream host (which may be hostile): all go through {@link show} or
 * {@link showStored}.
 */
function describeOutcome(u: TraceView['upstream'][number]): string {
  // The daemon stores upstream text escaped (daemon/upstream.ts escapeUpstreamText).
  const message = showStored(u.message ?? '');
  const reply = quoteStored(u.reply ?? '');
  switch (u.outcome) {
    case 'token':
      return `token ${show(u.token ?? '?')}: take it to the administrator of ${show(u.host)}`;
    case 'user':
      return `answered a user name (a plain IDENT daemon?): ${reply}`;
    case 'error':
      return `error ${showStored(u.error ?? '?')}: the host does not vouch for this connection`;
    case 'refused':
      return `refused: no STOP daemon listens there (partial deployment, paper 6.1); the trace stops here`;
    case 'timeout':
      return `no answer in time: ${message}`;
    case 'unreachable':
      return `unreachable: ${message}`;
    case 'protocol':
      return `answered something that is not a STOP reply: ${message}`;
    case 'line-too-long':
      return `answered a line too long to be a reply, not read further: ${message}`;
    case 'bad-token':
      return `answered a token that is not a plain token, not kept: ${message}; reply ${reply}`;
    case 'wrong-ports':
      return `answered for another connection, not kept: ${message}; reply ${reply}`;
    case 'skipped':
      return `not asked: ${message}`;
    default:
      return `outcome ${quote(String(u.outcome))}: ${message}`;
  }
}
