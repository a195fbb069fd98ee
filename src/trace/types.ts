/**
 * The result of the closure analysis (paper 3.2, 3.5 to 3.7). Every value is a plain object
 * of numbers, strings, booleans, arrays and null: it goes into the evidence record as JSON.
 */
import type { Endpoint, ProcessFacts, TcpSocket, TcpState } from '../host/types.js';

/**
 * Direction of a TCP socket. Linux keeps no direction flag (paper 4), so it is inferred
 * (DESIGN.md, Host view): `inbound` when a listener accepts at the local endpoint,
 * `outbound` when not (or, host-local, when a listener accepts at the remote endpoint),
 * `listen` for listeners, and `unknown` when the evidence does not decide (see
 * {@link ResolveClosureOptions.ephemeralPorts}).
 */
export type TcpDirection = 'inbound' | 'outbound' | 'listen' | 'unknown';

/** An inclusive port range, e.g. `/proc/sys/net/ipv4/ip_local_port_range`. */
export interface PortRange {
  readonly low: number;
  readonly high: number;
}

/** Options of `resolveClosure`. */
export interface ResolveClosureOptions {
  /** The queried connection, as `findTcp` returned it. */
  readonly socket: TcpSocket;
  /**
   * Stop adding processes at this many (the closure is then `truncated`, with a
   * `limit-processes` problem); default {@link DEFAULT_CLOSURE_LIMITS}.maxProcesses. Processes
   * read only to check a pipe end count too, up to twice this.
   */
  readonly maxProcesses?: number;
  /**
   * Descriptors (sockets and pipes) examined per process: a process with more is listed with
   * the first ones only, and the queried socket always (`fdsOmitted`, `limit-descriptors`).
   * A process with more than this, other than a holder of the queried socket, is a hub
   * without any of its descriptors being resolved. Default {@link DEFAULT_CLOSURE_LIMITS}.
   */
  readonly maxFdsPerProcess?: number;
  /** Descriptors examined in the whole analysis; beyond, processes are listed without them. Default {@link DEFAULT_CLOSURE_LIMITS}. */
  readonly maxDescriptors?: number;
  /** Links and channels at most (`limit-links`). Default {@link DEFAULT_CLOSURE_LIMITS}. */
  readonly maxLinks?: number;
  /**
   * A process (other than a holder of the queried socket) with more pipes, UNIX sockets and
   * host-local TCP connections than this is recorded but its IPC is not followed (`ipc:
   * 'hub'`): loggers, buses and proxies talk to everything, and following them would pull
   * unrelated services and their clients in (paper 4.1, the "avalanche"); default 64.
   */
  readonly maxIpcPerProcess?: number;
  /**
   * UNIX sockets whose own or peer path starts with one of these are recorded but not
   * followed: the system logger and message buses, which every service is connected to;
   * default {@link DEFAULT_UNFOLLOWED_UNIX_PATHS}. Pass `[]` to follow every UNIX socket.
   */
  readonly unfollowedUnixPaths?: readonly string[];
  /**
   * The host's ephemeral port range. Without it, a connection with no listener at its local
   * endpoint is `outbound`. With it, such a connection whose local port lies outside the
   * range is `unknown` instead: it may have been accepted by a program that closed its
   * listener afterwards (Hobbit's netcat `nc -l`, paper fig. 6; socat without `fork`), or be
   * a client that bound a fixed port. `unknown` connections are upstream candidates
   * (paper 4: "when direction is not known requests are sent to all sockets").
   */
  readonly ephemeralPorts?: PortRange;
}

/** A TCP socket held by a process of the closure. */
export interface ClosureTcpSocket {
  readonly kind: 'tcp';
  readonly fd: number;
  readonly inode: number;
  readonly state: TcpState;
  readonly local: Endpoint;
  readonly remote: Endpoint;
  readonly direction: TcpDirection;
  /** True for the connection the request asked about. */
  readonly queried: boolean;
  /**
   * Host-local connections: the processes of the closure holding the other end (reversed
   * 4-tuple), at most {@link MAX_LISTED_PIDS}; otherwise empty.
   */
  readonly peerPids: readonly number[];
  /** How many `peerPids` there are, present only when the list holds the first of them (see {@link ClosureChannel}). */
  readonly peerCount?: number;
  /** Other processes of the closure holding this same socket, at most {@link MAX_LISTED_PIDS}. */
  readonly sharedWith: readonly number[];
  /** How many `sharedWith` there are, present only when the list holds the first of them. */
  readonly sharedCount?: number;
}

