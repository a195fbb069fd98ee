import { accessSync, chmodSync, constants, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { errnoCode, StoreOpenError } from '../errors.js';
import { Ledger, type LedgerRetention } from './ledger.js';
import { ledgerExists } from './ledger-segments.js';
import { SyslogForwarder, type SyslogForwarderOptions } from './forwarder.js';
import { StoreQuota, type QuotaLimits } from './quota.js';
import { releaseStoreLock, takeStoreLock } from './store-lock.js';

/** Paths inside a store directory (DESIGN "Evidence"). */
export function storePaths(dir: string): { dir: string; ledger: string; records: string; lock: string; ledgerKey: string } {
  return { dir, ledger: join(dir, 'ledger'), records: join(dir, 'records'), lock: join(dir, 'lock'), ledgerKey: join(dir, 'ledger.key') };
}

/** An open evidence store, owned by one daemon at a time. */
export interface EvidenceStore {
  readonly dir: string;
  readonly ledger: Ledger;
  /** The record quota, when limits were given. */
  readonly quota: StoreQuota | undefined;
  /** Sends every ledger entry to a syslog collector, when one was given. */
  readonly forwarder: SyslogForwarder | undefined;
  /** Flushes and closes the ledger and releases the lock. Idempotent. */
  close(): Promise<void>;
}

/**
 * Opens the store directory (default `/var/lib/stopd`), creating it with mode 0700, and takes
 * its lock so that two daemons never interleave one ledger. A lock left by a process that no
 * longer exists is taken over. `options.ledgerKeyFile` installs a forward-secure ledger key
 * (`stopd --ledger-key`, see forward-mac.ts); the ledger also recovers orphaned records.
 */
export async function openStore(
  dir: string,
  options: {
    readonly ledgerKeyFile?: string;
    /** Forward every ledger entry to syslog (forwarder.ts); its state lives in `<dir>/forward-state`. */
    readonly forward?: Omit<SyslogForwarderOptions, 'ledgerPath' | 'statePath'>;
    /** Record limits (quota.ts); `records/` is scanned once here. */
    readonly quota?: QuotaLimits;
    /** Ledger segments and their retention (ledger-segments.ts); without it the ledger is one growing file. */
    readonly ledgerRetention?: LedgerRetention;
    /**
     * How long to wait for a lock held by another live process (default 0: fail at once).
     * inetd mode runs one process per connection: they take turns on the store.
     */
    readonly lockWaitMs?: number;
  } = {},
): Promise<EvidenceStore> {
  const paths = storePaths(dir);
  try {
    mkdirSync(paths.records, { recursive: true, mode: 0o700 });
    // Evidence names users and commands: only root (the daemon's user) may read it.
    chmodSync(dir, 0o700);
    chmodSync(paths.records, 0o700);
  } catch (error) {
    throw new StoreOpenError(
      `Cannot use store directory ${dir}: ${(error as Error).message}; choose a writable directory with --store`,
      { cause: error },
    );
  }
  await takeStoreLock(paths.lock, options.lockWaitMs ?? 0);
  let ledger: Ledger;
  let quota: StoreQuota | undefined;
  const forward = options.forward;
  const forwarder = forward === undefined ? undefined : new SyslogForwarder({ ...forward, ledgerPath: paths.ledger, statePath: join(dir, 'forward-state') });
  try {
    if (options.quota !== undefined) quota = await StoreQuota.open(paths.records, options.quota);
    ledger = await Ledger.open(paths.ledger, {
      keyStatePath: paths.ledgerKey,
      recordsDir: paths.records,
      ...(options.ledgerRetention === undefined ? {} : { retention: options.ledgerRetention }),
      ...(options.ledgerKeyFile === undefined ? {} : { installKeyFile: options.ledgerKeyFile }),
      ...(forwarder === undefined ? {} : { onDurable: (lines) => forwarder.push(lines) }),
    });
    // Entries the ledger holds but the collector has not had are read back from the file.
    forwarder?.start();
  } catch (error) {
    releaseStoreLock(paths.lock);
    throw new StoreOpenError(`Cannot open the ledger in ${dir}: ${(error as Error).message}`, { cause: error });
  }
  let closing: Promise<void> | undefined;
  return {
    dir,
    ledger,
    quota,
    forwarder,
    close() {
      // The forwarder closes last: it sends the ledger's final entries (bounded in time).
      closing ??= ledger
        .close()
        .finally(() => forwarder?.close())
        .finally(() => releaseStoreLock(paths.lock));
      return closing;
    },
  };
}

/**
 * Refuses, in one sentence naming `dir`, a store whose ledger cannot be read: the directory is
 * missing, not readable, or holds no ledger. A {@link StoreOpenError}, a local failure (exit 1)
 * for every stopctl command alike.
 */
export function requireStore(dir: string): void {
  const ledger = storePaths(dir).ledger;
  try {
    // The active file may be missing right after a rotation: the segments are the ledger too.
    if (ledgerExists(ledger)) return;
    accessSync(ledger, constants.R_OK);
    return;
  } catch (error) {
    const code = errnoCode(error);
    let reason: string;
    if (code === 'EACCES' || code === 'EPERM') reason = 'permission denied (a store is readable by root only)';
    else if (code === 'ENOENT' && !existsSync(dir)) reason = "the directory does not exist; give the daemon's store directory with --store";
    else if (code === 'ENOENT' || code === 'ENOTDIR') reason = "it holds no ledger; give the daemon's store directory with --store";
    else reason = (error as Error).message;
    throw new StoreOpenError(`Cannot read the store ${dir}: ${reason}`, { cause: error });
  }
}
