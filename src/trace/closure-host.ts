/**
 * The host view as one closure analysis asks it: every question (holders of an inode, what a
 * descriptor is, the reversed 4-tuple, listeners) goes to the {@link HostView} once, and the
 * answers that follow from them (is a connection host-local IPC, its direction) are worked
 * out here. Pure, like the rest of trace/.
 */
import type { Endpoint, FdSocket, HostView, OpenFd, TcpSocket, UnixSocket } from '../host/types.js';
import type { PortRange, TcpDirection } from './types.js';

/** What a {@link ClosureHost} needs to know about the analysis. */
export interface ClosureHostOptions {
  /** The queried connection: its descriptors are known to be it without asking. */
  readonly queried: TcpSocket;
  /** UNIX socket path prefixes whose sockets are not followed. */
  readonly unfollowedUnixPaths: readonly string[];
  /** The kernel's ephemeral port range, to tell an accepted connection whose listener closed from an outbound one. */
  readonly ephemeralPorts?: PortRange;
}

/** The host's answers for one closure analysis, each asked once. */
export class ClosureHost {
  readonly #host: HostView;
  readonly #queried: TcpSocket;
  readonly #unfollowedPaths: readonly string[];
  readonly #ephemeral: PortRange | undefined;
  readonly #holders = new Map<number, number[]>();
  readonly #reversed = new Map<number, TcpSocket | null>();
  readonly #listeners = new Map<string, boolean>();
  /** What each socket inode is, as first found through a descriptor holding it. */
  readonly #sockets = new Map<number, FdSocket>();
  /** Descriptors (`pid:fd`) found to be no TCP or UNIX socket (or gone), so each is asked once. */
  readonly #notSockets = new Set<string>();
  /** UNIX sockets looked up by inode alone (peers), null when there is none. */
  readonly #unixByInode = new Map<number, UnixSocket | null>();

  /** Throws RangeError when `ephemeralPorts` is not a port range. */
  constructor(host: HostView, options: ClosureHostOptions) {
    this.#host = host;
    this.#queried = options.queried;
    this.#unfollowedPaths = options.unfollowedUnixPaths;
    const range = options.ephemeralPorts;
    if (range !== undefined) {
      const port = (value: number): boolean => Number.isSafeInteger(value) && value >= 1 && value <= 65535;
      if (!port(range.low) || !port(range.high) || range.low > range.high) {
        throw new RangeError(`Cannot resolve closure: ephemeralPorts ${range.low}-${range.high} is not a port range`);
      }
    }
    this.#ephemeral = range;
  }

  /** findHolders, asked once per inode. */
  holdersOf(inode: number, ownerUid: number): number[] {
    let pids = this.#holders.get(inode);
    if (pids === undefined) {
      pids = this.#host.findHolders(inode, ownerUid);
      this.#holders.set(inode, pids);
    }
    return pids;
  }

  /** Loopback or own-address connections are IPC (paper 3.2, 4): both ends are on this host. */
  isLocalConnection(tcp: TcpSocket): boolean {
    return tcp.state !== 'LISTEN' && tcp.inode > 0 && this.#host.isLocalAddress(tcp.remote.address);
  }