/** A UNIX domain socket held by a process of the closure. */
export interface ClosureUnixSocket {
  readonly kind: 'unix';
  readonly fd: number;
  readonly inode: number;
  readonly path: string | null;
  readonly type: 'stream' | 'dgram' | 'seqpacket';
  /** Peer socket inode, 0 when unconnected or unknown. */
  readonly peer: number;
  /** Processes of the closure holding the peer socket, at most {@link MAX_LISTED_PIDS}. */
  readonly peerPids: readonly number[];
  /** How many `peerPids` there are, present only when the list holds the first of them. */
  readonly peerCount?: number;
  /** Other processes of the closure holding this same socket, at most {@link MAX_LISTED_PIDS}. */
  readonly sharedWith: readonly number[];
  /** How many `sharedWith` there are, present only when the list holds the first of them. */
  readonly sharedCount?: number;
}

/** A socket neither the TCP nor the UNIX table knows (UDP, raw, netlink, ...), or one that closed meanwhile. */
export interface ClosureOtherSocket {
  readonly kind: 'other';
  readonly fd: number;
  readonly inode: number;
}

export type ClosureSocket = ClosureTcpSocket | ClosureUnixSocket | ClosureOtherSocket;

/** A pipe (or FIFO) descriptor of a process of the closure. */
export interface ClosurePipe {
  readonly fd: number;
  readonly inode: number;
  readonly end: 'read' | 'write' | 'both';
  /** The other processes of the closure holding this pipe (either end), at most {@link MAX_LISTED_PIDS}. */
  readonly otherPids: readonly number[];
  /**
   * How many other processes of the closure hold this pipe, present only when `otherPids`
   * lists the first {@link MAX_LISTED_PIDS} of them; the pipe's {@link ClosureChannel} names all.
   */
  readonly otherCount?: number;
}

/**
 * Per-descriptor pid lists (`otherPids`, `sharedWith`, `peerPids`) hold at most this many:
 * with N processes sharing one pipe, full lists would hold N^2 pids in all. Who holds an
 * object with more holders is in its {@link ClosureChannel}, once.
 */
export const MAX_LISTED_PIDS = 8;

/**
 * An IPC object with too many holders to link pairwise: more than {@link MAX_PAIR_LINKS}
 * {@link ClosureLink}s would be needed (a pipe inherited by a thousand workers needs a
 * million). It stands for the links "every process of `from` to every process of `to`" of
 * `kind` (the same meaning as {@link ClosureLink}), each pid listed once, so the record grows
 * with the holders, not their square; pictures draw it as one node.
 * - `pipe`: `inodes` `[pipe]`, `from` the writers, `to` the readers (an O_RDWR end is both).
 * - `tcp`: `inodes` `[client socket, server socket]`, `from` and `to` their holders.
 * - `unix`: `inodes` `[socket, peer]`, `from` and `to` their holders.
 * - `shared`: `inodes` `[socket]`, `from` every holder, `to` empty.
 */
export interface ClosureChannel {
  readonly kind: 'pipe' | 'tcp' | 'unix' | 'shared';
  readonly inodes: readonly number[];
  readonly from: readonly number[];
  readonly to: readonly number[];
}

/** An object needing more pairwise links than this becomes a {@link ClosureChannel}. */
export const MAX_PAIR_LINKS = 16;

/** Defaults of the bounds of one analysis ({@link ResolveClosureOptions}); README "Limits". */
export const DEFAULT_CLOSURE_LIMITS = Object.freeze({
  maxProcesses: 1_000,
  maxFdsPerProcess: 256,
  maxDescriptors: 16_384,
  maxLinks: 20_000,
});

