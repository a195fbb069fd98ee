/**
 * SV evidence records built from the history journal (issue 14, "Answering from history"): a
 * request about a connection that had closed gets a record of the same version and shape as a
 * live one, hashed the same way ({@link formatRecordBytes}), that says `source: history` and
 * holds what the journal captured while the connection existed.
 *
 * How it differs from a live closure (README "Answering from history"): the processes are the
 * connecting process and its ancestors as read at connect time (none when it had exited
 * before stopd read it), without their sockets and pipes; the upstream candidates are those
 * the capture found then; the per-request facts (host, utmp) are read when the request arrives.
 */
import { randomBytes } from 'node:crypto';
import type { Endpoint, HostFacts, UtmpEntry } from '../host/types.js';
import { filterUtmpForUsers } from '../host/utmp.js';
import type { AnalysisProblem, ClosureLink, UpstreamCandidate } from '../trace/types.js';
import type { HistoryConnection, HistoryUpstreamCandidate } from './history-entry.js';
import { ALL_SAVE_CATEGORIES, copyRecordProcess, type EvidenceRecord, type RecordHistory, type RecordRequest, type SaveCategory } from './record.js';

/** The audit subsystem's "unset" login uid and session id. */
export const AUDIT_UNSET = 4294967295;

/** Categories a history record can hold: the journal keeps no descriptors. */
const HISTORY_CATEGORIES: ReadonlySet<SaveCategory> = new Set(['processes', 'cmdline', 'utmp', 'host']);

/** Input of {@link buildHistoryRecord}. */
export interface BuildHistoryRecordInput {
  readonly connection: HistoryConnection;
  readonly request: RecordRequest;
  readonly userName: (uid: number) => string | null;
  readonly host: HostFacts;
  /** The whole utmp file as read now; only the entries of users named in the record are kept. */
  readonly utmp: readonly UtmpEntry[];
  readonly save: readonly SaveCategory[];
  readonly type: 'SV' | 'SV_REC';
  readonly sid?: string;
  /** The record's time; default now. */
  readonly now?: Date;
}

/**
 * The upstream candidates of a journal entry as recursion takes them: one per inbound
 * connection, with every pid that held it. The socket is gone (inode 0) and was inbound by
 * capture (a listener accepted it).
 */
export function toUpstreamCandidates(upstream: readonly HistoryUpstreamCandidate[]): UpstreamCandidate[] {
  const byTuple = new Map<string, { local: Endpoint; remote: Endpoint; pids: number[] }>();
  for (const candidate of upstream) {
    const key = `${candidate.local.address}|${candidate.local.port}|${candidate.remote.address}|${candidate.remote.port}`;
    const known = byTuple.get(key);
    if (known === undefined) {
      byTuple.set(key, { local: { ...candidate.local }, remote: { ...candidate.remote }, pids: [candidate.pid] });
    } else if (!known.pids.includes(candidate.pid)) {
      known.pids.push(candidate.pid);
    }
  }
  return [...byTuple.values()].map(({ local, remote, pids }) => ({
    local,
    remote,
    inode: 0,
    state: 'ESTABLISHED' as const,
    direction: 'inbound' as const,
    pids,
  }));
}

/** The record's `history` member: the journal's attribution of the connection. */
export function describeHistory(connection: HistoryConnection, userName: (uid: number) => string | null): RecordHistory {
  return {
    seq: connection.seq,
    connectedAt: connection.connectedAt,
    establishedAt: connection.establishedAt,
    closedAt: connection.closedAt,
    capturedAt: connection.capturedAt,
    pid: connection.pid,
    tid: connection.tid,
    uid: connection.uid,
    gid: connection.gid,
    loginuid: connection.loginuid,
    sessionid: connection.sessionid,
    comm: connection.comm,
    user: userName(connection.uid),
    loginUser: connection.loginuid === AUDIT_UNSET ? null : userName(connection.loginuid),
  };
}

/**
 * Builds the evidence record of an SV or SV_REC request answered from history. The result is
 * a fresh plain object, ready for {@link formatRecordBytes}, like {@link buildRecord}'s.
 */
export function buildHistoryRecord(input: BuildHistoryRecordInput): EvidenceRecord {
  const { connection } = input;
  const save = new Set(input.save.filter((category) => HISTORY_CATEGORIES.has(category)));
  const saved = ALL_SAVE_CATEGORIES.filter((category) => save.has(category));
  const names = new Map<number, string | null>();
  const userName = (uid: number): string | null => {
    if (!names.has(uid)) names.set(uid, input.userName(uid));
    return names.get(uid) ?? null;
  };
  const history = describeHistory(connection, userName);
  const processes = save.has('processes')
    ? connection.ancestry.map((process) => copyRecordProcess(process, userName(process.uid.real), {
        // The connecting process and its ancestors are the primary processes of a live closure too.
        role: 'primary',
        // Their IPC was followed at capture time; what it led to is in `upstream`.
        ipc: process.ppid === 0 ? 'root' : 'followed',
        cmdline: save.has('cmdline'),
      }))
    : undefined;
  // Ancestry is child first: each entry's parent is the next one.
  const links: ClosureLink[] = [];
  for (let index = 0; index + 1 < connection.ancestry.length; index += 1) {
    const child = connection.ancestry[index];
    const parent = connection.ancestry[index + 1];
    if (child !== undefined && parent !== undefined && child.ppid === parent.pid) {
      links.push({ kind: 'parent', from: parent.pid, to: child.pid, inodes: [] });
    }
  }
  const problems: AnalysisProblem[] = [];
  if (connection.ancestry.length === 0) {
    problems.push({
      code: 'not-captured',
      message: `Process ${connection.pid} (${connection.comm}) had exited before stopd could read it: only the kernel's attribution is known`,
    });
  }
  const reportUsers = new Set<string>();
  for (const name of [history.user, history.loginUser, ...(processes ?? []).map((process) => process.user)]) {
    if (name !== null) reportUsers.add(name);
  }
  return {
    version: 1,
    source: 'history',
    history,
    salt: randomBytes(16).toString('hex'),
    time: (input.now ?? new Date()).toISOString(),
    type: input.type,
    ...(input.sid === undefined ? {} : { sid: input.sid }),
    request: {
      line: input.request.line,
      requester: { ...input.request.requester },
      ...(input.request.clientIp === undefined ? {} : { clientIp: input.request.clientIp }),
    },
    connection: {
      local: { ...connection.local },
      remote: { ...connection.remote },
      // The socket no longer exists (or lives in a table this daemon does not see).
      state: connection.closedAt === null ? 'ESTABLISHED' : 'CLOSE',
      inode: 0,
      uid: connection.uid,
      user: history.user,
    },
    ...(save.has('host') ? { host: { ...input.host } } : {}),
    ...(processes === undefined ? {} : { processes, links, channels: [] }),
    upstream: toUpstreamCandidates(connection.upstream),
    vanished: [],
    denied: [],
    truncated: false,
    problems,
    ...(save.has('utmp') ? { utmp: filterUtmpForUsers(input.utmp, [...reportUsers]).map((entry) => ({ ...entry })) } : {}),
    saved,
  };
}
