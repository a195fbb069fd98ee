/**
 * What the kernel tells stopd about outbound TCP connections as they happen (issue 14, the
 * history). The Linux implementation is an eBPF program on `sock:inet_sock_set_state` loaded
 * by the native addon; without BPF there is no recorder and stopd describes only the present.
 *
 * The kernel sees the connecting process at SYN_SENT but not yet the source port, so the
 * program keeps the attribution per socket and emits one `open` event when the 4-tuple is
 * known (ESTABLISHED, or CLOSE straight from SYN_SENT for a connect that failed), and one
 * `close` event when the socket reaches CLOSE.
 */
import type { Endpoint } from './types.js';

/** An outbound connection, attributed in the context of the process that called connect(). */
export interface OutboundOpenEvent {
  readonly kind: 'open';
  /** The kernel socket pointer as lowercase hex: the key joining `open` and `close` while the socket lives. */
  readonly socket: string;
  /** Milliseconds since the epoch of the SYN_SENT transition (the connect call). */
  readonly connectedAt: number;
  /** Milliseconds since the epoch of ESTABLISHED, or null when the connect failed. */
  readonly establishedAt: number | null;
  /** Thread id and process id (tgid) of the caller, as seen from the initial PID namespace. */
  readonly tid: number;
  readonly pid: number;
  readonly uid: number;
  readonly gid: number;
  /** Audit login uid and session id: they survive su/sudo (4294967295 = unset). */
  readonly loginuid: number;
  readonly sessionid: number;
  /** The kernel's comm name of the calling thread. */
  readonly comm: string;
  /** Inode number of the socket's network namespace. */
  readonly netns: number;
  readonly local: Endpoint;
  readonly remote: Endpoint;
}

/** The end of a connection an `open` event announced. */
export interface OutboundCloseEvent {
  readonly kind: 'close';
  readonly socket: string;
  /** Milliseconds since the epoch of the CLOSE transition. */
  readonly closedAt: number;
  readonly netns: number;
  readonly local: Endpoint;
  readonly remote: Endpoint;
}

/**
 * Events the recorder knows it lost: a kernel ring full, a transition it could not attribute
 * (its SYN_SENT was before the recorder started), or a state change the kernel did not run the
 * program for (`recursion`: it was already running on that CPU, interrupted by a softirq).
 * Loss is evidence: it becomes a gap in the ledger with its time range.
 */
export interface RecorderLossEvent {
  readonly kind: 'loss';
  readonly reason: 'ring-buffer-full' | 'unattributed' | 'recursion';
  readonly count: number;
  /** Milliseconds since the epoch: the range in which the loss happened. */
  readonly from: number;
  readonly to: number;
}

/** One event from the recorder. */
export type ConnectionEvent = OutboundOpenEvent | OutboundCloseEvent | RecorderLossEvent;

/** Whether this host can record connections, and if not, the one sentence saying why. */
export type RecorderAvailability =
  | { readonly available: true }
  | { readonly available: false; readonly reason: string };

/** A running connection recorder. */
export interface ConnectionRecorder {
  /** Stop recording and release the kernel objects; events already read are delivered first. */
  close(): Promise<void>;
}

/** Starts recording; `onEvents` receives batches in kernel order. */
export type StartConnectionRecorder = (onEvents: (events: readonly ConnectionEvent[]) => void) => ConnectionRecorder;
