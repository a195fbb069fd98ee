/**
 * Whether anyone the analysis could see holds the queried socket (issue 13, item 4). A record
 * with no holder must say why, so that an investigator can tell "nobody" from "not seen".
 */
import type { TcpSocket } from '../host/types.js';
import type { AnalysisProblem } from './types.js';

/** Why no visible process holds the queried socket (the `reason` of a `no-visible-holder` problem). */
export type UnseenHolderReason = 'vanished' | 'closed' | 'other-pid-namespace' | 'denied' | 'unknown';

/** What {@link checkHolderVisibility} decides from. */
export interface HolderVisibilityFacts {
  /** The queried connection. */
  readonly socket: Pick<TcpSocket, 'inode' | 'uid'>;
  /** Pids the descriptor scan named as holders of the socket. */
  readonly holders: readonly number[];
  /** The holders whose process the analysis could read (the record's holders). */
  readonly readHolders: readonly number[];
  /** Pids whose descriptors could not be read at all. */
  readonly denied: readonly number[];
  /** Which processes stopd's `/proc` shows (host/pid-namespace.ts). */
  readonly pidNamespace: 'initial' | 'nested' | 'unknown';
}

/** Pids listed in a message at most; the record's `denied` has them all. */
const MAX_LISTED_PIDS = 10;

/**
 * The `no-visible-holder` problem of a record whose queried socket no readable process holds,
 * with the most telling reason first: the holders `vanished` (named by the scan, exited before
 * they were read); the socket is `closed` (inode 0: no descriptor refers to it); stopd sees an
 * `other-pid-namespace` than the host's first (the holder is probably outside it); some pids
 * were `denied` (one may be the holder); else `unknown` (a descriptor in flight in a UNIX
 * socket message, held by the kernel alone, or closed just before the scan). Undefined when a
 * holder was read. The connection and its owner uid are real either way.
 */
export function checkHolderVisibility(facts: HolderVisibilityFacts): AnalysisProblem | undefined {
  if (facts.readHolders.length > 0) return undefined;
  const lead = `No process visible to stopd holds the queried socket (socket:[${facts.socket.inode}], owner uid ${facts.socket.uid})`;
  const deniedClause =
    facts.denied.length === 0
      ? undefined
      : `the descriptors of ${facts.denied.length} process${facts.denied.length === 1 ? '' : 'es'} (pid${facts.denied.length === 1 ? '' : 's'} ${listPids(facts.denied)}) could not be read, and one of them may hold it`;
  let reason: UnseenHolderReason;
  const clauses: string[] = [];
  if (facts.holders.length > 0) {
    reason = 'vanished';
    clauses.push(`its holder${facts.holders.length === 1 ? '' : 's'} (pid${facts.holders.length === 1 ? '' : 's'} ${listPids(facts.holders)}) exited between the socket lookup and the process scan`);
  } else if (facts.socket.inode === 0) {
    reason = 'closed';
    clauses.push('the socket has no inode: no descriptor refers to it any more');
  } else if (facts.pidNamespace === 'nested') {
    reason = 'other-pid-namespace';
    clauses.push('stopd runs in a PID namespace other than the host\'s first one (a container?), so the holder is probably a process outside it, which stopd cannot see');
    if (deniedClause !== undefined) clauses.push(deniedClause);
  } else if (deniedClause !== undefined) {
    reason = 'denied';
    clauses.push(deniedClause);
  } else {
    reason = 'unknown';
    clauses.push('its descriptor may be in flight in a UNIX socket message, held by the kernel alone, or closed just before the scan');
  }
  return { code: 'no-visible-holder', reason, message: `${lead}: ${clauses.join('; ')}` };
}

function listPids(pids: readonly number[]): string {
  const shown = pids.slice(0, MAX_LISTED_PIDS).join(', ');
  return pids.length > MAX_LISTED_PIDS ? `${shown} and ${pids.length - MAX_LISTED_PIDS} more` : shown;
}
