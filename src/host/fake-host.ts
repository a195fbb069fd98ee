/**
 * An in-memory {@link HostView} for unit tests and benchmarks: processes, pipes, TCP and UNIX
 * sockets built with a small fluent API, answering every lookup the way the Linux view does
 * (DESIGN.md, Host view), so `trace/` and `daemon/` can be tested without real processes.
 */
import type {
  Endpoint,
  FdSocket,
  HostView,
  OpenFd,
  ProcessInfo,
  TcpSocket,
  TcpState,
  UnixSocket,
} from './types.js';

/** What {@link FakeHost.addProcess} needs; everything but pid, ppid and name has a default. */
export interface FakeProcessSpec {
  readonly pid: number;
  /** 0 for the root of the tree (init), as the kernel reports it. */
  readonly ppid: number;
  readonly name: string;
  /** A number sets both real and effective uid; default 0. */
  readonly uid?: number | { readonly real: number; readonly effective: number };
  /** Default `2024-01-01T00:00:00.000Z`. */
  readonly startTime?: string;
  /** Default null. */
  readonly tty?: string | null;
  /** Default 20 (the kernel's value for nice 0). */
  readonly priority?: number;
  /** Default 0. */
  readonly nice?: number;
  /** Default the pid itself. */
  readonly pgid?: number;
  /** Default the pgid. */
  readonly sid?: number;
  /** Default `[name]`. */
  readonly cmdline?: readonly string[];
}

/** Options of {@link FakeHost.addTcp}. */
export interface FakeTcpSpec {
  /** The process that gets a descriptor for the socket; omit for a socket no process holds. */
  readonly pid?: number;
  readonly local: Endpoint;
  readonly remote: Endpoint;
  /** Default ESTABLISHED. */
  readonly state?: TcpState;
  /** Socket owner; default the holder's effective uid, or 0. */
  readonly uid?: number;
  /** Default a fresh inode. */
  readonly inode?: number;
}

/** Options of {@link FakeHost.connectLocalTcp}. */
export interface FakeLocalTcpSpec {
  /** The connecting side's endpoint (usually an ephemeral port). */
  readonly client: Endpoint;
  /** The accepting side's endpoint. */
  readonly server: Endpoint;
  /** Default ESTABLISHED (both ends). */
  readonly state?: TcpState;
}

/** Options of {@link FakeHost.addUnixPair}. */
export interface FakeUnixPairSpec {
  /** Path shown on the second socket (the accepting side of a bound server); default none (a socketpair). */
  readonly path?: string | null;
  /** Default 'stream'. */
  readonly type?: UnixSocket['type'];
}

const DEFAULT_START = '2024-01-01T00:00:00.000Z';

interface FakeProcess {
  info: Omit<ProcessInfo, 'fds'>;
  fds: OpenFd[];
  nextFd: number;
  /** Exited after the holder scan: findHolders still names it, getProcess does not. */
  vanished: boolean;
}

/**
 * An in-memory host. Inodes are allocated from a counter (starting at 1000) unless given.
 * Lookups follow the Linux view's contract: `findHolders` lists pids ascending with the
 * owner uid's processes first, `findTcp` matches the exact 4-tuple only, `hasListener`
 * accepts a listener bound to the address or to the wildcard of its family (`::` also takes
 * IPv4, as with Linux's default `bindv6only=0`), and 127.0.0.0/8 and ::1 are always local.
 */
export class FakeHost implements HostView {
  /** This host's own addresses besides loopback; add to it freely. */
  readonly localAddresses: Set<string>;

  readonly #processes = new Map<number, FakeProcess>();
  readonly #tcp = new Map<number, TcpSocket>();
  /** TIME_WAIT-like sockets with inode 0: findable by 4-tuple, never listed or held. */
  readonly #orphans: TcpSocket[] = [];
  readonly #unix = new Map<number, UnixSocket>();
  /** inode -> pids holding it, so findHolders costs what the Linux view's index costs. */
  readonly #holders = new Map<number, Set<number>>();
  #nextInode = 1000;