/**
 * Whether a process's sockets and pipes were followed: `followed`, or why not: `root` (the
 * process whose ppid is 0 — init, or a container's first process — reached as an ancestor:
 * every process descends from it, so its IPC would link the whole host), `hub` (see
 * {@link ResolveClosureOptions.maxIpcPerProcess}), `truncated` (maxProcesses reached first).
 */
export type ClosureIpc = 'followed' | 'root' | 'hub' | 'truncated';

/** One process of the closure, with the per-process data of paper Table II. */
export interface ClosureProcess extends ProcessFacts {
  /**
   * `primary`: holds the queried socket, or is an ancestor of one that does (paper fig. 8,
   * "Primary Processes"); `resolved`: reached through IPC, or an ancestor of such a process.
   */
  readonly role: 'primary' | 'resolved';
  readonly ipc: ClosureIpc;
  readonly sockets: readonly ClosureSocket[];
  readonly pipes: readonly ClosurePipe[];
  /**
   * Sockets and pipes the process held but the analysis did not examine (the
   * `maxFdsPerProcess` or `maxDescriptors` bound): they are missing from `sockets` and
   * `pipes`. Present only when some were left out.
   */
  readonly fdsOmitted?: number;
}

/**
 * How two processes of the closure are connected (paper fig. 9):
 * - `parent`: `from` is the parent of `to`; `inodes` empty.
 * - `pipe`: `from` holds the write end, `to` the read end (an O_RDWR end counts as both); `inodes` `[pipe]`.
 * - `tcp`: a host-local connection, `from` the connecting side, `to` the accepting side
 *   (`from` is the side earlier in closure order when direction is unknown); `inodes` `[from's socket, to's socket]`.
 * - `unix`: connected UNIX sockets (no direction: `from` is the side earlier in closure order); `inodes` `[from's, to's]`.
 * - `shared`: both processes hold the same socket (inherited across fork, or passed); `inodes` `[socket]`.
 */
export interface ClosureLink {
  readonly kind: 'parent' | 'pipe' | 'tcp' | 'unix' | 'shared';
  readonly from: number;
  readonly to: number;
  readonly inodes: readonly number[];
}

/** A connection to send a recursive (`_REC`) request about (paper 3.1.3, 4). */
export interface UpstreamCandidate {
  readonly local: Endpoint;
  readonly remote: Endpoint;
  readonly inode: number;
  readonly state: TcpState;
  readonly direction: 'inbound' | 'unknown';
  /** Processes of the closure holding it. */
  readonly pids: readonly number[];
}

/** The processes and IPC reachable from a queried connection, and the upstream candidates. */
export interface Closure {
  readonly queried: TcpSocket;
  /** Primary processes first, then resolved ones, each in discovery order. */
  readonly processes: readonly ClosureProcess[];
  readonly links: readonly ClosureLink[];
  /** IPC objects with too many holders for pairwise links. */
  readonly channels: readonly ClosureChannel[];
  readonly upstream: readonly UpstreamCandidate[];
  /** Pids that a lookup named but that exited before they could be read. */
  readonly vanished: readonly number[];
  /** True when a bound (processes, descriptors, links) cut the analysis short; `problems` says which. */
  readonly truncated: boolean;
  /** What the analysis could not see or had to cut short, for the record's `problems`. */
  readonly problems: readonly AnalysisProblem[];
}

/**
 * Something an analysis could not see or had to cut short, said in the record so that an
 * investigator can tell "nobody" from "not seen" (issue 13).
 */
export interface AnalysisProblem {
  /** Stable kebab-case code for tools, e.g. `no-visible-holder`. */
  readonly code: string;
  /** One sentence for people. */
  readonly message: string;
  /**
   * Why, when the code has reasons to tell apart (kebab-case): for `no-visible-holder`
   * `other-pid-namespace`, `vanished`, `denied`, `closed` or `unknown`.
   */
  readonly reason?: string;
}

/**
 * UNIX socket paths not followed by default: journald's stdout and syslog sockets, systemd's
 * private and notify sockets, and the D-Bus system bus.
 */
export const DEFAULT_UNFOLLOWED_UNIX_PATHS: readonly string[] = Object.freeze([
  '/run/systemd/',
  '/var/run/systemd/',
  '/run/dbus/',
  '/var/run/dbus/',
  '/dev/log',
]);
