/** `stopctl redeem`: what a token stands for, from the store, checked against the ledger. */
import { DEFAULTS } from '../../daemon/daemon.js';
import { redeemToken, type LedgerFinding } from '../../evidence/redeem.js';
import { isReplyEntry } from '../../evidence/ledger-format.js';
import { UsageError } from '../../errors.js';
import { formatCommandHelp } from '../args.js';
import { describeRecordJson, describeUnreadableRecordJson, formatRecordText, formatUnreadableRecordText } from '../format-record.js';
import { UNKNOWN_TOKEN_HINT } from '../format-trace.js';
import { formatRecordPicture } from '../format-dot.js';
import { quote, showEndpoint } from '../show.js';
import type { StopctlCommand } from './command.js';
import { parseTokenCommand } from './parse-token-command.js';

const HELP = `  redeem TOKEN [--store DIR] [--format F] [--json]
      Print what TOKEN stands for, from the store (default ${DEFAULTS.storeDir}): for ID
      tokens the connection and user; for SV tokens the saved record (processes, sockets,
      pipes), checked against its token. The whole ledger's hash chain is checked too.
      --format text|json|dot|svg   dot and svg draw an SV record's processes and IPC as a
                                   Graphviz graph (integrity problems go to stderr and into
                                   the picture's title); --json is --format json
      Exit status: 0 verified, 2 unknown token, 3 integrity failure, 1 the store is missing
      or unreadable.
`;

/** `stopctl redeem TOKEN ...`. */
export const REDEEM_COMMAND: StopctlCommand = { name: 'redeem', help: HELP, run: runRedeem };

async function runRedeem(argv: string[]): Promise<number> {
  const { token, storeDir, format, json, help } = parseTokenCommand(argv, 'redeem');
  if (help) {
    process.stdout.write(formatCommandHelp(HELP));
    return 0;
  }
  const redemption = await redeemToken(storeDir, token);
  const { finding, record, status, problems } = redemption;
  if (json) {
    const ledger = { line: finding.lineNumber ?? null, lines: finding.lines, brokenLines: finding.brokenLines };
    const body =
      record === undefined
        ? describeFinding(token, finding, status)
        : record.record === undefined
          ? describeUnreadableRecordJson(token, { parseError: record.parseError, verified: record.verified, actualHash: record.actualHash })
          : describeRecordJson(token, record.record, { verified: record.verified, actualHash: record.actualHash });
    const absence = redemption.absence === undefined ? {} : { recordAbsent: { reason: redemption.absence.reason, note: redemption.absence.note, seq: redemption.absence.entry.seq } };
    const droppedNote = redemption.issuedInDroppedLedger === undefined ? {} : { ledgerEntryDropped: redemption.issuedInDroppedLedger };
    process.stdout.write(`${JSON.stringify({ ...body, verdict: VERDICTS[status], problems, ledger, ...absence, ...droppedNote }, null, 2)}\n`);
    return status;
  }
  let text: string;
  if (record === undefined) text = formatFinding(token, finding, { status, problems });
  else if (record.record === undefined) {
    text = formatUnreadableRecordText(token, { parseError: record.parseError, verified: record.verified, actualHash: record.actualHash });
  } else text = formatRecordText(token, record.record, { verified: record.verified, actualHash: record.actualHash });
  if (record !== undefined) {
    text += finding.entry === undefined ? '' : `Ledger      issued at line ${finding.lineNumber} of ${finding.lines}\n`;
  }
  // An unknown token's one problem is already said by formatFinding, with the store it read.
  if (status !== 2) for (const problem of problems) text += `INTEGRITY FAILURE: ${problem}\n`;
  if (redemption.absence !== undefined) text += `Record      ${redemption.absence.note}\n`;
  if (redemption.issuedInDroppedLedger !== undefined) text += `Ledger      ${redemption.issuedInDroppedLedger}\n`;
  if (format === 'dot' || format === 'svg') {
    if (record?.record !== undefined) {
      process.stdout.write(await formatRecordPicture(token, record.record, { format, problems }));
      for (const problem of problems) process.stderr.write(`stopctl: INTEGRITY FAILURE: ${problem}\n`);
      return status;
    }
    // Nothing to draw (an ID token, an unknown token, an unreadable record): say why on stderr.
    if (status === 0) throw new UsageError(`redeem --format ${format} draws SV records, and ${token} is not one; use --format text or json`);
    process.stderr.write(text);
    return status;
  }
  process.stdout.write(text);
  return status;
}

