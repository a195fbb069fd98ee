import { readFileSync } from 'node:fs';

import { errnoCode, HostLookupError } from '../errors.js';
import { formatIpBytes, isSameIpAddress, parseIpBytes } from '../protocol/index.js';
import {
  loadNativeAddon,
  type NativeAddon,
  type NativeAddonLoad,
  type RawFdSocket,
  type RawTcpEntry,
  type RawUnixEntry,
} from './native-addon.js';
import { readProcNetTcp, readProcNetUnix } from './proc-net.js';
import {
  TCP_STATE_NAMES,
  type Endpoint,
  type FdSocket,
  type SocketInventory,
  type SocketTable,
  type TcpSocket,
  type TcpState,
  type UnixSocket,
} from './types.js';

/** The Linux socket view, and which kernel interface answers it. */
export interface LinuxSocketTable extends SocketTable {
  /** `netlink`: sock_diag through the addon (constant-time lookups); `procfs`: /proc/net parsing. */
  readonly backend: 'netlink' | 'procfs';
  /** Every TCP socket (IPv4 and IPv6) with a non-zero inode: a whole-table dump. */
  listTcp(): TcpSocket[];
  /** Every UNIX socket, with peers where the kernel can tell: a whole-table dump. */
  listUnix(): UnixSocket[];
  /**
   * Per-socket lookups for one request. Where the kernel cannot answer them one socket at a
   * time (no addon, kernel older than 5.14, no ptrace access to a process), the inventory reads
   * each whole table once, on first need, and answers from that snapshot from then on: open
   * one per request and drop it with the request.
   */
  openInventory(): SocketInventory;
}

/** Options of {@link createLinuxSocketTable}. */
export interface LinuxSocketTableOptions {
  /** Where the one-time fallback warning goes; default `console.warn`. */
  readonly log?: (msg: string) => void;
  /** Use /proc/net even when the addon loads (tests, or a kernel whose sock_diag misbehaves). */
  readonly forceFallback?: boolean;
  /** The addon load to use instead of {@link loadNativeAddon} (tests inject failing bindings). */
  readonly addon?: NativeAddonLoad;
}

/** Kernel TCP state numbers, include/net/tcp_states.h (index = number). */
const TCP_STATES: readonly (TcpState | undefined)[] = [undefined, ...TCP_STATE_NAMES];
const TCP_LISTEN = 10;
const TCP_SYN_SENT = 2;

const UNIX_TYPES: Readonly<Record<number, UnixSocket['type']>> = { 1: 'stream', 2: 'dgram', 5: 'seqpacket' };

const ANY4 = Buffer.alloc(4);
const ANY6 = Buffer.alloc(16);

/** An endpoint's address as the bytes the addon and the kernel's records compare. */
interface EndpointBytes {
  readonly family: 4 | 6;
  readonly bytes: Buffer;
}

/** A raw kernel record as a {@link TcpSocket}; undefined for a state this code does not know. */
export function toTcpSocket(raw: RawTcpEntry): TcpSocket | undefined {
  const state = TCP_STATES[raw.state];
  if (state === undefined) return undefined;
  return {
    state,
    uid: raw.uid,
    inode: raw.inode,
    local: { address: formatIpBytes(raw.localAddr), port: raw.localPort },
    remote: { address: formatIpBytes(raw.remoteAddr), port: raw.remotePort },
  };
}

function toUnixSocket(raw: RawUnixEntry): UnixSocket | undefined {
  const type = UNIX_TYPES[raw.type];
  return type === undefined ? undefined : { inode: raw.inode, path: raw.path, peer: raw.peer, type };
}

