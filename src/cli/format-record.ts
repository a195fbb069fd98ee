/**
 * How `stopctl redeem` shows an SV evidence record: a text view in the spirit of the paper's
 * figures 8, 10 and 12 (process lists with their sockets and pipes), and the JSON of
 * `redeem --json` (DESIGN "Command-line contract").
 *
 * Everything shown comes from the inspected host and may be hostile: a process can name
 * itself with terminal escape sequences, a request line can hold anything. The text view
 * escapes control and bidirectional-override characters so that reading evidence cannot
 * rewrite the investigator's terminal.
 */
import type { EvidenceRecord, RecordHistory, RecordProcess, SaveCategory } from '../evidence/record.js';
import { AUDIT_UNSET } from '../evidence/history-record.js';
import { tokenHashOf, type TokenHash } from '../evidence/tokens.js';
import type { Endpoint, HostFacts, ProcessFacts, TcpState, UtmpEntry } from '../host/types.js';
import { quote, show, showEndpoint } from './show.js';
import type {
  AnalysisProblem,
  ClosureChannel,
  ClosureIpc,
  ClosureLink,
  ClosurePipe,
  ClosureSocket,
  ClosureTcpSocket,
  UpstreamCandidate,
} from '../trace/types.js';

/** Options of {@link formatRecordText}. */
export interface FormatRecordTextOptions {
  /** Whether the record's bytes hash to its token (`readRecord`'s `verified`). */
  readonly verified: boolean;
  /** The hash the bytes really have, shown when they do not match. */
  readonly actualHash?: string;
}

/**
 * The text view of an SV record: a header (token, time, request and requester, type and
 * SID, the queried connection, the host), the `Primary Processes` and `Resolved Processes`
 * numbered as in the paper's figure 10 (`N: name [pid] parent: ppid`, then user, terminal,
 * start time, command line, `Sockets:` and `Pipes:`), the upstream candidates, notes on
 * missing data, the utmp entries, and a last line with the integrity verdict. Ends with a newline.
 */
export function formatRecordText(token: string, record: EvidenceRecord, options: FormatRecordTextOptions): string {
  const out: string[] = [];
  out.push(`Token       ${token}`);
  out.push(`Time        ${show(record.time)}`);
  out.push(`Request     ${quote(record.request.line)} from ${showEndpoint(record.request.requester)}`);
  out.push(`Type        ${record.type}${record.sid === undefined ? '' : `, SID ${show(record.sid)}`}`);
  if (record.request.clientIp !== undefined) out.push(`Client IP   ${show(record.request.clientIp)}`);
  const connection = record.connection;
  out.push(
    `Connection  ${showEndpoint(connection.local)} -> ${showEndpoint(connection.remote)} ` +
      `(${connection.state}, socket:[${connection.inode}], owner ${showUser(connection.uid, connection.user)})`,
  );
  if (record.history !== undefined) out.push(...formatHistoryLines(record.history));
  out.push(`Host        ${record.host === undefined ? 'not saved' : showHost(record.host)}`);
  out.push(`Saved       ${record.saved.length === 0 ? 'the minimum (request, connection, upstream)' : record.saved.join(', ')}`);
  // Shown before the processes: an empty or cut list must not read as "nobody" (issue 13).
  for (const problem of record.problems ?? []) out.push(`PROBLEM     ${showProblem(problem)}`);

  if (record.processes === undefined) {
    out.push('', 'Processes: not saved');
  } else {
    const primary = record.processes.filter((process) => process.role === 'primary');
    const resolved = record.processes.filter((process) => process.role === 'resolved');
    let number = 0;
    out.push('', 'Primary Processes');
    if (primary.length === 0) {
      const unseen = (record.problems ?? []).some((problem) => problem.code === 'no-visible-holder');
      out.push(unseen ? '  (none visible to stopd: see PROBLEM above)' : '  (none: no process held the socket when it was scanned)');
    }
    for (const process of primary) out.push(...showProcess((number += 1), process));
    if (resolved.length > 0) {
      out.push('Resolved Processes');
      for (const process of resolved) out.push(...showProcess((number += 1), process));
    }
    const channels = record.channels ?? [];
    if (channels.length > 0) {
      out.push('Shared by many (one entry each instead of a link per pair)');
      for (const channel of channels) out.push(`  ${showChannel(channel)}`);
    }
  }

  out.push('');
  if (record.upstream.length === 0) {
    out.push('Upstream candidates: none');
  } else {
    out.push('Upstream candidates:');
    for (const candidate of record.upstream) out.push(`  ${showUpstream(candidate)}`);
  }
  if (record.vanished.length > 0) out.push(`Note: pids ${showPids(record.vanished)} exited during the analysis`);
  if (record.denied.length > 0) {
    out.push(`Note: the descriptors of pids ${showPids(record.denied)} could not be read; their sockets and pipes are missing`);
  }
  if (record.truncated) {
    // Records from before `problems` existed were truncated by the process limit only.
    out.push(
      (record.problems ?? []).length === 0
        ? 'Note: the analysis stopped at the process limit; processes are missing from this record'
        : 'Note: a limit cut this record short (see PROBLEM above); what it lists is true, but not all there was',
    );
  }
  if (record.utmp !== undefined) {
    if (record.utmp.length === 0) {
      out.push('Logins (utmp): none for the users in this record');
    } else {
      out.push('Logins (utmp):');
      for (const entry of record.utmp) out.push(`  ${showUtmp(entry)}`);
    }
  }
  out.push(showIntegrity(options));
  return `${out.join('\n')}\n`;
}

