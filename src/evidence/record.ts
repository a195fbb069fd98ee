/**
 * SV evidence records (paper 3.3, Table II; DESIGN "Evidence"): what the daemon saves for an
 * `SV` or `SV_REC` request, its canonical bytes, and the crash-safe file named by their hash.
 *
 * The token of a record is the hash of its exact bytes (paper 4: "the SHA-1 hash is sent as
 * the token to detect any tampering"), so the bytes must be reproducible: canonical JSON with
 * sorted keys and no whitespace. A random salt in every record keeps the token from revealing
 * anything about the contents (a requester could otherwise confirm a guess by hashing it).
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { StoreWriteError, UsageError } from '../errors.js';
import type { Endpoint, HostFacts, ProcessFacts, TcpState, UtmpEntry } from '../host/types.js';
import { filterUtmpForUsers } from '../host/utmp.js';
import type {
  AnalysisProblem,
  Closure,
  ClosureChannel,
  ClosureIpc,
  ClosureLink,
  ClosurePipe,
  ClosureProcess,
  ClosureSocket,
  UpstreamCandidate,
} from '../trace/types.js';
import { writeFileDurably } from './durable-file.js';
import { DEFAULT_MAX_RECORD_BYTES, recordFileName, temporaryRecordPath } from './record-files.js';
import { hashToken, type TokenHash } from './tokens.js';
import { describeCommunityId } from './community-id.js';

/**
 * What an operator may choose to save (paper 4: "select what state data to save for SV and
 * SV_REC requests"; paper 3.3: the per-request data "may not be saved" if space is an issue).
 * - `processes`: the per-process data of Table II for every process of the closure, and the links between them;
 * - `cmdline`: each process's command line (may hold secrets passed as arguments);
 * - `sockets`: each process's open sockets; `pipes`: its pipes;
 * - `utmp`: the utmp entries of the users named in the record;
 * - `host`: host name, boot time, kernel and OS.
 * The request, the queried connection and the upstream candidates are always saved: they say
 * what the token answers and the recursion (paper 3.1.3) relies on them.
 */
export type SaveCategory = 'processes' | 'cmdline' | 'sockets' | 'pipes' | 'utmp' | 'host';

/** Every category, in the order records list them. The default: save all of Table II. */
export const ALL_SAVE_CATEGORIES: readonly SaveCategory[] = Object.freeze([
  'processes',
  'cmdline',
  'sockets',
  'pipes',
  'utmp',
  'host',
]);

/**
 * Parses the value of a `--save` option: comma-separated categories (spaces allowed), or
 * `all`. Returns them deduplicated in {@link ALL_SAVE_CATEGORIES} order. An empty list is
 * allowed only as the empty string (save the minimum); a bad word is a {@link UsageError}.
 */
export function parseSaveCategories(text: string): SaveCategory[] {
  const words = text
    .split(',')
    .map((word) => word.trim())
    .filter((word) => word !== '');
  const chosen = new Set<SaveCategory>();
  for (const word of words) {
    if (word === 'all') {
      for (const category of ALL_SAVE_CATEGORIES) chosen.add(category);
    } else if (isSaveCategory(word)) {
      chosen.add(word);
    } else {
      throw new UsageError(
        `--save must list categories among ${ALL_SAVE_CATEGORIES.join(', ')} (or be all); ${JSON.stringify(word)} is not one`,
      );
    }
  }
  return ALL_SAVE_CATEGORIES.filter((category) => chosen.has(category));
}

function isSaveCategory(word: string): word is SaveCategory {
  return (ALL_SAVE_CATEGORIES as readonly string[]).includes(word);
}

/**
 * One process of the closure as saved (paper Table II, per process): a {@link ClosureProcess}
 * plus the name of its real uid, with `cmdline`, `sockets` and `pipes` present only when their
 * category was saved. (`sid` here is the process's session id, not the STOP SID.)
 */
