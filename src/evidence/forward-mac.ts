/**
 * Forward-secure authentication of ledger entries (paper 6.5; Schneier and Kelsey, "Secure
 * audit logs to support computer forensics", 1999).
 *
 * The administrator makes an initial key A_0 (`stopctl keygen`), keeps a copy off the host and
 * gives it to the daemon once (`stopd --ledger-key FILE`), which moves it into the store. From
 * then on the entry with sequence number `installSeq + j` carries
 *
 *     mac = HMAC-SHA256(A_j, line-without-mac)      A_{j+1} = SHA-256("stopd ledger key evolve" || A_j)
 *
 * and only the key of the *next* entry is kept on the host (`<store>/ledger.key`); every older
 * key is overwritten. SHA-256 cannot be run backwards, so whoever takes over the host later
 * (and reads the current key A_n) cannot compute A_j for any j < n: they cannot produce a valid
 * MAC for any entry already written. Forging is only possible *after* the point of compromise.
 *
 * Why that holds for every way of rewriting the past:
 * - The key of an entry is chosen by its `seq`, and `seq` is inside the MACed bytes, so an entry
 *   cannot be moved to a later position (where the attacker knows the key) without failing.
 * - Altering an old entry, or truncating the ledger after entry k and writing a new, validly
 *   chained tail k+1.. with the current key, leaves entries whose seq needs A_{k+1-installSeq}..,
 *   which are gone: `stopctl verify --key` recomputes them from A_0 and the MACs fail. Writing the
 *   tail at seq numbers >= n instead (where the current key fits) leaves a seq gap, which verify
 *   reports as missing entries.
 * - Removing the MACs, or the key-installed entry, is reported too: once a ledger is keyed, every
 *   later entry must carry a MAC, and `--key` requires the key-installed entry with its key id.
 * What it cannot do (nothing can): protect entries written after the compromise, or an entry
 * whose key was still on disk at the time (see {@link writeKeyState} for the crash window).
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { UsageError } from '../errors.js';
import { writeFileDurably, writeFileDurablySync, type DurableWriteOptions } from './durable-file.js';

/** Bytes of a ledger key (A_i). */
export const LEDGER_KEY_BYTES = 32;

const EVOLVE_LABEL = Buffer.from('stopd ledger key evolve', 'utf8');
const KEY_ID_LABEL = Buffer.from('stopd ledger key id', 'utf8');

/** A fresh random initial key A_0. */
export function generateLedgerKey(): Buffer {
  return randomBytes(LEDGER_KEY_BYTES);
}

/**
 * The next key: A_{i+1} = SHA-256("stopd ledger key evolve" || A_i). One-way, so holding A_{i+1}
 * reveals nothing about A_i. The caller should zero A_i afterwards ({@link forgetKey}).
 */
export function evolveKey(key: Uint8Array): Buffer {
  return createHash('sha256').update(EVOLVE_LABEL).update(key).digest();
}

/** The key `steps` evolutions after `key` (a fresh buffer; `key` is left as it is). */
export function evolveKeyBy(key: Uint8Array, steps: number): Buffer {
  let current: Buffer = Buffer.from(key);
  for (let step = 0; step < steps; step += 1) {
    const next = evolveKey(current);
    forgetKey(current);
    current = next;
  }
  return current;
}

/** Overwrites a key buffer with zeros (best effort: JavaScript may hold other copies). */
export function forgetKey(key: Buffer): void {
  key.fill(0);
}

/**
 * A short public name of an initial key, written in the key-installed entry, so that verify can
 * tell "wrong key file" from "altered entries". One-way, with its own label: it says nothing about
 * A_0 nor about any evolved key.
 */
export function ledgerKeyId(initialKey: Uint8Array): string {
  return createHash('sha256').update(KEY_ID_LABEL).update(initialKey).digest('hex').slice(0, 16);
}

/** HMAC-SHA256 (hex) of one ledger line without its `mac` member. */
export function computeEntryMac(key: Uint8Array, lineWithoutMac: string): string {
  return createHmac('sha256', key).update(lineWithoutMac, 'utf8').digest('hex');
}

const MAC_SUFFIX = /,"mac":"([0-9a-f]{64})"\}$/;

/**
 * Adds the MAC member to a ledger line: the line is `JSON.stringify` of an object, so the MAC
 * goes last, and the MACed bytes can be recovered exactly by {@link splitEntryMac}.
 */
export function appendEntryMac(lineWithoutMac: string, mac: string): string {
  return `${lineWithoutMac.slice(0, -1)},"mac":"${mac}"}`;
}

