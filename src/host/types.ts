/**
 * The OS view stopd works on. `trace/` and `daemon/` only ever see these interfaces; the
 * Linux implementation (netlink + /proc) and the in-memory fake both implement them.
 */

/** One end of a TCP connection. `address` is canonical text: dotted IPv4, or IPv6 as `net.SocketAddress` prints it (never v4-mapped: `::ffff:1.2.3.4` is normalised to `1.2.3.4`). */
export interface Endpoint {
  readonly address: string;
  readonly port: number;
}

/** TCP states as the kernel names them, in the kernel's order: state number N is entry N-1 (include/net/tcp_states.h). */
export const TCP_STATE_NAMES = [
  'ESTABLISHED',
  'SYN_SENT',
  'SYN_RECV',
  'FIN_WAIT1',
  'FIN_WAIT2',
  'TIME_WAIT',
  'CLOSE',
  'CLOSE_WAIT',
  'LAST_ACK',
  'LISTEN',
  'CLOSING',
  'NEW_SYN_RECV',
] as const;

/** A TCP state name. */
export type TcpState = (typeof TCP_STATE_NAMES)[number];

/** A TCP socket as the kernel reports it. */
export interface TcpSocket {
  readonly state: TcpState;
  /** Owner uid of the socket (the uid of the process that created it). */
  readonly uid: number;
  /** Socket inode: links the socket to `/proc/PID/fd/*` entries `socket:[inode]`. 0 for TIME_WAIT. */
  readonly inode: number;
  readonly local: Endpoint;
  readonly remote: Endpoint;
}

/** Exact socket lookups; constant time at any table size on Linux (netlink SOCK_DIAG). */
export interface SocketTable {
  /** The TCP socket with exactly this 4-tuple, IPv4 or IPv6, or undefined. */
  findTcp(local: Endpoint, remote: Endpoint): TcpSocket | undefined;
  /** Whether a TCP listener accepts connections at `local` (bound to it or to a wildcard address). */
  hasListener(local: Endpoint): boolean;
}

/** A UNIX domain socket (netlink UNIX_DIAG with UDIAG_SHOW_PEER, or /proc/net/unix without peers). */
export interface UnixSocket {
  readonly inode: number;
  /** Bound path; abstract names start with `@`; null when unbound. */
  readonly path: string | null;
  /** Inode of the connected peer socket, or 0 when unconnected or unknown. */
  readonly peer: number;
  readonly type: 'stream' | 'dgram' | 'seqpacket';
}

/** What a socket descriptor of a process is ({@link SocketInventory.socketOf}). */
export type FdSocket =
  | { readonly kind: 'tcp'; readonly socket: TcpSocket }
  | { readonly kind: 'unix'; readonly socket: UnixSocket };

/**
 * Per-socket views, used when analysing processes (SV requests), never for a plain ID. On
 * Linux each answer costs a few system calls for the socket asked about, whatever the size of
 * the host's socket tables (pidfd_getfd and exact sock_diag lookups).
 */
export interface SocketInventory {
  /**
   * What descriptor `fd` of process `pid` is, given the socket inode its `/proc` link named:
   * a TCP or UNIX socket, or undefined for any other kind (UDP, netlink, ...), and when the
   * process or descriptor is gone or the descriptor no longer is socket `inode`.
   */
  socketOf(pid: number, fd: number, inode: number): FdSocket | undefined;
  /** The UNIX socket with this inode (e.g. a peer that a UNIX socket names), or undefined. */
  findUnix(inode: number): UnixSocket | undefined;
}

/** One open file descriptor of interest: sockets and pipes (paper Table II: open sockets and pipes). */
export type OpenFd =
  | { readonly fd: number; readonly kind: 'socket'; readonly inode: number }
  | {
      readonly fd: number;
      readonly kind: 'pipe';
      readonly inode: number;
      /** Which end this descriptor is, from the fd link's mode (a FIFO opened O_RDWR is 'both'). */
      readonly end: 'read' | 'write' | 'both';
    };

/** One process as /proc shows it (paper Table II, per process). */
export interface ProcessInfo {
  readonly pid: number;
  readonly ppid: number;
  /** The kernel's comm name (`/proc/PID/stat` field 2). */
  readonly name: string;
  readonly uid: { readonly real: number; readonly effective: number };
  /** Start time, ISO 8601 UTC (boot time + starttime ticks). */
  readonly startTime: string;
  /** Controlling terminal (`/dev/pts/3`), or null. */
  readonly tty: string | null;
  readonly priority: number;
  readonly nice: number;
  readonly pgid: number;
  readonly sid: number;
  /**
   * argv; empty for kernel threads or when command lines are not read. A command line longer
   * than {@link MAX_CMDLINE_BYTES} holds the arguments of its first bytes only (the last one
   * cut), and `cmdlineTruncated` says so.
   */
  readonly cmdline: readonly string[];
  /**
   * Present when `cmdline` is a prefix: the whole of `/proc/PID/cmdline` as read, its length
   * in bytes and its SHA-256 (lowercase hex), so the record still proves what was there.
   */
  readonly cmdlineTruncated?: { readonly bytes: number; readonly sha256: string };
  readonly fds: readonly OpenFd[];
}

/** Bytes of a command line kept in a record; the rest is only hashed ({@link ProcessInfo.cmdlineTruncated}). */
export const MAX_CMDLINE_BYTES = 4096;

/** What is recorded of a process (paper Table II): everything but its open descriptors. */
export type ProcessFacts = Omit<ProcessInfo, 'fds'>;

/** Process-side view of the host. Implementations read synchronously: a snapshot should be coherent. */
export interface ProcessTable {
  /** The process, or undefined when it does not exist (or exited while being read). */
  getProcess(pid: number): ProcessInfo | undefined;
  /**
   * Every process holding a socket or pipe inode. `ownerUid` is a hint: processes of that uid
   * are scanned first, but holders of other uids are still reported.
   */
  findHolders(inode: number, ownerUid?: number): number[];
  /**
   * Which end of pipe `inode` process `pid` holds, as seen by the last `findHolders(inode)`
   * (an O_RDWR FIFO, or both ends, is `both`), or undefined when it holds none or is gone.
   * Optional: it lets the closure filter the thousands of co-readers of an inherited pipe
   * with one cheap question each instead of reading each process (issue 13).
   */
  pipeEndOf?(pid: number, inode: number): 'read' | 'write' | 'both' | undefined;
  /** Whether `address` is one of this host's own addresses (loopback included). */
  isLocalAddress(address: string): boolean;
}

/** Everything `trace/` needs to know about a host. */
export interface HostView extends SocketTable, SocketInventory, ProcessTable {}

/** Per-request facts about the host (paper Table II, per request). */
export interface HostFacts {
  readonly hostname: string;
  /** ISO 8601 UTC. */
  readonly bootTime: string;
  /** `uname -r`-like kernel release and version. */
  readonly kernel: string;
  /** PRETTY_NAME from /etc/os-release, or null. */
  readonly os: string | null;
}

/** One utmp record (glibc x86_64 layout, 384 bytes). */
export interface UtmpEntry {
  readonly type: string;
  readonly pid: number;
  readonly line: string;
  readonly user: string;
  readonly host: string;
  /** ISO 8601 UTC. */
  readonly time: string;
  readonly address: string | null;
}