export interface RecordProcess extends Omit<ProcessFacts, 'cmdline'> {
  /** Account name of `uid.real`, or null when the passwd database does not list it. */
  readonly user: string | null;
  readonly role: 'primary' | 'resolved';
  readonly ipc: ClosureIpc;
  /** Present when `cmdline` was saved. */
  readonly cmdline?: readonly string[];
  /** Present when `sockets` was saved. */
  readonly sockets?: readonly ClosureSocket[];
  /** Present when `pipes` was saved. */
  readonly pipes?: readonly ClosurePipe[];
  /** Sockets and pipes not examined (analysis bounds); present only when some were left out. */
  readonly fdsOmitted?: number;
}

/** The connection the request asked about (paper Table II: both ends of the socket). */
export interface RecordConnection {
  readonly local: Endpoint;
  readonly remote: Endpoint;
  readonly state: TcpState;
  readonly inode: number;
  /** Owner uid of the socket. */
  readonly uid: number;
  /** Account name of `uid`, or null. */
  readonly user: string | null;
  /** Its Community ID (TCP, seed 0: `community-id.ts`); absent in records made before it existed. */
  readonly communityId?: string;
}

/** An upstream candidate as saved: the closure's, with its Community ID (absent in older records). */
export interface RecordUpstream extends UpstreamCandidate {
  readonly communityId?: string;
}

/** The request a record answers (paper Table II: address of the requesting host, type of request). */
export interface RecordRequest {
  /** The request line exactly as received, without its line end. */
  readonly line: string;
  /** Where the request came from (the peer of the port 113 connection). */
  readonly requester: Endpoint;
  /** The CL_IP field of the request, when given (paper 3.1.2). */
  readonly clientIp?: string;
}

/**
 * An SV evidence record, version 1: plain JSON (numbers, strings, booleans, null, arrays and
 * objects only), saved as {@link formatRecordBytes} gives it.
 *
 * - `salt`: 32 lowercase hex digits from `crypto.randomBytes(16)`; makes every token unique
 *   and unguessable (DESIGN "Tokens").
 * - `time`: when the record was built, ISO 8601 UTC.
 * - `type`: the request type; `sid`: the STOP session id of `SV_REC` requests (decimal text).
 * - `host`, `processes`, `links`, `channels`, `utmp`: present only when their category is in
 *   `saved` (`links` and `channels` with `processes`). `channels` (IPC objects with too many
 *   holders for pairwise links, {@link ClosureChannel}) is absent in records made before it
 *   existed, as are the optional per-descriptor counts (`otherCount`, `sharedCount`,
 *   `peerCount`), `fdsOmitted` and `cmdlineTruncated`: such records read as before. The
 *   version stays 1: every addition is optional, and older readers ignore what they do not know.
 * - `upstream`: the connections a recursive request goes to (always saved).
 * - `vanished`: pids that exited during the analysis; `denied`: pids whose descriptors could
 *   not be read (their IPC is missing from the record); `truncated`: a bound (processes,
 *   descriptors, links, record bytes) cut the analysis or the record short; `problems` says which.
 * - `problems`: what the analysis could not see or cut short (code, sentence, and for some
 *   codes a `reason`); absent in
 *   records made before it existed, which read as none.
 * - `saved`: the categories saved, in {@link ALL_SAVE_CATEGORIES} order.
 */
export interface EvidenceRecord {
  readonly version: 1;
  /**
   * `live`: read from the running host when the request arrived; `history`: built from the
   * history journal for a connection that had closed (issue 14). Absent in records made
   * before it existed, which are live.
   */
  readonly source?: RecordSource;
  /** What the history journal held of the connection (`source: history` only). */
  readonly history?: RecordHistory;
  readonly salt: string;
  readonly time: string;
  readonly type: 'SV' | 'SV_REC';
  readonly sid?: string;
  readonly request: RecordRequest;
  readonly connection: RecordConnection;
  readonly host?: HostFacts;
  readonly processes?: readonly RecordProcess[];
  readonly links?: readonly ClosureLink[];
  readonly channels?: readonly ClosureChannel[];
  readonly upstream: readonly RecordUpstream[];
  readonly vanished: readonly number[];
  readonly denied: readonly number[];
  readonly truncated: boolean;
  readonly problems?: readonly AnalysisProblem[];
  readonly utmp?: readonly UtmpEntry[];
  readonly saved: readonly SaveCategory[];
}

