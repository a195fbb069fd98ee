import { AccountDirectory } from '../host/users.js';
import { createLinuxSocketTable } from '../host/linux-sockets.js';
import type { Endpoint, SocketTable } from '../host/types.js';
import { openStore } from '../evidence/store.js';
import type { TokenHash } from '../evidence/tokens.js';
import type { Logger } from './logger.js';
import type { ReplyPolicy } from './policy.js';
import { Responder } from './responder.js';
import { Semaphore } from './semaphore.js';
import { StopServer, type ListenAddress } from './server.js';

/** Everything the daemon can be told (the command line maps onto this one to one). */
export interface DaemonOptions {
  readonly listen: readonly ListenAddress[];
  readonly storeDir: string;
  readonly policy: ReplyPolicy;
  readonly optIn: boolean;
  readonly maxConnections: number;
  readonly maxLookups: number;
  readonly idleTimeoutMs: number;
  readonly maxLineLength: number;
  readonly tokenHash: TokenHash;
  readonly log: Logger;
  /** Replaces the Linux socket table (tests). */
  readonly sockets?: SocketTable;
}

/** Built-in defaults; `stopd --help` prints them. */
export const DEFAULTS = {
  listen: [{ host: '::', port: 113 }] as const,
  storeDir: '/var/lib/stopd',
  maxConnections: 256,
  maxLookups: 16,
  idleTimeoutSec: 60,
  maxLineLength: 512,
  tokenHash: 'sha256' as TokenHash,
};

/** A running daemon. */
export interface RunningDaemon {
  readonly endpoints: readonly Endpoint[];
  /** Drains connections, flushes the ledger, releases the store. Idempotent. */
  close(): Promise<void>;
}

/** Opens the store, binds the listeners and starts answering. */
export async function startDaemon(options: DaemonOptions): Promise<RunningDaemon> {
  const store = await openStore(options.storeDir);
  try {
    const sockets = options.sockets ?? createLinuxSocketTable({ log: (message) => options.log.warn(message) });
    const responder = new Responder({
      sockets,
      ledger: store.ledger,
      accounts: new AccountDirectory(),
      // Waiters beyond four times the limit are turned away with an error reply (duty 10).
      lookups: new Semaphore(options.maxLookups, { maxWaiting: options.maxLookups * 4 + options.maxConnections }),
      policy: options.policy,
      optIn: options.optIn,
      tokenHash: options.tokenHash,
      log: options.log,
    });
    const server = new StopServer(responder, {
      listen: options.listen,
      maxConnections: options.maxConnections,
      idleTimeoutMs: options.idleTimeoutMs,
      maxLineLength: options.maxLineLength,
      log: options.log,
    });
    let endpoints: Endpoint[];
    try {
      endpoints = await server.listen();
    } catch (error) {
      await server.close();
      throw error;
    }
    let closing: Promise<void> | undefined;
    return {
      endpoints,
      close() {
        closing ??= server.close().then(() => store.close());
        return closing;
      },
    };
  } catch (error) {
    await store.close();
    throw error;
  }
}
