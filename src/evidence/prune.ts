/**
 * Retention (issue 5, part 4): `stopctl prune` removes, or gzips, SV records older than a
 * number of days and notes each one in the ledger, so that a later `redeem` says "pruned"
 * rather than reporting a missing record as tampering.
 *
 * The ledger has one writer at a time: the daemon, which holds `<store>/lock`. Prune takes
 * that same lock, so it runs only while the daemon is stopped (it refuses, saying so,
 * otherwise). This is the simplest safe design: no second writer, no socket to the daemon,
 * and the daemon's record count (quota.ts) is rescanned when it starts again.
 *
 * Order of writes, so that a crash at any point leaves a store that explains itself:
 * the gzip copy is written crash-safely first, then the `prune` entries are made durable,
 * and only then are the original files removed. A crash in between leaves a record that is
 * both present and noted as pruned (harmless), never a record gone without a note.
 */
import { readFile, readdir, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gunzip, gzip } from 'node:zlib';
import { StoreOpenError } from '../errors.js';
import type { PruneEntryInput } from './ledger-format.js';
import { syncDirectory, writeFileDurably } from './durable-file.js';
import { parseRecordFileName, recordFileName, temporaryRecordPath } from './record-files.js';
import { openStore, requireStore, storePaths } from './store.js';
import { findLockHolder } from './store-lock.js';
import { hashToken, tokenHashOf } from './tokens.js';

const gzipAsync = promisify(gzip);
const gunzipAsync = promisify(gunzip);

/** Options of {@link pruneRecords}. */
export interface PruneOptions {
  /** Records whose file was last modified more than this many days ago are pruned. */
  readonly olderThanDays: number;
  /** Compress them to `<token>.json.gz` instead of removing them (already gzipped ones stay). */
  readonly gzip?: boolean;
  /** The present, for tests; default now. */
  readonly now?: Date;
}

/** What a prune did. */
export interface PruneResult {
  /** Records modified before this instant were pruned (ISO 8601). */
  readonly cutoff: string;
  readonly removed: readonly string[];
  readonly gzipped: readonly string[];
  /** Records that could not be pruned (they are left as they were, and not noted). */
  readonly failed: readonly { readonly token: string; readonly error: string }[];
  /** Pruned records whose bytes did not match their token (noted as such in the ledger). */
  readonly unverified: readonly string[];
}

const BATCH = 64;

/**
 * Prunes the records of the store in `storeDir` older than `options.olderThanDays` days (by
 * file modification time), noting each in the ledger, then a `prune-run` summary entry.
 * Fails with a {@link StoreOpenError} while a daemon holds the store.
 */
export async function pruneRecords(storeDir: string, options: PruneOptions): Promise<PruneResult> {
  requireStore(storeDir);
  refuseWhileDaemonRuns(storeDir);
  const store = await openStore(storeDir);
  const recordsDir = storePaths(storeDir).records;
  const now = options.now ?? new Date();
  const cutoff = now.getTime() - options.olderThanDays * 86_400_000;
  const removed: string[] = [];
  const gzipped: string[] = [];
  const unverified: string[] = [];
  const failed: { token: string; error: string }[] = [];
  try {
    const candidates = await findOldRecords(recordsDir, cutoff, options.gzip === true);
    for (let start = 0; start < candidates.length; start += BATCH) {
      const prepared: { entry: PruneEntryInput; remove: string }[] = [];
      for (const candidate of candidates.slice(start, start + BATCH)) {
        try {
          prepared.push(await prepare(recordsDir, candidate, { gzip: options.gzip === true, olderThanDays: options.olderThanDays }));
        } catch (error) {
          failed.push({ token: candidate.token, error: (error as Error).message });
        }
      }
      // Durable notes first (one group commit for the batch), then the removals.
      await Promise.all(prepared.map(({ entry }) => store.ledger.append(entry)));
      for (const { entry, remove } of prepared) {
        try {
          await unlink(join(recordsDir, remove));
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
            // Noted as pruned but still there: harmless, and the next prune finds it again.
            failed.push({ token: entry.record, error: (error as Error).message });
            continue;
          }
        }
        (entry.action === 'gzipped' ? gzipped : removed).push(entry.record);
        if (!entry.verified) unverified.push(entry.record);
      }
      await syncDirectory(recordsDir);
    }
    await store.ledger.append({
      kind: 'prune-run',
      olderThanDays: options.olderThanDays,
      cutoff: new Date(cutoff).toISOString(),
      action: options.gzip === true ? 'gzip' : 'remove',
      removed: removed.length,
      gzipped: gzipped.length,
      failed: failed.length,
    });
  } finally {
    await store.close();
  }
  return { cutoff: new Date(cutoff).toISOString(), removed, gzipped, failed, unverified };
}