/** Where a record's processes were read: see {@link EvidenceRecord.source}. */
export type RecordSource = 'live' | 'history';

/**
 * The history journal's facts of a connection a `source: history` record answers for: the
 * kernel's attribution at connect() (issue 14) and when stopd read the processes behind it.
 * Times are ISO 8601 UTC; `capturedAt` is null when the process had exited before it was read.
 */
export interface RecordHistory {
  /** Sequence number of the journal's entry. */
  readonly seq: number;
  readonly connectedAt: string;
  readonly establishedAt: string | null;
  readonly closedAt: string | null;
  readonly capturedAt: string | null;
  readonly pid: number;
  readonly tid: number;
  readonly uid: number;
  readonly gid: number;
  /** Audit login uid and session (4294967295 = unset): they survive su and sudo. */
  readonly loginuid: number;
  readonly sessionid: number;
  readonly comm: string;
  /** Account names of `uid` and `loginuid`, or null. */
  readonly user: string | null;
  readonly loginUser: string | null;
}

/** Input of {@link buildRecord}. */
export interface BuildRecordInput {
  /** The closure of the queried connection (`resolveClosure`). */
  readonly closure: Closure;
  readonly request: RecordRequest;
  /** Account name of a uid, or null (e.g. `(uid) => accounts.lookup(uid)?.name ?? null`). */
  readonly userName: (uid: number) => string | null;
  readonly host: HostFacts;
  /** The whole utmp file; only the entries of users named in the record are kept (paper Table II). */
  readonly utmp: readonly UtmpEntry[];
  /** Pids whose descriptors could not be read. */
  readonly denied: readonly number[];
  /** What to save; see {@link SaveCategory}. */
  readonly save: readonly SaveCategory[];
  readonly type: 'SV' | 'SV_REC';
  /** The STOP SID (required by the protocol for `SV_REC`, absent for `SV`). */
  readonly sid?: string;
  /** The record's time; default now. */
  readonly now?: Date;
  /** Problems found outside the closure (added after the closure's own `problems`). */
  readonly problems?: readonly AnalysisProblem[];
  /**
   * The record's bytes at most ({@link formatRecordBytes}); default
   * {@link DEFAULT_MAX_RECORD_BYTES}. A closure that does not fit keeps its first processes
   * (primary ones first) and the links and channels among them that fit, with `truncated`
   * and a `limit-bytes` problem.
   */
  readonly maxBytes?: number;
}

/**
 * Builds the evidence record of an SV or SV_REC request from the closure and the per-request
 * facts, keeping what `save` selects. The result is a fresh plain object (no reference into
 * the closure), ready for {@link formatRecordBytes}.
 */
export function buildRecord(input: BuildRecordInput): EvidenceRecord {
  const maxBytes = input.maxBytes ?? DEFAULT_MAX_RECORD_BYTES;
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 1) throw new RangeError(`Cannot build record: maxBytes must be a positive integer, got ${maxBytes}`);
  const record = buildWholeRecord(input);
  return formatRecordBytes(record).length <= maxBytes ? record : fitRecord(record, maxBytes);
}

/**
 * The record cut to `maxBytes`: the same record without processes, links and channels, then
 * as many processes (in record order: primary ones first) as fit, then the links and channels
 * among them that fit. Sizes are each part's canonical JSON, so the result is exact.
 */
