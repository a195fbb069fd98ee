/**
 * Reading SV records back (`stopctl redeem`, `trace`, `verify`, `prune`): the file of a
 * token, plain or gzipped, checked against the token, and its bytes checked field by field
 * against the version 1 {@link EvidenceRecord} shape, so that formatters can rely on it even
 * for an altered file. Writing is record.ts's, names and limits record-files.ts's.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';
import { IntegrityError, UsageError } from '../errors.js';
import { TCP_STATE_NAMES } from '../host/types.js';
import { ALL_SAVE_CATEGORIES, type EvidenceRecord } from './record.js';
import { MAX_RECORD_BYTES, recordFileName } from './record-files.js';
import { hashToken, tokenHashOf, type TokenHash } from './tokens.js';

/** A record file as read back, whether or not it still matches its token. */
interface StoredRecordBase {
  /** The file's exact bytes. */
  readonly bytes: Buffer;
  /** The hash used to check it (from the token's length, or the caller's choice). */
  readonly hash: TokenHash;
  /** Hex hash of `bytes`. */
  readonly actualHash: string;
  /** Whether `actualHash` equals the token: the file is exactly what was saved. */
  readonly verified: boolean;
  /** True when read from `<token>.json.gz` (`stopctl prune --gzip`); `bytes` are then the decompressed ones. */
  readonly compressed?: boolean;
}

/**
 * The result of {@link readRecord}: either a parsed `record`, or, when the file is not a
 * version 1 record at all (damaged, truncated, or replaced), `record: undefined` and a
 * `parseError` saying why. In both cases `verified` tells whether the bytes match the token.
 */
export type StoredRecord =
  | (StoredRecordBase & { readonly record: EvidenceRecord; readonly parseError?: never })
  | (StoredRecordBase & { readonly record: undefined; readonly parseError: string });

const gunzipAsync = promisify(gunzip);

/**
 * Reads the record of `token` from `recordsDir` and checks it against the token. Resolves
 * undefined when there is no such file. A record pruned with `--gzip` (`<token>.json.gz`) is
 * read transparently: its decompressed bytes are checked. `options.hash` overrides the hash chosen from the
 * token's length. A token that is not 40 or 64 lowercase hex digits is a {@link UsageError}
 * (it could otherwise name a path outside the directory). Other read failures reject with
 * the file system's error.
 */