interface Candidate {
  readonly token: string;
  readonly name: string;
  readonly compressed: boolean;
  readonly mtime: Date;
  readonly atime: Date;
}

/** Record files modified before `cutoff`, oldest first; with `gzip`, only uncompressed ones. */
async function findOldRecords(recordsDir: string, cutoff: number, gzip: boolean): Promise<Candidate[]> {
  const found: Candidate[] = [];
  for (const name of await readdir(recordsDir)) {
    const file = parseRecordFileName(name);
    if (file.kind !== 'record') continue;
    const compressed = file.compressed;
    if (gzip && compressed) continue;
    try {
      const info = await stat(join(recordsDir, name));
      if (!info.isFile() || info.mtimeMs >= cutoff) continue;
      found.push({ token: file.token, name, compressed, mtime: info.mtime, atime: info.atime });
    } catch {
      // Gone meanwhile.
    }
  }
  return found.sort((a, b) => a.mtime.getTime() - b.mtime.getTime() || a.name.localeCompare(b.name));
}

/** Reads and checks one record; with gzip, writes its compressed copy. Returns its note and the file to remove. */
async function prepare(
  recordsDir: string,
  candidate: Candidate,
  options: { gzip: boolean; olderThanDays: number },
): Promise<{ entry: PruneEntryInput; remove: string }> {
  const raw = await readFile(join(recordsDir, candidate.name));
  const bytes = candidate.compressed ? await gunzipAsync(raw) : raw;
  const hash = tokenHashOf(candidate.token);
  const verified = hash !== undefined && hashToken(bytes, hash) === candidate.token;
  if (options.gzip) {
    await writeGzip(recordsDir, candidate, bytes);
  }
  return {
    entry: {
      kind: 'prune',
      record: candidate.token,
      action: options.gzip ? 'gzipped' : 'removed',
      verified,
      bytes: bytes.length,
      modified: candidate.mtime.toISOString(),
      olderThanDays: options.olderThanDays,
    },
    remove: candidate.name,
  };
}

/**
 * Writes `<token>.json.gz` crash-safely (durable-file.ts, with a temporary file named like
 * writeRecord's, which the ledger's recovery removes after a crash) with the original's
 * times, so its age, and with it later prunes, are unchanged. The directory is flushed once
 * per batch by the caller.
 */
async function writeGzip(recordsDir: string, candidate: Candidate, bytes: Buffer): Promise<void> {
  const packed = await gzipAsync(bytes, { level: 9 });
  await writeFileDurably(join(recordsDir, recordFileName(candidate.token, { compressed: true })), packed, {
    temporaryPath: temporaryRecordPath(recordsDir, candidate.token),
    times: { atime: candidate.atime, mtime: candidate.mtime },
    syncDirectory: false,
  });
}

/** A clear refusal while the daemon holds the store (openStore's lock check is the real guard). */
function refuseWhileDaemonRuns(storeDir: string): void {
  const owner = findLockHolder(storePaths(storeDir).lock);
  if (owner === undefined || owner === process.pid) return;
  throw new StoreOpenError(
    `Cannot prune ${storeDir}: stopd (pid ${owner}) holds the store, and only one process may write its ledger, where prune notes what it removes; stop stopd, prune, then start it again`,
  );
}
