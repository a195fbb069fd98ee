import { readlinkSync } from 'node:fs';

/**
 * The inode number of this process's network namespace (`/proc/self/ns/net` reads
 * `net:[4026531840]`), which the connection recorder reports with each connection, or
 * undefined when the link cannot be read.
 */
export function readNetworkNamespaceInode(procRoot = '/proc'): number | undefined {
  try {
    const match = /^net:\[(\d+)\]$/.exec(readlinkSync(`${procRoot}/self/ns/net`));
    return match?.[1] === undefined ? undefined : Number(match[1]);
  } catch {
    return undefined;
  }
}