export async function readRecord(
  recordsDir: string,
  token: string,
  options: { readonly hash?: TokenHash } = {},
): Promise<StoredRecord | undefined> {
  const shapeHash = tokenHashOf(token);
  if (shapeHash === undefined) {
    throw new UsageError(`${JSON.stringify(token)} is not a token: tokens are 40 or 64 lowercase hex digits`);
  }
  const hash = options.hash ?? shapeHash;
  let bytes: Buffer;
  let compressed = false;
  try {
    bytes = await readFile(join(recordsDir, recordFileName(token)));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    // Pruned with --gzip: the token is the hash of the decompressed bytes, checked as always.
    let packed: Buffer;
    try {
      packed = await readFile(join(recordsDir, recordFileName(token, { compressed: true })));
    } catch (gzError) {
      if ((gzError as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw gzError;
    }
    try {
      bytes = await gunzipAsync(packed, { maxOutputLength: MAX_RECORD_BYTES });
      compressed = true;
    } catch (gzError) {
      const actualHash = hashToken(packed, hash);
      const parseError = `Cannot read evidence record: ${token}.json.gz does not decompress (${(gzError as Error).message})`;
      return { bytes: packed, hash, actualHash, verified: false, compressed: true, record: undefined, parseError };
    }
  }
  const actualHash = hashToken(bytes, hash);
  const base = { bytes, hash, actualHash, verified: actualHash === token, ...(compressed ? { compressed } : {}) };
  try {
    return { ...base, record: parseRecord(bytes) };
  } catch (error) {
    return { ...base, record: undefined, parseError: (error as Error).message };
  }
}

/**
 * Parses record bytes and checks that they have the shape of a version 1 {@link EvidenceRecord}
 * (so that formatters can rely on it even for an altered file). Throws an
 * {@link IntegrityError} saying what is wrong. It does not check the token: see {@link readRecord}.
 */
export function parseRecord(bytes: Uint8Array): EvidenceRecord {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (error) {
    throw new IntegrityError(`Cannot read evidence record: it is not UTF-8 JSON (${(error as Error).message})`);
  }
  const problem = checkRecord(value, 'record');
  if (problem !== undefined) throw new IntegrityError(`Cannot read evidence record: ${problem}`);
  return value as EvidenceRecord;
}

// Shape checks: each returns undefined when fine, or what is wrong at which path.
type Check = (value: unknown, path: string) => string | undefined;

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

const string: Check = (value, path) => (typeof value === 'string' ? undefined : `${path} is not a string`);
const integer: Check = (value, path) => (Number.isSafeInteger(value) ? undefined : `${path} is not an integer`);
const boolean: Check = (value, path) => (typeof value === 'boolean' ? undefined : `${path} is not a boolean`);
const nullable =
  (check: Check): Check =>
  (value, path) =>
    value === null ? undefined : check(value, path);
const oneOf =
  (...allowed: readonly string[]): Check =>
  (value, path) =>
    typeof value === 'string' && allowed.includes(value) ? undefined : `${path} is not one of ${allowed.join(', ')}`;
const arrayOf =
  (check: Check): Check =>
  (value, path) => {
    if (!Array.isArray(value)) return `${path} is not an array`;
    for (const [index, item] of (value as unknown[]).entries()) {
      const problem = check(item, `${path}[${index}]`);
      if (problem !== undefined) return problem;
    }
    return undefined;
  };
const objectOf =
  (fields: Readonly<Record<string, Check>>, optionalFields: readonly string[] = []): Check =>
  (value, path) => {
    if (!isObject(value)) return `${path} is not an object`;
    for (const [key, check] of Object.entries(fields)) {
      if (!(key in value)) {
        if (optionalFields.includes(key)) continue;
        return `${path}.${key} is missing`;
      }
      const problem = check(value[key], `${path}.${key}`);
      if (problem !== undefined) return problem;
    }
    return undefined;
  };

const endpoint = objectOf({ address: string, port: integer });
const pids = arrayOf(integer);
const tcpState = oneOf(...TCP_STATE_NAMES);
const socketChecks: Readonly<Record<string, Check>> = {
  tcp: objectOf({
    kind: string,
    fd: integer,
    inode: integer,
    state: tcpState,
    local: endpoint,
    remote: endpoint,
    direction: oneOf('inbound', 'outbound', 'listen', 'unknown'),
    queried: boolean,
    peerPids: pids,
    sharedWith: pids,
    peerCount: integer,
    sharedCount: integer,
  }, ['peerCount', 'sharedCount']),
  unix: objectOf({
    kind: string,
    fd: integer,
    inode: integer,
    path: nullable(string),
    type: oneOf('stream', 'dgram', 'seqpacket'),
    peer: integer,
    peerPids: pids,
    sharedWith: pids,
    peerCount: integer,
    sharedCount: integer,
  }, ['peerCount', 'sharedCount']),
  other: objectOf({ kind: string, fd: integer, inode: integer }),
};
const socket: Check = (value, path) => {
  if (!isObject(value)) return `${path} is not an object`;
  const check = typeof value.kind === 'string' ? socketChecks[value.kind] : undefined;
  return check === undefined ? `${path}.kind is not one of tcp, unix, other` : check(value, path);
};
const pipe = objectOf(
  { fd: integer, inode: integer, end: oneOf('read', 'write', 'both'), otherPids: pids, otherCount: integer },
  ['otherCount'],
);
const processCheck = objectOf(
  {
    pid: integer,
    ppid: integer,
    name: string,
    uid: objectOf({ real: integer, effective: integer }),
    user: nullable(string),
    startTime: string,
    tty: nullable(string),
    priority: integer,
    nice: integer,
    pgid: integer,
    sid: integer,
    role: oneOf('primary', 'resolved'),
    ipc: oneOf('followed', 'root', 'hub', 'truncated'),
    cmdline: arrayOf(string),
    cmdlineTruncated: objectOf({ bytes: integer, sha256: string }),
    sockets: arrayOf(socket),
    pipes: arrayOf(pipe),
    fdsOmitted: integer,
  },
  ['cmdline', 'cmdlineTruncated', 'sockets', 'pipes', 'fdsOmitted'],
);
const checkRecord = objectOf(
  {
    version: (value, path) => (value === 1 ? undefined : `${path} is ${JSON.stringify(value)}, not 1`),
    source: oneOf('live', 'history'),
    history: objectOf({
      seq: integer,
      connectedAt: string,
      establishedAt: nullable(string),
      closedAt: nullable(string),
      capturedAt: nullable(string),
      pid: integer,
      tid: integer,
      uid: integer,
      gid: integer,
      loginuid: integer,
      sessionid: integer,
      comm: string,
      user: nullable(string),
      loginUser: nullable(string),
    }),
    salt: string,
    time: string,
    type: oneOf('SV', 'SV_REC'),
    sid: string,
    request: objectOf({ line: string, requester: endpoint, clientIp: string }, ['clientIp']),
    connection: objectOf(
      { local: endpoint, remote: endpoint, state: tcpState, inode: integer, uid: integer, user: nullable(string), communityId: string },
      ['communityId'],
    ),
    host: objectOf({ hostname: string, bootTime: string, kernel: string, os: nullable(string) }),
    processes: arrayOf(processCheck),
    links: arrayOf(
      objectOf({ kind: oneOf('parent', 'pipe', 'tcp', 'unix', 'shared'), from: integer, to: integer, inodes: pids }),
    ),
    channels: arrayOf(objectOf({ kind: oneOf('pipe', 'tcp', 'unix', 'shared'), inodes: pids, from: pids, to: pids })),
    upstream: arrayOf(
      objectOf(
        {
          local: endpoint,
          remote: endpoint,
          inode: integer,
          state: tcpState,
          direction: oneOf('inbound', 'unknown'),
          pids,
          communityId: string,
        },
        ['communityId'],
      ),
    ),
    vanished: pids,
    denied: pids,
    truncated: boolean,
    problems: arrayOf(objectOf({ code: string, message: string, reason: string }, ['reason'])),
    utmp: arrayOf(
      objectOf({ type: string, pid: integer, line: string, user: string, host: string, time: string, address: nullable(string) }),
    ),
    saved: arrayOf(oneOf(...ALL_SAVE_CATEGORIES)),
  },
  ['source', 'history', 'sid', 'host', 'processes', 'links', 'channels', 'utmp', 'problems'],
);