/** Options of {@link formatUnreadableRecordText} and {@link describeUnreadableRecordJson}. */
export interface UnreadableRecordOptions {
  /** Why the file is not a record (`readRecord`'s `parseError`). */
  readonly parseError: string;
  readonly verified: boolean;
  readonly actualHash: string;
}

/**
 * The text view of a record file that exists but is not a readable record (`readRecord`
 * returned `record: undefined`): always an integrity failure, since the daemon only ever
 * writes well-formed records.
 */
export function formatUnreadableRecordText(token: string, options: UnreadableRecordOptions): string {
  const hash = options.verified ? 'its bytes still match the token' : `its hash is ${options.actualHash}, not the token`;
  return `Token       ${token}\nINTEGRITY FAILURE: the record file is not a readable record (${show(options.parseError)}); ${hash}\n`;
}

/** One process of `redeem --json`: the DESIGN fields, and the rest of what the record holds. */
export interface ProcessDescription extends Omit<ProcessFacts, 'cmdline'> {
  readonly user: string | null;
  readonly role: 'primary' | 'resolved';
  readonly ipc: ClosureIpc;
  /** Null when command lines were not saved. */
  readonly cmdline: readonly string[] | null;
  /** Empty when sockets were not saved (see `saved`). */
  readonly sockets: readonly ClosureSocket[];
  /** Empty when pipes were not saved (see `saved`). */
  readonly pipes: readonly ClosurePipe[];
  /** Sockets and pipes not examined (analysis bounds); absent when none were left out. */
  readonly fdsOmitted?: number;
}

/** The JSON of `stopctl redeem --json` for an SV token (DESIGN "Command-line contract"). */
export interface RecordDescription {
  readonly token: string;
  readonly verdict: 'verified' | 'integrity-failure';
  /** The hash the token was checked with, and the hash the record's bytes have. */
  readonly hash: TokenHash;
  readonly actualHash: string;
  readonly version: 1;
  /** `live` or `history` (issue 14); records made before history are `live`. */
  readonly source: 'live' | 'history';
  /** The journal's facts of a `history` record, else null. */
  readonly history: RecordHistory | null;
  readonly type: 'SV' | 'SV_REC';
  readonly sid: string | null;
  readonly time: string;
  readonly request: { readonly line: string; readonly requester: Endpoint; readonly clientIp: string | null };
  readonly connection: {
    readonly local: Endpoint;
    readonly remote: Endpoint;
    readonly state: TcpState;
    readonly inode: number;
    readonly uid: number;
    readonly user: string | null;
  };
  /** Null when host facts were not saved. */
  readonly host: HostFacts | null;
  /** Empty when processes were not saved (see `saved`); primary processes first. */
  readonly processes: readonly ProcessDescription[];
  readonly links: readonly ClosureLink[];
  /** IPC objects with too many holders for pairwise links; empty for records made before channels existed. */
  readonly channels: readonly ClosureChannel[];
  readonly upstream: readonly UpstreamCandidate[];
  readonly vanished: readonly number[];
  readonly denied: readonly number[];
  readonly truncated: boolean;
  /**
   * The record's `problems`: what the analysis could not see or cut short; empty for records
   * made before problems existed. Named apart from redeem's `problems` (integrity problems, as
   * sentences), which the JSON of `stopctl redeem` puts beside it.
   */
  readonly analysisProblems: readonly AnalysisProblem[];
  /** Null when utmp entries were not saved. */
  readonly utmp: readonly UtmpEntry[] | null;
  readonly saved: readonly SaveCategory[];
}