function fitRecord(record: EvidenceRecord, maxBytes: number): EvidenceRecord {
  const problem: AnalysisProblem = {
    code: 'limit-bytes',
    message: `The record would exceed ${maxBytes} bytes; processes, links or channels are missing from it`,
  };
  const problems = [...(record.problems ?? []), problem];
  const hasProcesses = record.processes !== undefined;
  const base: EvidenceRecord = {
    ...record,
    ...(hasProcesses ? { processes: [], links: [], channels: [] } : {}),
    truncated: true,
    problems,
  };
  let left = maxBytes - formatRecordBytes(base).length;
  if (!hasProcesses || left <= 0) return base;
  const size = (value: unknown): number => Buffer.byteLength(formatCanonicalJson(value)) + 1; // and a comma
  const processes: RecordProcess[] = [];
  for (const process of record.processes ?? []) {
    const bytes = size(process);
    if (bytes > left) break;
    left -= bytes;
    processes.push(process);
  }
  const kept = new Set(processes.map((process) => process.pid));
  const links: ClosureLink[] = [];
  for (const link of record.links ?? []) {
    if (!kept.has(link.from) || !kept.has(link.to)) continue;
    const bytes = size(link);
    if (bytes > left) break;
    left -= bytes;
    links.push(link);
  }
  const channels: ClosureChannel[] = [];
  for (const channel of record.channels ?? []) {
    const cut = { ...channel, from: channel.from.filter((pid) => kept.has(pid)), to: channel.to.filter((pid) => kept.has(pid)) };
    const bytes = size(cut);
    if (bytes > left) break;
    left -= bytes;
    channels.push(cut);
  }
  return { ...base, processes, links, channels };
}

function buildWholeRecord(input: BuildRecordInput): EvidenceRecord {
  const save = new Set(input.save);
  const saved = ALL_SAVE_CATEGORIES.filter((category) => save.has(category));
  const { closure } = input;
  const names = new Map<number, string | null>();
  const userName = (uid: number): string | null => {
    if (!names.has(uid)) names.set(uid, input.userName(uid));
    return names.get(uid) ?? null;
  };
  const queried = closure.queried;
  const connection: RecordConnection = {
    local: copyEndpoint(queried.local),
    remote: copyEndpoint(queried.remote),
    state: queried.state,
    inode: queried.inode,
    uid: queried.uid,
    user: userName(queried.uid),
    ...withCommunityId(queried),
  };
  const processes = save.has('processes')
    ? closure.processes.map((process) => copyProcess(process, userName(process.uid.real), save))
    : undefined;
  const reportUsers = new Set<string>();
  if (connection.user !== null) reportUsers.add(connection.user);
  for (const process of processes ?? []) if (process.user !== null) reportUsers.add(process.user);
  const request: RecordRequest = {
    line: input.request.line,
    requester: copyEndpoint(input.request.requester),
    ...(input.request.clientIp === undefined ? {} : { clientIp: input.request.clientIp }),
  };
  return {
    version: 1,
    source: 'live',
    salt: randomBytes(16).toString('hex'),
    time: (input.now ?? new Date()).toISOString(),
    type: input.type,
    ...(input.sid === undefined ? {} : { sid: input.sid }),
    request,
    connection,
    ...(save.has('host') ? { host: { ...input.host } } : {}),
    ...(processes === undefined
      ? {}
      : {
          processes,
          links: closure.links.map((link) => ({ ...link, inodes: [...link.inodes] })),
          channels: closure.channels.map((channel) => ({
            kind: channel.kind,
            inodes: [...channel.inodes],
            from: [...channel.from],
            to: [...channel.to],
          })),
        }),
    upstream: closure.upstream.map((candidate) => ({
      ...candidate,
      local: copyEndpoint(candidate.local),
      remote: copyEndpoint(candidate.remote),
      pids: [...candidate.pids],
      ...withCommunityId(candidate),
    })),
    vanished: [...closure.vanished],
    denied: [...new Set(input.denied)],
    truncated: closure.truncated,
    problems: [...closure.problems, ...(input.problems ?? [])]
      // Cut command lines are no problem of a record that keeps none.
      .filter((problem) => save.has('cmdline') || problem.code !== 'limit-cmdline')
      .map((problem) => ({
        code: problem.code,
        message: problem.message,
        ...(problem.reason === undefined ? {} : { reason: problem.reason }),
      })),
    ...(save.has('utmp') ? { utmp: filterUtmpForUsers(input.utmp, [...reportUsers]).map((entry) => ({ ...entry })) } : {}),
    saved,
  };
}

