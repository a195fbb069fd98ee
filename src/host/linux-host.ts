import { readFileSync } from 'node:fs';
import { createLinuxProcessTable } from './linux-processes.js';
import type { LinuxSocketTable } from './linux-sockets.js';
import type { PersistentFdIndex } from './persistent-fd-index.js';
import type { HostView } from './types.js';

/** A host view for one request, with what it could not see. */
export interface LinuxHostView extends HostView {
  /** Pids whose open files the kernel refused to show (recorded in the evidence, never silently dropped). */
  deniedPids(): number[];
}

/**
 * The Linux host view for one SV request: the shared socket table plus a fresh process table
 * and socket inventory, so the holder index and any whole-table fallback of the per-socket
 * lookups are coherent within the request and never stale across requests. The holder index
 * is one `/proc/*\/fd` scan, or with `fdIndex` (shared by all requests) one incremental
 * refresh of that index at the first holder question.
 */
export function createLinuxHostView(
  sockets: LinuxSocketTable,
  options: { readCmdline?: boolean; onDenied?: 'throw' | 'skip'; fdIndex?: PersistentFdIndex; hideSelf?: boolean } = {},
): LinuxHostView {
  const processes = createLinuxProcessTable({
    readCmdline: options.readCmdline ?? true,
    ...(options.onDenied === undefined ? {} : { onDenied: options.onDenied }),
    ...(options.fdIndex === undefined ? {} : { fdIndex: options.fdIndex }),
    ...(options.hideSelf === undefined ? {} : { hideSelf: options.hideSelf }),
  });
  const inventory = sockets.openInventory();
  return {
    findTcp: (local, remote) => sockets.findTcp(local, remote),
    hasListener: (local) => sockets.hasListener(local),
    socketOf: (pid, fd, inode) => inventory.socketOf(pid, fd, inode),
    findUnix: (inode) => inventory.findUnix(inode),
    getProcess: (pid) => processes.getProcess(pid),
    findHolders: (inode, ownerUid) => processes.findHolders(inode, ownerUid),
    pipeEndOf: (pid, inode) => processes.pipeEndOf(pid, inode),
    isLocalAddress: (address) => processes.isLocalAddress(address),
    deniedPids: () => processes.deniedPids(),
  };
}

/**
 * The kernel's ephemeral port range (`net.ipv4.ip_local_port_range`), which the closure uses
 * to tell connections a program accepted and then closed its listener for (`nc -l`) from
 * outbound ones. Undefined when unreadable.
 */
export function readEphemeralPorts(procRoot = '/proc'): { low: number; high: number } | undefined {
  try {
    const [low, high] = readFileSync(`${procRoot}/sys/net/ipv4/ip_local_port_range`, 'utf8').trim().split(/\s+/).map(Number);
    if (low === undefined || high === undefined || !Number.isInteger(low) || !Number.isInteger(high) || low > high) return undefined;
    return { low, high };
  } catch {
    return undefined;
  }
}
