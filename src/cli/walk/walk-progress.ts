/**
 * The walk's progress line on stderr: only when stderr is a terminal (a walk piped into a
 * file or a ticket gets no carriage returns), rewritten in place and cleared at the end.
 */
import type { WalkProgress } from './walk-chain.js';

/** A stream the progress line may be written to. */
export interface ProgressStream {
  readonly isTTY?: boolean;
  write(text: string): boolean;
}

/** The progress line's two operations; both do nothing when the stream is not a terminal. */
export interface WalkProgressLine {
  readonly update: (progress: WalkProgress) => void;
  readonly clear: () => void;
}

/** Makes the progress line for `stream`. */
export function createWalkProgress(stream: ProgressStream): WalkProgressLine {
  if (stream.isTTY !== true) return { update: () => undefined, clear: () => undefined };
  let shown = false;
  return {
    update(progress) {
      shown = true;
      stream.write(`\r\x1b[K${formatWalkProgress(progress)}`);
    },
    clear() {
      if (shown) stream.write('\r\x1b[K');
      shown = false;
    },
  };
}

/** `walk: 3 hosts reached, 2 verified, 1 failed, 1 pending; now 192.0.2.1`. */
export function formatWalkProgress(progress: WalkProgress): string {
  // The host name came from a ledger: only its plain characters reach the terminal.
  const now = progress.current === null ? '' : `; now ${progress.current.replace(/[^A-Za-z0-9.:-]/g, '?')}`;
  return `walk: ${progress.reached} reached, ${progress.verified} verified, ${progress.failed} failed, ${progress.pending} pending${now}`;
}