/** `{ communityId }` of a connection, or nothing when its endpoints are not IP addresses. */
function withCommunityId(connection: { readonly local: Endpoint; readonly remote: Endpoint }): { communityId?: string } {
  const communityId = describeCommunityId(connection);
  return communityId === null ? {} : { communityId };
}

function copyEndpoint(endpoint: Endpoint): Endpoint {
  return { address: endpoint.address, port: endpoint.port };
}

function copyProcess(process: ClosureProcess, user: string | null, save: ReadonlySet<SaveCategory>): RecordProcess {
  return {
    ...copyRecordProcess(process, user, { role: process.role, ipc: process.ipc, cmdline: save.has('cmdline') }),
    ...(save.has('sockets') ? { sockets: process.sockets.map(copySocket) } : {}),
    ...(save.has('pipes') ? { pipes: process.pipes.map((pipe) => ({ ...pipe, otherPids: [...pipe.otherPids] })) } : {}),
    ...(process.fdsOmitted === undefined ? {} : { fdsOmitted: process.fdsOmitted }),
  };
}

/**
 * A record's process entry without descriptors: the facts, the account name, the role and
 * IPC verdict, and the command line when it is saved. Live records add sockets and pipes.
 */
export function copyRecordProcess(
  process: ProcessFacts,
  user: string | null,
  options: { readonly role: RecordProcess['role']; readonly ipc: RecordProcess['ipc']; readonly cmdline: boolean },
): RecordProcess {
  return {
    pid: process.pid,
    ppid: process.ppid,
    name: process.name,
    uid: { real: process.uid.real, effective: process.uid.effective },
    user,
    startTime: process.startTime,
    tty: process.tty,
    priority: process.priority,
    nice: process.nice,
    pgid: process.pgid,
    sid: process.sid,
    role: options.role,
    ipc: options.ipc,
    ...(options.cmdline ? { cmdline: [...process.cmdline] } : {}),
    ...(options.cmdline && process.cmdlineTruncated !== undefined
      ? { cmdlineTruncated: { bytes: process.cmdlineTruncated.bytes, sha256: process.cmdlineTruncated.sha256 } }
      : {}),
  };
}

function copySocket(socket: ClosureSocket): ClosureSocket {
  switch (socket.kind) {
    case 'tcp':
      return {
        ...socket,
        local: copyEndpoint(socket.local),
        remote: copyEndpoint(socket.remote),
        peerPids: [...socket.peerPids],
        sharedWith: [...socket.sharedWith],
      };
    case 'unix':
      return { ...socket, peerPids: [...socket.peerPids], sharedWith: [...socket.sharedWith] };
    case 'other':
      return { ...socket };
  }
}

/**
 * Canonical JSON text of a plain value: object keys sorted recursively (by UTF-16 code units,
 * as RFC 8785 does), no whitespace; numbers and strings as `JSON.stringify` writes them.
 * Object properties whose value is `undefined` are left out (as JSON does). Anything else
 * that JSON cannot carry faithfully throws a `TypeError` naming its path: bigint, non-finite
 * numbers, functions, symbols, `undefined` in an array, non-plain objects (Date, Map,
 * Buffer, class instances) and cycles.
 */
export function formatCanonicalJson(value: unknown): string {
  const out: string[] = [];
  encode(value, undefined, new Set(), out);
  return out.join('');
}

/**
 * Where a value sits, as a linked list from the value up to the root; turned into text
 * (`$.a[2].b`) only for an error message, so encoding builds no path strings.
 */
interface JsonPath {
  readonly parent: JsonPath | undefined;
  readonly key: string | number;
}

function pathText(path: JsonPath | undefined): string {
  const parts: string[] = [];
  for (let at = path; at !== undefined; at = at.parent) parts.push(typeof at.key === 'number' ? `[${at.key}]` : `.${at.key}`);
  return `$${parts.reverse().join('')}`;
}

/** Characters JSON.stringify escapes: quote, backslash, controls, and (lone) surrogates. */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const NEEDS_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/;