/**
 * The JSON of `stopctl redeem --json` for an SV record: every field of DESIGN's contract
 * (`token`, `type`, `time`, `request`, `connection`, `host`, `processes`), the verdict, and
 * the rest of the record except its salt. Categories that were not saved appear as null (or
 * empty arrays where DESIGN promises an array); `saved` tells which.
 */
export function describeRecordJson(
  token: string,
  record: EvidenceRecord,
  options: { readonly verified: boolean; readonly actualHash: string },
): RecordDescription {
  return {
    token,
    verdict: options.verified ? 'verified' : 'integrity-failure',
    hash: tokenHashOf(token) ?? 'sha256',
    actualHash: options.actualHash,
    version: record.version,
    // Records made before history existed are live (issue 14).
    source: record.source ?? 'live',
    history: record.history ?? null,
    type: record.type,
    sid: record.sid ?? null,
    time: record.time,
    request: { line: record.request.line, requester: record.request.requester, clientIp: record.request.clientIp ?? null },
    connection: record.connection,
    host: record.host ?? null,
    processes: (record.processes ?? []).map(describeProcess),
    links: record.links ?? [],
    channels: record.channels ?? [],
    upstream: record.upstream,
    vanished: record.vanished,
    denied: record.denied,
    truncated: record.truncated,
    analysisProblems: record.problems ?? [],
    utmp: record.utmp ?? null,
    saved: record.saved,
  };
}

function describeProcess(process: RecordProcess): ProcessDescription {
  // Categories not saved appear as null or empty, so every process has the same fields.
  return { ...process, cmdline: process.cmdline ?? null, sockets: process.sockets ?? [], pipes: process.pipes ?? [] };
}

/** The JSON of `redeem --json` for a record file that is not a readable record. */
export function describeUnreadableRecordJson(
  token: string,
  options: UnreadableRecordOptions,
): { token: string; verdict: 'integrity-failure'; hash: TokenHash; actualHash: string; error: string } {
  return {
    token,
    verdict: 'integrity-failure',
    hash: tokenHashOf(token) ?? 'sha256',
    actualHash: options.actualHash,
    error: options.parseError,
  };
}

const IPC_NOTES: Record<Exclude<ClosureIpc, 'followed'>, string> = {
  root: 'IPC not followed: the root of the process tree (everything descends from it)',
  hub: 'IPC not followed: too many sockets and pipes (a logger, bus or proxy)',
  truncated: 'IPC not followed: the process limit was reached',
};

function showProcess(number: number, process: RecordProcess): string[] {
  const lines = [`${number}: ${show(process.name)} [${process.pid}] parent: ${process.ppid}`];
  const effective = process.uid.effective === process.uid.real ? '' : `, effective uid ${process.uid.effective}`;
  lines.push(
    `   user: ${showUser(process.uid.real, process.user)}${effective}  tty: ${process.tty === null ? 'none' : show(process.tty)}` +
      `  started: ${show(process.startTime)}`,
  );
  lines.push(`   priority: ${process.priority}  nice: ${process.nice}  pgid: ${process.pgid}  session: ${process.sid}`);
  if (process.cmdline !== undefined) {
    lines.push(`   command: ${process.cmdline.length === 0 ? '(none)' : process.cmdline.map(showArgument).join(' ')}`);
    const cut = process.cmdlineTruncated;
    if (cut !== undefined) lines.push(`   command cut: its first bytes of ${cut.bytes}; SHA-256 of the whole ${show(cut.sha256)}`);
  }
  if (process.ipc !== 'followed') lines.push(`   ${IPC_NOTES[process.ipc]}`);
  if (process.fdsOmitted !== undefined) {
    lines.push(`   ${process.fdsOmitted} more sockets and pipes not examined (analysis limit): missing below`);
  }
  if (process.sockets !== undefined && process.sockets.length > 0) {
    lines.push('   Sockets:');
    for (const socket of process.sockets) lines.push(`     ${showSocket(socket)}`);
  }
  if (process.pipes !== undefined && process.pipes.length > 0) {
    lines.push('   Pipes:');
    for (const pipe of process.pipes) lines.push(`     ${showPipe(pipe)}`);
  }
  return lines;
}

