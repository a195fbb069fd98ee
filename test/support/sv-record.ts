/**
 * SV requests against a real daemon and the JSON of `stopctl redeem --json` for their tokens
 * (the shapes of src/trace/types.ts as saved in the evidence record, paper Table II).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { exchange, STOPCTL } from './daemon.js';

export interface JsonEndpoint {
  readonly address: string;
  readonly port: number;
}

export type RecordSocket =
  | {
      readonly kind: 'tcp';
      readonly fd: number;
      readonly inode: number;
      readonly state: string;
      readonly local: JsonEndpoint;
      readonly remote: JsonEndpoint;
      readonly direction: 'inbound' | 'outbound' | 'listen' | 'unknown';
      readonly queried: boolean;
      readonly peerPids: readonly number[];
      readonly sharedWith: readonly number[];
    }
  | {
      readonly kind: 'unix';
      readonly fd: number;
      readonly inode: number;
      readonly path: string | null;
      readonly type: string;
      readonly peer: number;
      readonly peerPids: readonly number[];
      readonly sharedWith: readonly number[];
    }
  | { readonly kind: 'other'; readonly fd: number; readonly inode: number };

export interface RecordPipe {
  readonly fd: number;
  readonly inode: number;
  readonly end: 'read' | 'write' | 'both';
  readonly otherPids: readonly number[];
  readonly otherCount?: number;
}

export interface RecordProcess {
  readonly pid: number;
  readonly ppid: number;
  readonly name: string;
  readonly uid: { readonly real: number; readonly effective: number };
  readonly startTime: string;
  readonly tty: string | null;
  readonly priority: number;
  readonly nice: number;
  readonly pgid: number;
  readonly sid: number;
  readonly cmdline: readonly string[];
  readonly cmdlineTruncated?: { readonly bytes: number; readonly sha256: string };
  readonly role: 'primary' | 'resolved';
  readonly sockets: readonly RecordSocket[];
  readonly pipes: readonly RecordPipe[];
  readonly fdsOmitted?: number;
}

export interface RecordChannel {
  readonly kind: 'pipe' | 'tcp' | 'unix' | 'shared';
  readonly inodes: readonly number[];
  readonly from: readonly number[];
  readonly to: readonly number[];
}

export interface RecordLink {
  readonly kind: 'parent' | 'pipe' | 'tcp' | 'unix' | 'shared';
  readonly from: number;
  readonly to: number;
  readonly inodes: readonly number[];
}

export interface RecordUpstream {
  readonly local: JsonEndpoint;
  readonly remote: JsonEndpoint;
  readonly inode: number;
  readonly state: string;
  readonly direction: 'inbound' | 'unknown';
  readonly pids: readonly number[];
}

/** `stopctl redeem --json` for an SV token. */
export interface SvRedemption {
  readonly token: string;
  readonly verdict: 'verified' | 'integrity-failure';
  readonly type: string;
  readonly time: string;
  readonly request: { readonly line: string; readonly requester: unknown };
  readonly connection: { readonly local: JsonEndpoint; readonly remote: JsonEndpoint };
  readonly host: { readonly hostname: string; readonly bootTime: string; readonly kernel: string };
  readonly processes: readonly RecordProcess[];
  readonly links: readonly RecordLink[];
  readonly channels: readonly RecordChannel[];
  readonly upstream: readonly RecordUpstream[];
  readonly vanished: readonly number[];
  readonly denied: unknown;
  readonly truncated: boolean;
  /** Integrity problems of the redemption (empty when verified). */
  readonly problems: readonly string[];
  /** The record's own problems: what the analysis could not see or cut short. */
  readonly analysisProblems: readonly { readonly code: string; readonly message: string; readonly reason?: string }[];
}

export const SV_TOKEN = /^(\d+),(\d+):USERID:OTHER:([0-9a-f]{64})$/;

/**
 * Sends `<localPort>,<remotePort>:SV` to the daemon from `from` (the next hop's address: the
 * daemon asks about the connection between its own address and the requester's, RFC 1413)
 * and returns the token of the USERID reply (asserting its form).
 */
export async function requestSv(
  daemon: { host: string; port: number },
  ports: { local: number; remote: number },
  options: { from?: string; timeoutMs?: number } = {},
): Promise<string> {
  const { lines } = await exchange(daemon, `${ports.local},${ports.remote}:SV\r\n`, {
    localAddress: options.from ?? '127.0.0.2',
    timeoutMs: options.timeoutMs ?? 15_000,
  });
  const line = lines[0] ?? '';
  const match = SV_TOKEN.exec(line);
  assert.ok(match, `SV reply is a token: ${JSON.stringify(line)}`);
  assert.equal(`${match[1]},${match[2]}`, `${ports.local},${ports.remote}`);
  return match[3] ?? '';
}

/** Runs `stopctl redeem TOKEN --store DIR --json` and returns its exit code and output. */
export function runRedeem(storeDir: string, token: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [STOPCTL, 'redeem', token, '--store', storeDir, '--json'],
      { timeout: 20_000, maxBuffer: 64 * 1024 * 1024 },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : -1;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** Redeems an SV token and asserts it verifies; returns the parsed record. */
export async function redeemVerified(storeDir: string, token: string): Promise<SvRedemption> {
  const { code, stdout, stderr } = await runRedeem(storeDir, token);
  assert.equal(code, 0, `stopctl redeem exits 0 for a fresh SV token; stderr: ${stderr}`);
  const record = JSON.parse(stdout) as SvRedemption;
  assert.equal(record.token, token);
  assert.equal(record.verdict, 'verified');
  assert.equal(record.type, 'SV');
  assert.ok(Array.isArray(record.processes), `record has processes: ${stdout.slice(0, 400)}`);
  return record;
}

/** The process of the record with `pid`, asserting it is there. */
export function processOf(record: SvRedemption, pid: number): RecordProcess {
  const found = record.processes.find((process) => process.pid === pid);
  assert.ok(found, `process ${pid} is in the record (has ${describePids(record)})`);
  return found;
}

/** `pid name role` of every process of the record, for assertion messages. */
export function describePids(record: SvRedemption): string {
  return record.processes.map((process) => `${process.pid} ${process.name} ${process.role}`).join('; ');
}

/** Sorted pids of the record, optionally only those with `role`. */
export function pidsOf(record: SvRedemption, role?: 'primary' | 'resolved'): number[] {
  return record.processes
    .filter((process) => role === undefined || process.role === role)
    .map((process) => process.pid)
    .sort((a, b) => a - b);
}

/** Whether the record links `from` to `to` with a link of `kind`. */
export function hasLink(record: SvRedemption, kind: RecordLink['kind'], from: number, to: number): boolean {
  return record.links.some((link) => link.kind === kind && link.from === from && link.to === to);
}

/** Sorts numbers ascending (a copy). */
export function sorted(values: Iterable<number>): number[] {
  return [...values].sort((a, b) => a - b);
}