/** Appends the canonical text of `value` to `out`. */
function encode(value: unknown, path: JsonPath | undefined, ancestors: Set<object>, out: string[]): void {
  switch (typeof value) {
    case 'string':
      // Most evidence strings need no escaping: skip the call into JSON.stringify for them.
      out.push(NEEDS_ESCAPE.test(value) ? JSON.stringify(value) : `"${value}"`);
      return;
    case 'boolean':
      out.push(value ? 'true' : 'false');
      return;
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError(`Cannot encode evidence as JSON: ${pathText(path)} is ${value}`);
      // Number-to-string is the same algorithm in String() and JSON.stringify (-0 gives "0" in both).
      out.push(String(value));
      return;
    case 'object':
      break;
    default:
      throw new TypeError(`Cannot encode evidence as JSON: ${pathText(path)} is ${describe(value)}`);
  }
  if (value === null) {
    out.push('null');
    return;
  }
  if (ancestors.has(value)) throw new TypeError(`Cannot encode evidence as JSON: ${pathText(path)} refers back to itself`);
  ancestors.add(value);
  try {
    if (Array.isArray(value)) {
      // An index loop, not map(): map skips the holes of a sparse array, which would yield `[1,,2]`.
      const array = value as unknown[];
      out.push('[');
      for (let index = 0; index < array.length; index += 1) {
        const item = array[index];
        if (item === undefined) throw new TypeError(`Cannot encode evidence as JSON: ${pathText({ parent: path, key: index })} is undefined`);
        if (index > 0) out.push(',');
        encode(item, { parent: path, key: index }, ancestors, out);
      }
      out.push(']');
      return;
    }
    const prototype: unknown = Object.getPrototypeOf(value);
    if (prototype !== Object.prototype && prototype !== null) {
      throw new TypeError(`Cannot encode evidence as JSON: ${pathText(path)} is not a plain object (${describe(value)})`);
    }
    const record = value as Record<string, unknown>;
    out.push('{');
    let first = true;
    for (const key of Object.keys(record).sort()) {
      const member = record[key];
      if (member === undefined) continue;
      if (!first) out.push(',');
      first = false;
      out.push(NEEDS_ESCAPE.test(key) ? JSON.stringify(key) : `"${key}"`, ':');
      encode(member, { parent: path, key }, ancestors, out);
    }
    out.push('}');
  } finally {
    ancestors.delete(value);
  }
}

function describe(value: unknown): string {
  if (value === undefined) return 'undefined';
  if (typeof value === 'object' && value !== null) return `a ${value.constructor?.name ?? 'object'}`;
  return `a ${typeof value}`;
}

/**
 * The bytes saved for a record, and hashed into its token: canonical JSON
 * ({@link formatCanonicalJson}), UTF-8, ending in one newline (so `cat` and `sha256sum` work
 * on the file as they are).
 */
export function formatRecordBytes(record: EvidenceRecord): Buffer {
  return Buffer.from(`${formatCanonicalJson(record)}\n`, 'utf8');
}

/**
 * Saves a record's bytes as `<token>.json` in `recordsDir` and returns the token (the hex
 * `hash` of the bytes). Crash-safe (DESIGN "Evidence", durable-file.ts): the bytes go to a
 * temporary file `.<token>.tmp-<random>` (mode 0600) in the same directory, which is
 * fdatasync'd and renamed over, and the directory is flushed (shared among concurrent
 * writers) so that the rename itself survives a crash. Only then may the token be replied
 * (DESIGN duty 9). Any failure is a {@link StoreWriteError}, and the temporary file is removed.
 */
export async function writeRecord(
  recordsDir: string,
  bytes: Buffer,
  options: { readonly hash: TokenHash; /** `bytes`' hash when the caller has it already (computed by the analysis thread). */ readonly token?: string },
): Promise<string> {
  const token = options.token ?? hashToken(bytes, options.hash);
  try {
    // A new file: fdatasync covers its bytes and size.
    await writeFileDurably(join(recordsDir, recordFileName(token)), bytes, { temporaryPath: temporaryRecordPath(recordsDir, token), flush: 'data' });
  } catch (error) {
    throw new StoreWriteError(`Cannot save evidence record ${token} in ${recordsDir}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  return token;
}