  /** Whether a UNIX socket or its peer is bound under one of the unfollowed path prefixes. */
  isUnfollowedUnix(unix: UnixSocket): boolean {
    const paths = [unix.path];
    if (unix.peer > 0) paths.push(this.#findUnix(unix.peer)?.path ?? null);
    return paths.some(
      (path) => path !== null && this.#unfollowedPaths.some((prefix) => path.startsWith(prefix)),
    );
  }

  /** The other end of a host-local connection: the socket with the reversed 4-tuple. */
  reverse(tcp: TcpSocket): TcpSocket | undefined {
    let other = this.#reversed.get(tcp.inode);
    if (other === undefined) {
      const found = this.#host.findTcp(tcp.remote, tcp.local);
      // An exact netlink lookup that misses can return a listener instead: accept only the
      // exact reversed 4-tuple of a socket some process can hold.
      other =
        found !== undefined &&
        found.state !== 'LISTEN' &&
        found.inode > 0 &&
        sameEndpoint(found.local, tcp.remote) &&
        sameEndpoint(found.remote, tcp.local)
          ? copyTcp(found)
          : null;
      this.#reversed.set(tcp.inode, other);
      // The relation is symmetric: record it for the other end too (its holders' records).
      if (other !== null) this.#reversed.set(other.inode, copyTcp(tcp));
    }
    return other ?? undefined;
  }

  /** The TCP socket descriptor `fd` of `pid` is, or undefined. */
  tcp(pid: number, fd: OpenFd): TcpSocket | undefined {
    if (fd.inode === this.#queried.inode) return this.#queried;
    const found = this.#socketOf(pid, fd);
    return found?.kind === 'tcp' ? found.socket : undefined;
  }

  /** The UNIX socket descriptor `fd` of `pid` is, or undefined. */
  unix(pid: number, fd: OpenFd): UnixSocket | undefined {
    const found = this.#socketOf(pid, fd);
    return found?.kind === 'unix' ? found.socket : undefined;
  }

  /**
   * What a socket descriptor is, asked of the host once per socket inode (per descriptor
   * while nothing is found: a holder that exited or closed it does not hide the socket from
   * the other holders). Per-socket lookups (host/types.ts) keep the cost proportional to the
   * closure, not to the host's socket tables.
   */
  #socketOf(pid: number, fd: OpenFd): FdSocket | undefined {
    if (fd.kind !== 'socket') return undefined;
    const known = this.#sockets.get(fd.inode);
    if (known !== undefined) return known;
    const key = `${pid}:${fd.fd}`;
    if (this.#notSockets.has(key)) return undefined;
    const found = this.#host.socketOf(pid, fd.fd, fd.inode);
    if (found === undefined) this.#notSockets.add(key);
    else this.#sockets.set(fd.inode, found);
    return found;
  }

  /** A UNIX socket by inode alone (a peer named by a UNIX socket), asked of the host once. */
  #findUnix(inode: number): UnixSocket | undefined {
    const known = this.#sockets.get(inode);
    if (known !== undefined) return known.kind === 'unix' ? known.socket : undefined;
    let found = this.#unixByInode.get(inode);
    if (found === undefined) {
      found = this.#host.findUnix(inode) ?? null;
      this.#unixByInode.set(inode, found);
    }
    return found ?? undefined;
  }

  /** hasListener, asked once per endpoint. */
  #hasListener(local: Endpoint): boolean {
    const key = endpointKey(local);
    let known = this.#listeners.get(key);
    if (known === undefined) {
      known = this.#host.hasListener(local);
      this.#listeners.set(key, known);
    }
    return known;
  }

  /** Which side opened a connection, from its state, the listeners and the ephemeral port range. */
  direction(tcp: TcpSocket): TcpDirection {
    switch (tcp.state) {
      case 'LISTEN':
        return 'listen';
      case 'SYN_SENT':
        return 'outbound';
      case 'SYN_RECV':
      case 'NEW_SYN_RECV':
        return 'inbound';
      default:
        break;
    }
    // DESIGN.md, Host view: inbound when a listener accepts at the local endpoint; for
    // host-local connections look at both ends.
    if (this.#hasListener(tcp.local)) return 'inbound';
    if (this.#host.isLocalAddress(tcp.remote.address) && this.#hasListener(tcp.remote)) return 'outbound';
    const range = this.#ephemeral;
    if (range !== undefined && (tcp.local.port < range.low || tcp.local.port > range.high)) return 'unknown';
    return 'outbound';
  }

  /** The other end of `tcp` if {@link reverse} found it already (no lookup). */
  knownReverse(tcp: TcpSocket): TcpSocket | undefined {
    return this.#reversed.get(tcp.inode) ?? undefined;
  }
}

function endpointKey(endpoint: Endpoint): string {
  return `${endpoint.address}|${endpoint.port}`;
}

/** Whether two endpoints are the same address and port. */
export function sameEndpoint(a: Endpoint, b: Endpoint): boolean {
  return a.port === b.port && a.address === b.address;
}

/** A copy of an endpoint, so a record shares no object with the host view. */
export function copyEndpoint(endpoint: Endpoint): Endpoint {
  return { address: endpoint.address, port: endpoint.port };
}

/** A copy of a TCP socket, so a record shares no object with the host view. */
export function copyTcp(socket: TcpSocket): TcpSocket {
  return {
    state: socket.state,
    uid: socket.uid,
    inode: socket.inode,
    local: copyEndpoint(socket.local),
    remote: copyEndpoint(socket.remote),
  };
}
