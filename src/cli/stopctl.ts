#!/usr/bin/env node
/** `stopctl`: the investigator's and administrator's tool; each command is in `commands/`. */
import { runProgram } from './run-program.js';
import { UsageError } from '../errors.js';
import type { StopctlCommand } from './commands/command.js';
import { QUERY_COMMAND } from './commands/query.js';
import { REDEEM_COMMAND } from './commands/redeem.js';
import { TRACE_COMMAND } from './commands/trace.js';
import { VERIFY_COMMAND } from './commands/verify.js';
import { KEYGEN_COMMAND } from './commands/keygen.js';
import { PRUNE_COMMAND } from './commands/prune.js';
import { HISTORY_COMMAND } from './commands/history.js';
import { WALK_COMMAND } from './commands/walk.js';

/** Every command, in `stopctl --help` order. */
const COMMANDS: readonly StopctlCommand[] = [QUERY_COMMAND, REDEEM_COMMAND, TRACE_COMMAND, WALK_COMMAND, VERIFY_COMMAND, KEYGEN_COMMAND, PRUNE_COMMAND, HISTORY_COMMAND];

const HELP = `Usage: stopctl <command> [options]

Commands:
${COMMANDS.map((command) => `${command.help}\n`).join('')}Common options:
  -h, --help   print this help; \`stopctl COMMAND --help\` prints that command's only
Every command exits 64 on a bad command line, 1 on a local failure (a missing or unreadable
store, a file that cannot be written) and 70 on an unexpected failure (a bug: please report it).
`;

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  const command = COMMANDS.find((candidate) => candidate.name === name);
  if (command !== undefined) return command.run(rest);
  if (name === undefined || name === '-h' || name === '--help' || name === 'help') {
    process.stdout.write(HELP);
    return name === undefined ? 64 : 0;
  }
  const names = COMMANDS.map((candidate) => candidate.name);
  throw new UsageError(
    `Unknown command ${JSON.stringify(name)}; use ${names.slice(0, -1).join(', ')} or ${names.at(-1)} (see \`stopctl --help\`)`,
  );
}

runProgram('stopctl', main);