/** Splits a stored line into the MACed bytes and its MAC, or undefined when it has no MAC at its end. */
export function splitEntryMac(line: string): { readonly lineWithoutMac: string; readonly mac: string } | undefined {
  const match = MAC_SUFFIX.exec(line);
  if (match === null || match.index === 0) return undefined;
  return { lineWithoutMac: `${line.slice(0, match.index)}}`, mac: match[1] ?? '' };
}

/** Whether `mac` (hex) is the MAC of `lineWithoutMac` under `key`, compared in constant time. */
export function checkEntryMac(key: Uint8Array, lineWithoutMac: string, mac: string): boolean {
  const expected = Buffer.from(computeEntryMac(key, lineWithoutMac), 'hex');
  const given = Buffer.from(mac, 'hex');
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/**
 * The key state in `<store>/ledger.key` (JSON, mode 0600).
 * - `key`: the key of the entry with sequence number `seq + 1` (every older key is gone);
 * - `seq`: the last entry MACed with an older key, i.e. the last entry known to be written;
 * - `head`: SHA-256 of that entry's line, so verify notices when the last line is altered or cut;
 * - `installSeq`: the seq of the key-installed entry (MACed with A_0); `keyId`: {@link ledgerKeyId} of A_0.
 */
export interface LedgerKeyState {
  readonly version: 1;
  readonly keyId: string;
  readonly installSeq: number;
  readonly seq: number;
  readonly head: string;
  readonly key: Buffer;
}

/** Reads the key state; undefined when there is none. A damaged file throws an Error saying why. */
export function readKeyState(path: string): LedgerKeyState | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new Error(`the key state ${path} is not JSON`);
  }
  const state = value as Record<string, unknown>;
  const isSeq = (n: unknown): n is number => Number.isSafeInteger(n) && (n as number) >= 0;
  if (
    typeof value !== 'object' ||
    value === null ||
    state.version !== 1 ||
    typeof state.keyId !== 'string' ||
    !isSeq(state.installSeq) ||
    !isSeq(state.seq) ||
    typeof state.head !== 'string' ||
    typeof state.key !== 'string' ||
    !/^[0-9a-f]{64}$/.test(state.key)
  ) {
    throw new Error(`the key state ${path} does not have the fields version 1, keyId, installSeq, seq, head and a 64-hex-digit key`);
  }
  return {
    version: 1,
    keyId: state.keyId,
    installSeq: state.installSeq,
    seq: state.seq,
    head: state.head,
    key: Buffer.from(state.key, 'hex'),
  };
}

/**
 * Replaces the key state crash-safely: a temporary file `<path>.tmp` (mode 0600) is written,
 * fsync'd and renamed over the old state, so the old key is gone from the file system's view.
 * (Whether its blocks are scrubbed is up to the file system; a copy-on-write or journalled file
 * system may keep them for a while.)
 *
 * The daemon calls this once per group commit, after the ledger's fdatasync: a crash between
 * the two leaves the older key on disk, one that can still MAC the entries of that last commit.
 * On restart the daemon knows how many entries follow `seq` and evolves the key forward before
 * writing anything. The rename is not followed by a directory fsync for the same reason: a
 * crash may bring back the previous state, which restart evolves forward.
 */
export function writeKeyState(path: string, state: LedgerKeyState): void {
  writeFileDurablySync(path, formatKeyState(state), keyStateWrite(path));
}

/** {@link writeKeyState} without blocking the event loop (the daemon's path, once per group commit). */
export async function saveKeyState(path: string, state: LedgerKeyState): Promise<void> {
  await writeFileDurably(path, formatKeyState(state), keyStateWrite(path));
}

/**
 * How the key state is replaced (durable-file.ts): a fixed temporary name, so a crash leaves
 * at most one leftover, which the next write reuses; no directory flush (see writeKeyState).
 */
function keyStateWrite(path: string): DurableWriteOptions {
  return { temporaryPath: `${path}.tmp`, overwriteTemporary: true, syncDirectory: false };
}

function formatKeyState(state: LedgerKeyState): string {
  return `${JSON.stringify({
    version: 1,
    keyId: state.keyId,
    installSeq: state.installSeq,
    seq: state.seq,
    head: state.head,
    key: state.key.toString('hex'),
  })}\n`;
}

/** Parses the text of a key file made by `stopctl keygen`: 64 hex digits, surrounding space allowed. */
export function parseLedgerKey(text: string, source: string): Buffer {
  const trimmed = text.trim().toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(trimmed)) {
    throw new UsageError(`${source} is not a ledger key: it must hold 64 hex digits, as \`stopctl keygen\` writes`);
  }
  return Buffer.from(trimmed, 'hex');
}

/** Reads a key file made by `stopctl keygen`. */
export function readLedgerKeyFile(path: string): Buffer {
  return parseLedgerKey(readFileSync(path, 'utf8'), path);
}
