import type { ChildProcess } from 'node:child_process';

/**
 * SIGKILLs each child still running together with its process group: children started
 * `detached` lead their own group, so this ends what they started too, and nothing else.
 */
export function killProcessGroups(children: Iterable<ChildProcess>): void {
  for (const child of children) {
    if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) continue;
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      // Not a group leader after all (or already gone): the child alone.
      child.kill('SIGKILL');
    }
  }
}