function checkedEndpoint(endpoint: Endpoint): EndpointBytes {
  const parsed = parseIpBytes(endpoint.address);
  if (parsed === undefined) {
    throw new TypeError(`Cannot look up socket: ${JSON.stringify(endpoint.address)} is not an IP address`);
  }
  if (!Number.isInteger(endpoint.port) || endpoint.port < 0 || endpoint.port > 65535) {
    throw new RangeError(`Cannot look up socket: port ${endpoint.port} is out of range`);
  }
  // A view, not a copy: the addon takes Buffers.
  return { family: parsed.family, bytes: Buffer.from(parsed.bytes.buffer, parsed.bytes.byteOffset, parsed.bytes.byteLength) };
}

/** Whether a raw record has exactly this remote end (after v4-mapped reduction). */
function hasRemote(raw: RawTcpEntry, remote: EndpointBytes, port: number): boolean {
  return raw.remotePort === port && isSameIpAddress(raw.remoteAddr, remote.bytes);
}

function hostError(what: string, err: unknown): HostLookupError {
  const why = err instanceof Error ? err.message : String(err);
  return new HostLookupError(`Cannot ${what}: ${why}`, { cause: err });
}

/**
 * Whether `/proc/self/cgroup` text names a cgroup v1 hierarchy with the net_cls or net_prio
 * controller (lines `ID:CONTROLLERS:PATH`; cgroup v2 is the one line `0::PATH`). There,
 * borrowing a descriptor with pidfd_getfd would re-tag its socket with this process's classid
 * and priority index (native/socket_fd.c), which changes how the host shapes that traffic.
 */
export function hasNetClassifierCgroup(text: string): boolean {
  return text.split('\n').some((line) => {
    const controllers = line.split(':')[1] ?? '';
    return controllers.split(',').some((name) => name === 'net_cls' || name === 'net_prio');
  });
}

function readOwnCgroups(): string {
  try {
    return readFileSync('/proc/self/cgroup', 'utf8');
  } catch {
    return ''; // no procfs: the lookups will fail loudly elsewhere
  }
}

/**
 * Whether `socketOf` can answer here, asked once on this process's own descriptor table
 * (ptrace access to oneself is always granted, so EPERM means a seccomp filter or an LSM).
 * Returns why not, or undefined when it can.
 */
