/**
 * What the history keeps of the process behind a new outbound connection (issue 14): the
 * evidence a later SV/SV_REC request about it would have needed, read while it still exists.
 */
import type { Endpoint, HostView, ProcessFacts, ProcessInfo } from '../host/types.js';
import { copyProcessFacts, resolveClosure } from './closure.js';
import type { PortRange } from './types.js';

/** An inbound connection held by the connecting process's ancestry or closure: where a recursive request goes. */
export interface CapturedUpstream {
  readonly local: Endpoint;
  readonly remote: Endpoint;
  readonly pid: number;
}

/** The outcome of {@link captureConnection}. */
export interface CapturedConnection {
  /** The connecting process first, then its parents up to the session leader (or init); empty when it had exited. */
  readonly ancestry: readonly ProcessFacts[];
  readonly upstream: readonly CapturedUpstream[];
}

/** Options of {@link captureConnection}. */
export interface CaptureOptions {
  /** The process that called connect(), as the kernel numbers it in the initial PID namespace. */
  readonly pid: number;
  /**
   * Whether `pid` means the same process in this host view (false when stopd runs in a nested
   * PID namespace: a container, a test host); then the process is found as the socket's holder.
   * Default true.
   */
  readonly pidVisible?: boolean;
  readonly local: Endpoint;
  readonly remote: Endpoint;
  /** Processes the closure may add at most: a capture runs for every connect, so it is kept small; default 64. */
  readonly maxProcesses?: number;
  readonly ephemeralPorts?: PortRange;
}

/** Parents followed at most: a ppid chain longer than this is a kernel oddity, not a session. */
const MAX_ANCESTRY = 64;

/** Default {@link CaptureOptions.maxProcesses}. */
export const DEFAULT_CAPTURE_MAX_PROCESSES = 64;

/**
 * Reads the ancestry of `pid` (up to its session leader, or the process whose parent is 0)
 * and the inbound connections behind it. While the socket is still in the host's table, the
 * upstream candidates are those of its closure (pipes, UNIX sockets, host-local TCP, as a
 * live SV would find them, within `maxProcesses`); once it is gone, those held by the ancestry itself.
 */
export function captureConnection(host: HostView, options: CaptureOptions): CapturedConnection {
  const socket = host.findTcp(options.local, options.remote);
  const live = socket !== undefined && socket.inode > 0 ? socket : undefined;
  let pid = options.pidVisible === false ? undefined : options.pid;
  if (live !== undefined) {
    // The holder of the socket is the connecting process, or (it exited, or its pid is of
    // another namespace) the process that carries the connection on: a child it forked.
    const holders = host.findHolders(live.inode, live.uid);
    if (pid === undefined || !holders.includes(pid)) pid = holders[0] ?? pid;
  }
  const chain: ProcessInfo[] = [];
  let info = pid === undefined ? undefined : host.getProcess(pid);
  while (info !== undefined && chain.length < MAX_ANCESTRY) {
    chain.push(info);
    // The session leader is the login (sshd's child, a terminal's shell): above it is the
    // service that accepted the login, whose other sessions are no part of this one.
    if (info.pid === info.sid || info.ppid === 0 || info.ppid === info.pid) break;
    info = host.getProcess(info.ppid);
  }
  const ancestry = chain.map(copyProcessFacts);
  if (chain.length === 0) return { ancestry, upstream: [] };
  const upstream: CapturedUpstream[] = [];
  const seen = new Set<string>();
  const add = (local: Endpoint, remote: Endpoint, holder: number): void => {
    const key = `${local.address}|${local.port}|${remote.address}|${remote.port}|${holder}`;
    if (seen.has(key)) return;
    seen.add(key);
    upstream.push({ local: { ...local }, remote: { ...remote }, pid: holder });
  };
  if (live !== undefined) {
    const closure = resolveClosure(host, {
      socket: live,
      maxProcesses: options.maxProcesses ?? DEFAULT_CAPTURE_MAX_PROCESSES,
      ...(options.ephemeralPorts === undefined ? {} : { ephemeralPorts: options.ephemeralPorts }),
    });
    for (const candidate of closure.upstream) for (const holder of candidate.pids) add(candidate.local, candidate.remote, holder);
    return { ancestry, upstream };
  }
  for (const process of chain) {
    for (const fd of process.fds) {
      if (fd.kind !== 'socket') continue;
      const found = host.socketOf(process.pid, fd.fd, fd.inode);
      if (found?.kind !== 'tcp') continue;
      const tcp = found.socket;
      if (tcp.state === 'ESTABLISHED' && host.hasListener(tcp.local) && !host.isLocalAddress(tcp.remote.address)) {
        add(tcp.local, tcp.remote, process.pid);
      }
    }
  }
  return { ancestry, upstream };
}
