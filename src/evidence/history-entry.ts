/**
 * What the history journal keeps of one outbound connection (issue 14): the recorder's
 * attribution, and what the daemon captured of the process behind it while it still existed,
 * so that a request after the connection closed can be answered and followed upstream.
 */
import type { Endpoint, ProcessFacts } from '../host/types.js';

/** An inbound TCP connection held by the connecting process's ancestry or closure: where a recursive request goes. */
export interface HistoryUpstreamCandidate {
  /** This host's end of the inbound connection. */
  readonly local: Endpoint;
  /** The previous host's end. */
  readonly remote: Endpoint;
  /** The process that held it when captured. */
  readonly pid: number;
}

/** One recorded outbound connection, as the journal's `open` entry holds it (times are ISO 8601 UTC). */
export interface HistoryConnection {
  /** The journal sequence number of its `open` entry: what an ID token points to. */
  readonly seq: number;
  readonly socket: string;
  readonly netns: number;
  readonly local: Endpoint;
  readonly remote: Endpoint;
  readonly connectedAt: string;
  readonly establishedAt: string | null;
  /** Null while open (or when the close was not seen: see the gaps). */
  readonly closedAt: string | null;
  readonly tid: number;
  readonly pid: number;
  readonly uid: number;
  readonly gid: number;
  readonly loginuid: number;
  readonly sessionid: number;
  readonly comm: string;
  /** When the daemon read the processes below; null when the process had already exited. */
  readonly capturedAt: string | null;
  /** The connecting process first, then its parents up to the session leader (or init); empty when it had exited. */
  readonly ancestry: readonly ProcessFacts[];
  readonly upstream: readonly HistoryUpstreamCandidate[];
}

/** Lookups the daemon answers requests with. */
export interface HistoryLookup {
  /** The latest recorded connection with exactly this 4-tuple (a reused tuple gives the newest), or undefined. */
  findConnection(local: Endpoint, remote: Endpoint): HistoryConnection | undefined;
}