function perSocketProblem(socketOf: NonNullable<NativeAddon['socketOf']>): string | undefined {
  if (hasNetClassifierCgroup(readOwnCgroups())) {
    return 'a cgroup v1 net_cls or net_prio hierarchy is mounted, and borrowing a descriptor would re-tag its socket';
  }
  try {
    // No process has descriptor 2^31-1: a working kernel answers null (EBADF).
    socketOf(process.pid, 0x7fffffff, 1);
    return undefined;
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
}

/**
 * Whole tables indexed by inode, each read once, on first need: the per-socket view of
 * /proc/net, and the fallback of the netlink one. It answers from its snapshot for its whole
 * life, which is one request.
 */
class DumpInventory implements SocketInventory {
  readonly #listTcp: () => TcpSocket[];
  readonly #listUnix: () => UnixSocket[];
  #tcp: Map<number, TcpSocket> | undefined;
  #unix: Map<number, UnixSocket> | undefined;

  constructor(listTcp: () => TcpSocket[], listUnix: () => UnixSocket[]) {
    this.#listTcp = listTcp;
    this.#listUnix = listUnix;
  }

  /** The socket by inode only: a dump cannot tell which process holds it. */
  socketOf(_pid: number, _fd: number, inode: number): FdSocket | undefined {
    const tcp = this.findTcpByInode(inode);
    if (tcp !== undefined) return { kind: 'tcp', socket: tcp };
    const unix = this.findUnix(inode);
    return unix === undefined ? undefined : { kind: 'unix', socket: unix };
  }

  findUnix(inode: number): UnixSocket | undefined {
    this.#unix ??= new Map(this.#listUnix().map((socket) => [socket.inode, socket]));
    return this.#unix.get(inode);
  }

  findTcpByInode(inode: number): TcpSocket | undefined {
    this.#tcp ??= new Map(this.#listTcp().map((socket) => [socket.inode, socket]));
    return this.#tcp.get(inode);
  }
}

/** What every inventory of one {@link NetlinkSockets} shares: the addon's per-socket functions while they work. */
interface PerSocketFunctions {
  /** Undefined when absent, refused at start, or once the kernel said ENOSYS. */
  socketOf: NativeAddon['socketOf'];
  unixLookup: NativeAddon['unixLookup'];
}

/**
 * Per-socket lookups through the addon for one request: `socketOf` borrows the descriptor
 * (pidfd_getfd) and `unixLookup` asks UNIX_DIAG for one inode, so an SV analysis costs what
 * its closure holds. Whatever they cannot answer comes from the whole tables, read at most
 * once per inventory, silently: the reason was logged once when the table was created.
 */
class NetlinkInventory implements SocketInventory {
  readonly #shared: PerSocketFunctions;
  readonly #dumps: DumpInventory;
  #unixViaDumps = false;

  constructor(shared: PerSocketFunctions, dumps: DumpInventory) {
    this.#shared = shared;
    this.#dumps = dumps;
  }

  socketOf(pid: number, fd: number, inode: number): FdSocket | undefined {
    const socketOf = this.#shared.socketOf;
    if (socketOf === undefined) return this.#dumps.socketOf(pid, fd, inode);
    let raw: RawFdSocket | null;
    try {
      raw = socketOf(pid, fd, inode);
    } catch (err) {
      const code = errnoCode(err);
      // EPERM: no ptrace access to this process (an LSM, Yama, another user namespace);
      // ENOSYS or ENOPROTOOPT: no pidfd_getfd (a kernel older than 5.6, or a seccomp filter)
      // or no SO_NETNS_COOKIE (older than 5.14), and there never will be, so stop asking.
      // Either way the dumps still know the socket.
      const permanent = code === 'ENOSYS' || code === 'ENOPROTOOPT';
      if (!permanent && code !== 'EPERM' && code !== 'EACCES') throw hostError('look up a socket descriptor', err);
      if (permanent) this.#shared.socketOf = undefined;
      return this.#dumps.socketOf(pid, fd, inode);
    }
    if (raw === null) return undefined;
    if (raw.domain === 'unix') {
      // Null when the socket closed meanwhile, or when the kernel has no unix_diag
      // (CONFIG_UNIX_DIAG), which the dump path handles (/proc/net/unix, once and loudly).
      const socket = this.findUnix(raw.inode) ?? this.#dumps.findUnix(raw.inode);
      return socket === undefined ? undefined : { kind: 'unix', socket };
    }
    if (raw.domain !== 'tcp') return undefined;
    // Before the handshake completes the kernel names no peer (getpeername: ENOTCONN), but
    // sock_diag shows the address being dialled.
    const socket =
      raw.state === TCP_SYN_SENT && raw.remotePort === 0 && raw.remoteAddr.every((byte) => byte === 0)
        ? this.#dumps.findTcpByInode(raw.inode)
        : toTcpSocket(raw);
    return socket === undefined ? undefined : { kind: 'tcp', socket };
  }

  findUnix(inode: number): UnixSocket | undefined {
    const unixLookup = this.#shared.unixLookup;
    if (unixLookup === undefined || this.#unixViaDumps) return this.#dumps.findUnix(inode);
    let raw: RawUnixEntry | null;
    try {
      raw = unixLookup(inode);
    } catch {
      // As listUnix does for the dump: the whole table (netlink, else /proc/net/unix) still
      // answers; it says so once if it has to degrade.
      this.#unixViaDumps = true;
      return this.#dumps.findUnix(inode);
    }
    return raw === null ? undefined : toUnixSocket(raw);
  }
}

/** sock_diag through the addon. */
class NetlinkSockets implements LinuxSocketTable {
  readonly backend = 'netlink';
  readonly #addon: NativeAddon;
  readonly #log: (msg: string) => void;
  readonly #perSocket: PerSocketFunctions;
  #unixFallback = false;

  constructor(addon: NativeAddon, log: (msg: string) => void) {
    this.#addon = addon;
    this.#log = log;
    // Bound: the addon's functions are called without their object from the inventories.
    let socketOf = addon.socketOf?.bind(addon);
    const problem = socketOf === undefined ? undefined : perSocketProblem(socketOf);
    if (problem !== undefined) {
      socketOf = undefined;
      log(`per-socket lookups unavailable (${problem.split('\n')[0] ?? problem}); SV analysis reads whole socket tables, which is slow on busy hosts`);
    }
    this.#perSocket = { socketOf, unixLookup: addon.unixLookup?.bind(addon) };
  }

  openInventory(): SocketInventory {
    return new NetlinkInventory(
      this.#perSocket,
      new DumpInventory(
        () => this.listTcp(),
        () => this.listUnix(),
      ),
    );
  }

  findTcp(local: Endpoint, remote: Endpoint): TcpSocket | undefined {
    const l = checkedEndpoint(local);
    const r = checkedEndpoint(remote);
    if (l.family !== r.family) return undefined;
    // One exact lookup is enough even for IPv4 connections of dual-stack IPv6 sockets: the
    // kernel hashes those by their IPv4 addresses and an AF_INET lookup finds them (checked
    // by test/linux-sockets.test.ts), so no second v4-mapped AF_INET6 attempt is needed.
    let raw: RawTcpEntry | null;
    try {
      raw = this.#addon.tcpLookup(l.family, l.bytes, local.port, r.bytes, remote.port);
    } catch (err) {
      throw hostError('look up the TCP socket via netlink', err);
    }
    // The kernel's lookup falls back to the listener on the local port when no connection
    // matches (inet_lookup: established, then listening), so check the tuple really matches.
    if (raw === null || !hasRemote(raw, r, remote.port)) return undefined;
    return toTcpSocket(raw);
  }

  hasListener(local: Endpoint): boolean {
    const l = checkedEndpoint(local);
    let raw: RawTcpEntry | null;
    try {
      // DESIGN.md: remote 0.0.0.0:0 makes the exact lookup return the listener that would
      // accept at `local`, bound to it or to a wildcard (dual-stack `::` included).
      raw = this.#addon.tcpLookup(l.family, l.bytes, local.port, l.family === 4 ? ANY4 : ANY6, 0);
    } catch (err) {
      throw hostError('look up the TCP listener via netlink', err);
    }
    return raw !== null && raw.state === TCP_LISTEN && raw.localPort === local.port;
  }

  listTcp(): TcpSocket[] {
    let raws: RawTcpEntry[];
    try {
      raws = [...this.#addon.tcpDump(4), ...this.#addon.tcpDump(6)];
    } catch (err) {
      throw hostError('list the TCP sockets via netlink', err);
    }
    return listFromRaw(raws);
  }

  listUnix(): UnixSocket[] {
    if (!this.#unixFallback) {
      try {
        return unixFromRaw(this.#addon.unixDump());
      } catch (err) {
        // unix_diag is a separate kernel module (CONFIG_UNIX_DIAG); without it the TCP lookups
        // still work, so only the UNIX view degrades (no peers), once and loudly.
        this.#unixFallback = true;
        this.#log(`stopd: netlink UNIX socket view unavailable (${err instanceof Error ? err.message : String(err)}); falling back to /proc/net/unix, which shows no peers`);
      }
    }
    return procUnix();
  }
}

/** /proc/net parsing: every call reads the whole table. */
class ProcfsSockets implements LinuxSocketTable {
  readonly backend = 'procfs';

  openInventory(): SocketInventory {
    return new DumpInventory(
      () => this.listTcp(),
      () => this.listUnix(),
    );
  }

  findTcp(local: Endpoint, remote: Endpoint): TcpSocket | undefined {
    const l = checkedEndpoint(local);
    const r = checkedEndpoint(remote);
    if (l.family !== r.family) return undefined;
    const match = procTcp(l.family).find(
      (raw) => raw.localPort === local.port && isSameIpAddress(raw.localAddr, l.bytes) && hasRemote(raw, r, remote.port),
    );
    return match === undefined ? undefined : toTcpSocket(match);
  }

  hasListener(local: Endpoint): boolean {
    const l = checkedEndpoint(local);
    return procTcp(l.family).some((raw) => {
      if (raw.state !== TCP_LISTEN || raw.localPort !== local.port) return false;
      // A `::` listener accepts IPv4 too unless IPV6_V6ONLY is set, which /proc does not
      // show: assume the default (dual stack). Netlink has no such blind spot.
      return raw.localAddr.equals(ANY4) || raw.localAddr.equals(ANY6) || isSameIpAddress(raw.localAddr, l.bytes);
    });
  }

  listTcp(): TcpSocket[] {
    return listFromRaw(procTcp(4));
  }

  listUnix(): UnixSocket[] {
    return procUnix();
  }
}

/**
 * The TCP records that can hold connections of `family`. IPv6 connections live in tcp6 only;
 * IPv4 ones in tcp, or in tcp6 with v4-mapped addresses when the socket is dual-stack, so
 * family 4 means both files, which is also every TCP socket.
 */
function procTcp(family: 4 | 6): RawTcpEntry[] {
  try {
    const v6 = readProcNetTcp(6);
    return family === 4 ? [...readProcNetTcp(4), ...v6] : v6;
  } catch (err) {
    throw hostError('read /proc/net/tcp', err);
  }
}

function procUnix(): UnixSocket[] {
  try {
    return unixFromRaw(readProcNetUnix());
  } catch (err) {
    throw hostError('read /proc/net/unix', err);
  }
}

function listFromRaw(raws: readonly RawTcpEntry[]): TcpSocket[] {
  const out: TcpSocket[] = [];
  for (const raw of raws) {
    if (raw.inode === 0) continue; // TIME_WAIT and request sockets: no process holds them
    const socket = toTcpSocket(raw);
    if (socket !== undefined) out.push(socket);
  }
  return out;
}

function unixFromRaw(raws: readonly RawUnixEntry[]): UnixSocket[] {
  const out: UnixSocket[] = [];
  for (const raw of raws) {
    const socket = toUnixSocket(raw);
    if (socket !== undefined) out.push(socket);
  }
  return out;
}

/**
 * The Linux socket view: netlink sock_diag through the native addon when it loads and
 * answers, else /proc/net parsing after ONE warning through `log` (the daemon still works,
 * but each lookup then reads the whole table: tens of milliseconds on a busy host).
 */
export function createLinuxSocketTable(options: LinuxSocketTableOptions = {}): LinuxSocketTable {
  const log = options.log ?? ((msg: string) => console.warn(msg));
  let reason: string;
  if (options.forceFallback === true) {
    reason = 'fallback forced by configuration';
  } else {
    const load = options.addon ?? loadNativeAddon();
    if (load.binding !== undefined) {
      try {
        // Probe once: the addon may load but netlink be refused (seccomp, an LSM, a kernel
        // without inet_diag); finding that out now beats failing every request later.
        load.binding.tcpLookup(4, ANY4, 0, ANY4, 0);
        return new NetlinkSockets(load.binding, log);
      } catch (err) {
        reason = err instanceof Error ? err.message : String(err);
      }
    } else {
      reason = load.error.message;
    }
  }
  // One line: a failed require() appends its whole require stack to the message.
  const firstLine = reason.split('\n')[0] ?? reason;
  log(`netlink addon unavailable (${firstLine}); falling back to /proc/net/tcp, which is slow on busy hosts`);
  return new ProcfsSockets();
}
