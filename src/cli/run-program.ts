/**
 * The one way both programs end: `main` resolves with an exit status, or throws; a
 * {@link StopdError} is one sentence on stderr with exit 64 (usage) or 1 (local failure),
 * anything else a stack trace with exit 70 (EX_SOFTWARE). Only `src/cli` may call
 * `process.exit` (STYLE "Explicit lifecycle"), and only here.
 */
import { StopdError, UsageError } from '../errors.js';

/** Runs `main` with the program's arguments and exits with its status once stdout and stderr are flushed. */
export function runProgram(name: string, main: (argv: string[]) => Promise<number>): void {
  main(process.argv.slice(2)).then(
    (code) => exitWhenFlushed(code),
    (error: unknown) => {
      if (error instanceof StopdError) {
        process.stderr.write(`${name}: ${error.message}\n`);
        return exitWhenFlushed(error instanceof UsageError ? 64 : 1);
      }
      process.stderr.write(`${name}: unexpected failure: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      return exitWhenFlushed(70);
    },
  );
}

/**
 * Exits with `code` after everything written to stdout and stderr has left the process.
 * Writes to a pipe are asynchronous in Node: `process.exit` right after a large write cut
 * `stopctl redeem --json | less` at the pipe's 64 KiB. A write callback runs once the
 * writes queued before it are done (or failed: a reader that went away must not hang us).
 */
async function exitWhenFlushed(code: number): Promise<never> {
  await Promise.all(
    [process.stdout, process.stderr].map(
      (stream) =>
        new Promise<void>((resolve) => {
          if (stream.destroyed || stream.writableLength === 0) resolve();
          else stream.write('', () => resolve());
        }),
    ),
  );
  process.exit(code);
}