  constructor(options: { readonly localAddresses?: Iterable<string> } = {}) {
    this.localAddresses = new Set([...(options.localAddresses ?? [])].map(canonical));
  }

  /** Adds a process (no descriptors yet). Throws when the pid exists. */
  addProcess(spec: FakeProcessSpec): this {
    if (this.#processes.has(spec.pid)) throw new Error(`Cannot add process ${spec.pid}: it exists`);
    const uid = typeof spec.uid === 'object' ? { ...spec.uid } : { real: spec.uid ?? 0, effective: spec.uid ?? 0 };
    const pgid = spec.pgid ?? spec.pid;
    this.#processes.set(spec.pid, {
      info: {
        pid: spec.pid,
        ppid: spec.ppid,
        name: spec.name,
        uid,
        startTime: spec.startTime ?? DEFAULT_START,
        tty: spec.tty ?? null,
        priority: spec.priority ?? 20,
        nice: spec.nice ?? 0,
        pgid,
        sid: spec.sid ?? pgid,
        cmdline: [...(spec.cmdline ?? [spec.name])],
      },
      fds: [],
      nextFd: 3,
      vanished: false,
    });
    return this;
  }

  /** A pipe from `writerPid` (write end) to `readerPid` (read end); returns its inode. */
  addPipe(writerPid: number, readerPid: number, options: { readonly inode?: number } = {}): number {
    const inode = options.inode ?? this.#allocate();
    this.#addFd(writerPid, { kind: 'pipe', inode, end: 'write' });
    this.#addFd(readerPid, { kind: 'pipe', inode, end: 'read' });
    return inode;
  }

  /** A TCP socket, held by `spec.pid` when given; returns its inode. */
  addTcp(spec: FakeTcpSpec): number {
    const state = spec.state ?? 'ESTABLISHED';
    const inode = spec.inode ?? (state === 'TIME_WAIT' ? 0 : this.#allocate());
    const uid = spec.uid ?? (spec.pid === undefined ? 0 : this.#process(spec.pid).info.uid.effective);
    const socket: TcpSocket = {
      state,
      uid,
      inode,
      local: endpoint(spec.local),
      remote: endpoint(spec.remote),
    };
    if (inode === 0) {
      this.#orphans.push(socket);
      return 0;
    }
    this.#tcp.set(inode, socket);
    if (spec.pid !== undefined) this.#addFd(spec.pid, { kind: 'socket', inode });
    return inode;
  }

  /** A LISTEN socket at `local` (remote is the wildcard of its family, port 0); returns its inode. */
  addListener(pid: number, local: Endpoint, options: { readonly uid?: number } = {}): number {
    const any = canonical(local.address).includes(':') ? '::' : '0.0.0.0';
    return this.addTcp({
      pid,
      local,
      remote: { address: any, port: 0 },
      state: 'LISTEN',
      ...(options.uid === undefined ? {} : { uid: options.uid }),
    });
  }

  /**
   * A host-local TCP connection: two sockets with reversed 4-tuples, the client's held by
   * `clientPid` and the accepted one by `serverPid`. Add the server's listener separately
   * (addListener) when it is still open.
   */
  connectLocalTcp(
    clientPid: number,
    serverPid: number,
    spec: FakeLocalTcpSpec,
  ): { readonly client: number; readonly server: number } {
    const state = spec.state ?? 'ESTABLISHED';
    const client = this.addTcp({ pid: clientPid, local: spec.client, remote: spec.server, state });
    const server = this.addTcp({ pid: serverPid, local: spec.server, remote: spec.client, state });
    return { client, server };
  }

  /** Two connected UNIX sockets, the first held by `pidA`, the second by `pidB`; returns both inodes. */
  addUnixPair(pidA: number, pidB: number, spec: FakeUnixPairSpec = {}): readonly [number, number] {
    const a = this.#allocate();
    const b = this.#allocate();
    const type = spec.type ?? 'stream';
    this.#unix.set(a, { inode: a, path: null, peer: b, type });
    this.#unix.set(b, { inode: b, path: spec.path ?? null, peer: a, type });
    this.#addFd(pidA, { kind: 'socket', inode: a });
    this.#addFd(pidB, { kind: 'socket', inode: b });
    return [a, b];
  }

  /** A UNIX socket with no connected peer (a bound listener, or an unconnected datagram socket); returns its inode. */
  addUnixSocket(pid: number, spec: { readonly path?: string | null; readonly type?: UnixSocket['type'] } = {}): number {
    const inode = this.#allocate();
    this.#unix.set(inode, { inode, path: spec.path ?? null, peer: 0, type: spec.type ?? 'stream' });
    this.#addFd(pid, { kind: 'socket', inode });
    return inode;
  }

  /** A socket inode no table knows (UDP, netlink, raw, ...) held by `pid`; returns its inode. */
  addOtherSocket(pid: number): number {
    const inode = this.#allocate();
    this.#addFd(pid, { kind: 'socket', inode });
    return inode;
  }

  /**
   * Gives `pid` another descriptor for an existing socket or pipe inode (inherited across
   * fork, or passed over a UNIX socket); returns the new fd. A pipe descriptor copies the end
   * of an existing holder unless `end` says otherwise.
   */
  shareFd(pid: number, inode: number, options: { readonly end?: 'read' | 'write' | 'both' } = {}): number {
    const existing = this.#findFd(inode);
    if (existing === undefined) throw new Error(`Cannot share inode ${inode}: no process holds it`);
    if (existing.kind === 'pipe') {
      return this.#addFd(pid, { kind: 'pipe', inode, end: options.end ?? existing.end });
    }
    return this.#addFd(pid, { kind: 'socket', inode });
  }

  /** Closes every descriptor `pid` has for `inode`. */
  closeFd(pid: number, inode: number): this {
    const process = this.#process(pid);
    process.fds = process.fds.filter((fd) => fd.inode !== inode);
    this.#holders.get(inode)?.delete(pid);
    return this;
  }

  /** Removes a socket from the kernel tables (e.g. a listener closed after accept); descriptors stay as they are. */
  removeSocket(inode: number): this {
    this.#tcp.delete(inode);
    this.#unix.delete(inode);
    return this;
  }

  /** The process exits: it disappears from every lookup, its descriptors with it. */
  removeProcess(pid: number): this {
    for (const fd of this.#processes.get(pid)?.fds ?? []) this.#holders.get(fd.inode)?.delete(pid);
    this.#processes.delete(pid);
    return this;
  }

  /**
   * The process exits between the holder scan and the per-process read: `findHolders` still
   * reports it (a stale index, as a real snapshot can be), `getProcess` returns undefined.
   */
  vanishProcess(pid: number): this {
    this.#process(pid).vanished = true;
    return this;
  }

  /** Every pid, ascending (test convenience; not part of HostView). */
  listPids(): number[] {
    return [...this.#processes.keys()].sort((a, b) => a - b);
  }

  findTcp(local: Endpoint, remote: Endpoint): TcpSocket | undefined {
    const l = endpoint(local);
    const r = endpoint(remote);
    for (const socket of [...this.#tcp.values(), ...this.#orphans]) {
      if (sameEndpoint(socket.local, l) && sameEndpoint(socket.remote, r)) return copyTcp(socket);
    }
    return undefined;
  }

  hasListener(local: Endpoint): boolean {
    const l = endpoint(local);
    const v6 = l.address.includes(':');
    for (const socket of this.#tcp.values()) {
      if (socket.state !== 'LISTEN' || socket.local.port !== l.port) continue;
      const bound = socket.local.address;
      if (bound === l.address || bound === '::' || (!v6 && bound === '0.0.0.0')) return true;
    }
    return false;
  }

  /** Every TCP socket with an inode (test convenience; not part of HostView). */
  listTcp(): TcpSocket[] {
    return [...this.#tcp.values()].map(copyTcp);
  }

  /** Every UNIX socket (test convenience; not part of HostView). */
  listUnix(): UnixSocket[] {
    return [...this.#unix.values()].map((socket) => ({ ...socket }));
  }

  socketOf(pid: number, fd: number, inode: number): FdSocket | undefined {
    // As on Linux: only a live process's descriptor that still is this inode answers.
    const process = this.#processes.get(pid);
    if (process === undefined || process.vanished) return undefined;
    if (!process.fds.some((entry) => entry.fd === fd && entry.kind === 'socket' && entry.inode === inode)) return undefined;
    const tcp = this.#tcp.get(inode);
    if (tcp !== undefined) return { kind: 'tcp', socket: copyTcp(tcp) };
    const unix = this.findUnix(inode);
    return unix === undefined ? undefined : { kind: 'unix', socket: unix };
  }

  findUnix(inode: number): UnixSocket | undefined {
    const socket = this.#unix.get(inode);
    return socket === undefined ? undefined : { ...socket };
  }

  getProcess(pid: number): ProcessInfo | undefined {
    const process = this.#processes.get(pid);
    if (process === undefined || process.vanished) return undefined;
    const { info } = process;
    return {
      ...info,
      uid: { ...info.uid },
      cmdline: [...info.cmdline],
      fds: process.fds.map((fd) => ({ ...fd })),
    };
  }

  findHolders(inode: number, ownerUid?: number): number[] {
    if (!Number.isSafeInteger(inode) || inode <= 0) return [];
    const owned: number[] = [];
    const others: number[] = [];
    for (const pid of [...(this.#holders.get(inode) ?? [])].sort((a, b) => a - b)) {
      const process = this.#process(pid);
      // Same order as the Linux view: the owner's processes first, then the rest, each ascending.
      (ownerUid !== undefined && process.info.uid.effective === ownerUid ? owned : others).push(pid);
    }
    return [...owned, ...others];
  }

  pipeEndOf(pid: number, inode: number): 'read' | 'write' | 'both' | undefined {
    const process = this.#processes.get(pid);
    if (process === undefined || process.vanished) return undefined;
    let end: 'read' | 'write' | 'both' | undefined;
    for (const fd of process.fds) {
      if (fd.kind !== 'pipe' || fd.inode !== inode) continue;
      end = end === undefined || end === fd.end ? fd.end : 'both';
    }
    return end;
  }

  isLocalAddress(address: string): boolean {
    const a = canonical(address);
    if (/^127\.\d+\.\d+\.\d+$/.test(a) || a === '::1') return true;
    return this.localAddresses.has(a);
  }

  #allocate(): number {
    let inode = this.#nextInode++;
    while (this.#tcp.has(inode) || this.#unix.has(inode) || this.#findFd(inode) !== undefined) {
      inode = this.#nextInode++;
    }
    return inode;
  }

  #process(pid: number): FakeProcess {
    const process = this.#processes.get(pid);
    if (process === undefined) throw new Error(`Cannot use process ${pid}: add it first`);
    return process;
  }

  #addFd(
    pid: number,
    fd: { kind: 'socket'; inode: number } | { kind: 'pipe'; inode: number; end: 'read' | 'write' | 'both' },
  ): number {
    const process = this.#process(pid);
    const number = process.nextFd++;
    process.fds.push({ fd: number, ...fd });
    let holders = this.#holders.get(fd.inode);
    if (holders === undefined) this.#holders.set(fd.inode, (holders = new Set()));
    holders.add(pid);
    return number;
  }

  #findFd(inode: number): OpenFd | undefined {
    for (const pid of this.#holders.get(inode) ?? []) {
      const fd = this.#processes.get(pid)?.fds.find((entry) => entry.inode === inode);
      if (fd !== undefined) return fd;
    }
    return undefined;
  }
}

/** Canonical address text as the host interfaces promise it: v4-mapped IPv6 becomes IPv4, IPv6 lower-case. */
function canonical(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped?.[1] !== undefined) return mapped[1];
  return address.toLowerCase();
}

function endpoint(value: Endpoint): Endpoint {
  return { address: canonical(value.address), port: value.port };
}

function sameEndpoint(a: Endpoint, b: Endpoint): boolean {
  return a.port === b.port && a.address === b.address;
}

function copyTcp(socket: TcpSocket): TcpSocket {
  return { ...socket, local: { ...socket.local }, remote: { ...socket.remote } };
}
