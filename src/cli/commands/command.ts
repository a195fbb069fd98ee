/**
 * One `stopctl` command: its section of `stopctl --help` and what it does. Each command lives
 * in its own file in this directory; `stopctl.ts` only lists them and dispatches.
 */
import { StopdError, UsageError } from '../../errors.js';

/** A `stopctl` command. */
export interface StopctlCommand {
  /** The word after `stopctl`. */
  readonly name: string;
  /** Its section of `stopctl --help`; `stopctl NAME --help` prints it alone. */
  readonly help: string;
  /** Runs it with the arguments after its name; resolves with the exit status. */
  run(argv: string[]): Promise<number>;
}

/**
 * For commands that report their own errors (verify, keygen): a StopdError is one sentence on
 * stderr and exit 64 (usage) or 1 (local failure); anything else is a bug for `runProgram`.
 */
export function reportCommandError(error: unknown): number {
  if (error instanceof StopdError) {
    process.stderr.write(`stopctl: ${error.message}\n`);
    return error instanceof UsageError ? 64 : 1;
  }
  throw error;
}
