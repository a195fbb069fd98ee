import { readlinkSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The inode number of the initial PID namespace, `PROC_PID_INIT_INO` in the kernel's
 * include/linux/proc_ns.h (0xEFFFFFFC, fixed since Linux 3.8): `/proc/PID/ns/pid` of every
 * process of the initial namespace reads `pid:[4026531836]`.
 */
export const INITIAL_PID_NAMESPACE_INODE = 0xeffffffc;

/**
 * Which processes stopd can see through its `/proc`: `initial` when it is the initial PID
 * namespace's (every process of the host is visible), `nested` when it is another one (a
 * container, a test host: processes outside it, holders of sockets in the same network
 * namespace included, are invisible), `unknown` when the link cannot be read.
 */
export type PidNamespaceView = 'initial' | 'nested' | 'unknown';

/**
 * Reads {@link PidNamespaceView} from the namespace of pid 1 of `procRoot` (the namespace the
 * `/proc` mount shows), or of `self` when pid 1's link cannot be read. Cheap (one readlink);
 * the answer does not change while a process runs, so callers may keep it.
 */
export function readPidNamespaceView(procRoot = '/proc'): PidNamespaceView {
  for (const pid of ['1', 'self']) {
    let link: string;
    try {
      link = readlinkSync(join(procRoot, pid, 'ns', 'pid'));
    } catch {
      continue;
    }
    const inode = /^pid:\[(\d+)\]$/.exec(link)?.[1];
    if (inode === undefined) continue;
    return Number(inode) === INITIAL_PID_NAMESPACE_INODE ? 'initial' : 'nested';
  }
  return 'unknown';
}