/**
 * A socket line as in the paper's figures: `->` outbound, `<-` inbound, `<- any:0` for a
 * listener (fig. 8 `localhost:22 <- any:0`), `<>` when the direction is unknown (fig. 12,
 * where Linux could not tell).
 */
function showSocket(socket: ClosureSocket): string {
  switch (socket.kind) {
    case 'tcp':
      return showTcp(socket);
    case 'unix': {
      const family = socket.type === 'stream' ? 'UNIX' : `UNIX ${socket.type}`;
      const path = socket.path === null ? '(unbound)' : show(socket.path);
      const peer = socket.peer === 0 ? 'no peer' : `peer socket:[${socket.peer}]`;
      const notes = [
        ...(socket.peerPids.length > 0 ? [`pids ${showPids(socket.peerPids, socket.peerCount)}`] : []),
        ...(socket.sharedWith.length > 0 ? [`shared with ${showPids(socket.sharedWith, socket.sharedCount)}`] : []),
      ];
      return `${family}: ${path} socket:[${socket.inode}] -> ${peer}${notes.length > 0 ? ` (${notes.join('; ')})` : ''}`;
    }
    case 'other':
      return `OTHER: socket:[${socket.inode}] (not a TCP or UNIX socket, or closed meanwhile)`;
  }
}

function showTcp(socket: ClosureTcpSocket): string {
  const family = socket.local.address.includes(':') ? 'INET6_TCP' : 'INET_TCP';
  const local = showEndpoint(socket.local);
  let ends: string;
  switch (socket.direction) {
    case 'outbound':
      ends = `${local} -> ${showEndpoint(socket.remote)}`;
      break;
    case 'inbound':
      ends = `${local} <- ${showEndpoint(socket.remote)}`;
      break;
    case 'listen':
      ends = `${local} <- any:0`;
      break;
    case 'unknown':
      ends = `${local} <> ${showEndpoint(socket.remote)}`;
      break;
  }
  const notes = [
    ...(socket.queried ? ['queried'] : []),
    ...(socket.state === 'ESTABLISHED' || socket.state === 'LISTEN' ? [] : [socket.state]),
    ...(socket.peerPids.length > 0 ? [`peer pids ${showPids(socket.peerPids, socket.peerCount)}`] : []),
    ...(socket.sharedWith.length > 0 ? [`shared with ${showPids(socket.sharedWith, socket.sharedCount)}`] : []),
  ];
  return `${family}: ${ends}${notes.length > 0 ? `  (${notes.join('; ')})` : ''}`;
}

/** `pipe:[inode] write -> pids 10,11`: the arrow points the way the data flows. */
function showPipe(pipe: ClosurePipe): string {
  const [end, arrow] = pipe.end === 'write' ? ['write', '->'] : pipe.end === 'read' ? ['read', '<-'] : ['read/write', '<>'];
  const others = pipe.otherPids.length > 0 ? `pids ${showPids(pipe.otherPids, pipe.otherCount)}` : 'no other process in this record';
  return `pipe:[${pipe.inode}] ${end} ${arrow} ${others}`;
}

/** `message (code: reason)`, escaped: the record may have been altered. */
export function showProblem(problem: AnalysisProblem): string {
  const why = problem.reason === undefined ? show(problem.code) : `${show(problem.code)}: ${show(problem.reason)}`;
  return `${show(problem.message)} (${why})`;
}

/** Pids shown of a channel's side in the text view (JSON has them all). */
const CHANNEL_PIDS_SHOWN = 20;