const VERDICTS = { 0: 'verified', 2: 'unknown-token', 3: 'integrity-failure' } as const;

function describeFinding(token: string, finding: LedgerFinding, status: 0 | 2 | 3): Record<string, unknown> {
  const entry = finding.entry;
  if (entry === undefined || !isReplyEntry(entry)) return { token, verdict: VERDICTS[status] };
  return {
    token,
    verdict: VERDICTS[status],
    type: entry.type ?? null,
    time: entry.time,
    request: { line: entry.request, requester: entry.requester },
    connection: entry.connection ?? null,
    decision: entry.decision,
    reason: entry.reason ?? null,
    replaces: entry.replaces ?? null,
    uid: entry.uid ?? null,
    user: entry.user ?? null,
    // Issue 14: where the connection was found, and for history the journal's entry.
    source: entry.source ?? (entry.connection === undefined ? null : 'live'),
    ...(entry.source === 'history'
      ? {
          history: {
            seq: entry.history ?? null,
            pid: entry.pid ?? null,
            comm: entry.comm ?? null,
            loginuid: entry.loginuid ?? null,
            connectedAt: entry.connectedAt ?? null,
            closedAt: entry.closedAt ?? null,
          },
        }
      : {}),
  };
}

function formatFinding(token: string, finding: LedgerFinding, verdict: { status: 0 | 2 | 3; problems: readonly string[] }): string {
  const out: string[] = [];
  const entry = finding.entry;
  if (entry === undefined) {
    out.push(`Token       ${token}`);
    // Unknown: the one problem names the store read. Otherwise the integrity problems follow.
    if (verdict.status === 2) for (const problem of verdict.problems) out.push(`Unknown     ${problem}; ${UNKNOWN_TOKEN_HINT}`);
    else out.push('Ledger      no entry for this token');
  } else if (isReplyEntry(entry)) {
    out.push(`Token       ${token}`);
    out.push(`Issued      ${entry.time} (ledger line ${finding.lineNumber})`);
    out.push(`Request     ${quote(entry.request)} from ${showEndpoint(entry.requester)}`);
    out.push(`Type        ${entry.type ?? 'unparsed'}${entry.sid === undefined ? '' : `, SID ${entry.sid}`}`);
    if (entry.connection !== undefined) {
      out.push(`Connection  ${showEndpoint(entry.connection.local)} -> ${showEndpoint(entry.connection.remote)} (${entry.connection.state})`);
    }
    if (entry.uid !== undefined) out.push(`User        ${entry.user ?? '(no passwd entry)'} (uid ${entry.uid})`);
    if (entry.source === 'history') {
      out.push(`Source      HISTORY: the connection had closed; history journal entry ${entry.history ?? '?'} (\`stopctl history\`)`);
      out.push(`Process     pid ${entry.pid ?? '?'} ${entry.comm === undefined ? '' : quote(entry.comm)}, connected ${entry.connectedAt ?? '?'}, closed ${entry.closedAt ?? 'not seen'}`);
    }
    if (entry.processed === false) out.push('Processed   no: a repeated or over-budget recursive request (paper 3.1.4)');
    const why = entry.replaces === undefined ? (entry.reason ?? entry.decision) : `${entry.reason ?? ''}, instead of ${entry.replaces}`;
    out.push(`Reply       token (${why})`);
  }
  if (finding.brokenLines.length === 0) out.push(`Ledger      ${finding.lines} entries, hash chain intact`);
  return out.join('\n') + '\n';
}

