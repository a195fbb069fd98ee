/**
 * Local failures of stopd and stopctl: every one has a stable `code` so callers, logs and
 * tests can tell them apart without parsing messages. What goes on the wire (`NO-USER`,
 * `INVALID-PORT`, ...) is not here: those are protocol values (src/protocol/errors.ts).
 *
 * Messages are sentence case with the cause after a colon, and say how to fix the problem
 * where the user can.
 */
export class StopdError extends Error {
  /** Stable identifier, e.g. `ERR_PEER_TIMEOUT`; documented in the README. */
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** The command line or configuration is wrong; the message says how to fix it. */
export class UsageError extends StopdError {
  constructor(message: string) {
    super('ERR_USAGE', message);
  }
}

/** A peer (an upstream STOP daemon, or the daemon asked by `stopctl query`) did not answer in time. */
export class PeerTimeoutError extends StopdError {
  constructor(message: string) {
    super('ERR_PEER_TIMEOUT', message);
  }
}

/** A peer could not be reached at all (refused, unreachable, reset before a reply). */
export class PeerUnreachableError extends StopdError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_PEER_UNREACHABLE', message, options);
  }
}

/** A peer answered something that is not a well-formed reply line. */
export class PeerProtocolError extends StopdError {
  constructor(message: string) {
    super('ERR_PEER_PROTOCOL', message);
  }
}

/** A peer sent a reply line longer than the client accepts (RFC 1413 lets a client give up after 1000 characters). */
export class PeerReplyTooLongError extends StopdError {
  constructor(message: string) {
    super('ERR_PEER_REPLY_TOO_LONG', message);
  }
}

/** The evidence store could not durably write; nothing that depends on the write is replied. */
export class StoreWriteError extends StopdError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_STORE_WRITE', message, options);
  }
}

/** The evidence store is not usable (missing, wrong permissions, locked by another daemon). */
export class StoreOpenError extends StopdError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_STORE_OPEN', message, options);
  }
}

/** A listening address could not be bound (in use, not an address of this host, a privileged port). */
export class ListenError extends StopdError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_LISTEN', message, options);
  }
}

/** A semaphore's wait queue is full (lookups under `--max-lookups`, or analyses): the daemon is overloaded. */
export class OverloadError extends StopdError {
  constructor(message: string) {
    super('ERR_OVERLOADED', message);
  }
}

/** A token is not known to this store. */
export class UnknownTokenError extends StopdError {
  constructor(message: string) {
    super('ERR_UNKNOWN_TOKEN', message);
  }
}

/** Stored evidence does not match its token or the ledger chain. */
export class IntegrityError extends StopdError {
  constructor(message: string) {
    super('ERR_INTEGRITY', message);
  }
}

/** The errno name (`ENOENT`, `EPERM`, ...) that a Node.js or native addon error carries, or undefined. */
export function errnoCode(error: unknown): string | undefined {
  if (typeof error === 'object' && error !== null && 'code' in error && typeof error.code === 'string') return error.code;
  return undefined;
}

/** The OS view could not be read (netlink failure, /proc unreadable). */
export class HostLookupError extends StopdError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_HOST_LOOKUP', message, options);
  }
}

/**
 * `--nat`: the kernel's connection tracking cannot be read (no CAP_NET_ADMIN in the daemon's
 * network namespace, no ctnetlink in the kernel, no addon); the message says which.
 */
export class ConntrackError extends StopdError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_CONNTRACK', message, options);
  }
}

/**
 * The analysis worker thread ended (a crash, a failed start, `close`) before it answered: the
 * request in flight gets the error reply of the policy, and the next one starts a new worker.
 */
export class AnalysisWorkerError extends StopdError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_ANALYSIS_WORKER', message, options);
  }
}