/** `pipe:[77] written by 5000 processes (1,2,... and 4980 more) -> read by ...`: a channel in one line. */
function showChannel(channel: ClosureChannel): string {
  const [first = 0, second] = channel.inodes;
  const side = (verb: string, pids: readonly number[]): string =>
    `${verb} ${pids.length} process${pids.length === 1 ? '' : 'es'} (${showPids(pids.slice(0, CHANNEL_PIDS_SHOWN), pids.length)})`;
  switch (channel.kind) {
    case 'pipe':
      return `pipe:[${first}] ${side('written by', channel.from)} -> ${side('read by', channel.to)}`;
    case 'shared':
      return `socket:[${first}] ${side('held by', channel.from)}`;
    case 'tcp':
      return `TCP socket:[${first}] ${side('held by', channel.from)} -> socket:[${second ?? 0}] ${side('held by', channel.to)}`;
    case 'unix':
      return `UNIX socket:[${first}] ${side('held by', channel.from)} <> socket:[${second ?? 0}] ${side('held by', channel.to)}`;
  }
}

function showUpstream(candidate: UpstreamCandidate): string {
  const arrow = candidate.direction === 'inbound' ? '<-' : '<>';
  const notes = [
    candidate.direction,
    ...(candidate.state === 'ESTABLISHED' ? [] : [candidate.state]),
    `socket:[${candidate.inode}]`,
    `pids ${showPids(candidate.pids)}`,
  ];
  return `${showEndpoint(candidate.local)} ${arrow} ${showEndpoint(candidate.remote)}  (${notes.join('; ')})`;
}

function showUtmp(entry: UtmpEntry): string {
  const from = entry.host === '' ? '' : ` from ${show(entry.host)}`;
  const address = entry.address !== null && entry.address !== entry.host ? ` [${show(entry.address)}]` : '';
  return `${show(entry.user)} ${show(entry.line)}${from}${address} at ${show(entry.time)} (${show(entry.type)}, pid ${entry.pid})`;
}

function showHost(host: HostFacts): string {
  const os = host.os === null ? '' : ` (${show(host.os)})`;
  return `${show(host.hostname)}${os}, kernel ${show(host.kernel)}, booted ${show(host.bootTime)}`;
}

function showIntegrity(options: FormatRecordTextOptions): string {
  if (options.verified) return 'Integrity: record matches its token';
  const actual = options.actualHash === undefined ? '' : ` (its hash is ${options.actualHash})`;
  return `INTEGRITY FAILURE: the record does not match its token${actual}; it was altered after it was saved`;
}

/**
 * The lines of a record answered from history (issue 14): it describes a connection that had
 * closed, with processes as the capture read them at connect time, not at the request.
 */
function formatHistoryLines(history: RecordHistory): string[] {
  const login = history.loginuid === AUDIT_UNSET ? 'none' : showUser(history.loginuid, history.loginUser);
  return [
    `Source      HISTORY: the connection was not open when asked; history journal entry ${history.seq}`,
    `Connected   ${show(history.connectedAt)}, established ${history.establishedAt === null ? 'never' : show(history.establishedAt)}, closed ${history.closedAt === null ? 'not seen' : show(history.closedAt)}`,
    `Captured    ${history.capturedAt === null ? 'never: the process had exited before stopd could read it' : `${show(history.capturedAt)} (the processes below are as they were then)`}`,
    `Attributed  pid ${history.pid} ${quote(history.comm)} by the kernel at connect(), uid ${showUser(history.uid, history.user)}, login uid ${login}, session ${history.sessionid === AUDIT_UNSET ? 'none' : history.sessionid}`,
  ];
}

function showUser(uid: number, user: string | null): string {
  return user === null ? `uid ${uid} (no passwd entry)` : `${show(user)} (uid ${uid})`;
}

/** `1,2,3`, or `1,2,3 and 4997 more` when `count` says the list holds only the first. */
function showPids(pids: readonly number[], count?: number): string {
  const more = count !== undefined && count > pids.length ? ` and ${count - pids.length} more` : '';
  return `${pids.join(',')}${more}`;
}

/** An argument of a command line: bare when it has no space, quote or unusual character, else quoted. */
function showArgument(argument: string): string {
  return /^[\w@%+=:,./\-[\]]+$/u.test(argument) ? argument : quote(argument);
}
