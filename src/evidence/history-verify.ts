/**
 * `stopctl verify` for the history journal (issue 14): the same checks as the ledger's (the
 * hash chain across segment files, sequence numbers, lines that are not entries), and the
 * journal against the anchors the ledger holds for it: each `history-sealed` and
 * `history-checkpoint` entry names a seq and the hash of its line (so an altered line of a
 * sealed segment, or entries cut from the end, are found even where the chain was rewritten),
 * and each `history-dropped` entry the hash the first kept entry must chain onto.
 */
import { createHash } from 'node:crypto';
import { listHistorySegments, parseHistoryLine } from './history-files.js';
import { GENESIS_HASH } from './ledger-format.js';
import { readLedgerLines, readSegmentLines } from './ledger-segments.js';
import type { VerifyFinding } from './verify.js';

/** What verify says of the journal. */
export interface HistoryVerifySummary {
  readonly entries: number;
  readonly segments: number;
  readonly firstSeq: number | null;
  readonly lastSeq: number | null;
  /** The last seq dropped by retention (accounted for by a history-dropped entry), or null. */
  readonly droppedThroughSeq: number | null;
  /** Anchors in the ledger (sealed segments, clean stops) checked against the journal. */
  readonly anchorsChecked: number;
}

interface Anchor {
  readonly seq: number;
  readonly hash: string;
  /** `ledger seq N (history-sealed)`, for findings. */
  readonly where: string;
}

/**
 * Checks the journal of `storeDir` and adds what is wrong to `findings` (the kinds of the
 * ledger's findings, `where` naming `history/<file> line <n>`). Null when the store has no journal.
 */
export async function verifyHistory(storeDir: string, ledgerPath: string, findings: VerifyFinding[]): Promise<HistoryVerifySummary | null> {
  const segments = listHistorySegments(storeDir);
  const { anchors, drops } = await readAnchors(ledgerPath);
  if (segments.length === 0 && anchors.length === 0) return null;
  const wanted = new Map<number, string | undefined>(anchors.map((anchor) => [anchor.seq, undefined]));
  let previous: { hash: string; seq: number | undefined; where: string } | undefined;
  let firstSeq: number | undefined;
  let lastSeq: number | undefined;
  let entries = 0;
  let droppedThroughSeq: number | null = null;
  for (const segment of segments) {
    for await (const line of readSegmentLines(segment)) {
      const where = `${segment.name} line ${line.lineNumber}`;
      const hash = createHash('sha256').update(line.bytes).digest('hex');
      if (!line.complete) {
        findings.push({
          kind: 'partial-line',
          where,
          detail: `the last ${line.bytes.length} bytes of the history journal have no line end: a write was interrupted (the daemon cuts them off when it starts), or the file was cut`,
        });
        break;
      }
      const text = line.bytes.toString('utf8');
      const entry = parseHistoryLine(text);
      if (entry === undefined) {
        findings.push({ kind: 'entry-not-json', where, detail: `the line is not a history entry: ${JSON.stringify(text.slice(0, 80))}` });
        previous = { hash, seq: undefined, where };
        continue;
      }
      entries += 1;
      const { seq } = entry;
      if (wanted.has(seq)) wanted.set(seq, hash);
      if (firstSeq === undefined) {
        firstSeq = seq;
        if (seq === 1) {
          if (entry.prev !== GENESIS_HASH) findings.push({ kind: 'entry-altered', where: `${where} (seq 1)`, detail: 'its prev is not the genesis hash of a first entry' });
        } else {
          const drop = drops.get(seq - 1);
          if (drop === undefined) {
            findings.push({
              kind: 'entry-missing',
              where: `history seq 1-${seq - 1}`,
              detail: `the history journal starts at seq ${seq} and no history-dropped entry in the ledger accounts for the entries before it: they were deleted`,
            });
          } else {
            droppedThroughSeq = seq - 1;
            if (drop.hash !== entry.prev) {
              findings.push({
                kind: 'entry-altered',
                where: `${where} (seq ${seq})`,
                detail: `its prev is not the hash of the last dropped entry recorded by the history-dropped entry at ${drop.where}: it or that note was altered`,
              });
            }
          }
        }
      } else if (previous !== undefined) {
        const previousSeq = previous.seq;
        if (previousSeq !== undefined && seq <= previousSeq) {
          findings.push({ kind: 'entry-reordered', where, detail: `seq ${seq} comes after seq ${previousSeq}: entries were moved or copied` });
        } else if (previousSeq !== undefined && seq > previousSeq + 1) {
          const range = seq - 1 === previousSeq + 1 ? `seq ${previousSeq + 1} is` : `seqs ${previousSeq + 1}-${seq - 1} are`;
          findings.push({ kind: 'entry-missing', where: `history seq ${previousSeq + 1}-${seq - 1}`, detail: `${range} missing before ${where}: entries were deleted` });
        } else if (entry.prev !== previous.hash && previousSeq !== undefined) {
          findings.push({
            kind: 'entry-altered',
            where: `${previous.where} (seq ${previousSeq})`,
            detail: `its bytes no longer hash to the prev recorded by the next entry (seq ${seq}): the line was altered`,
          });
        }
      }
      lastSeq = seq;
      previous = { hash, seq, where };
    }
  }
  let anchorsChecked = 0;
  for (const anchor of anchors) {
    if (droppedThroughSeq !== null && anchor.seq <= droppedThroughSeq) continue; // its segment was dropped, as noted
    const hash = wanted.get(anchor.seq);
    anchorsChecked += 1;
    if (hash === undefined) {
      if (lastSeq === undefined || anchor.seq > lastSeq) {
        findings.push({
          kind: 'entry-missing',
          where: `history seq ${(lastSeq ?? 0) + 1}-${anchor.seq}`,
          detail: `the ledger (${anchor.where}) says history entries up to seq ${anchor.seq} were written, but the journal ends at ${lastSeq === undefined ? 'nothing' : `seq ${lastSeq}`}: entries or files were removed`,
        });
      }
      // Otherwise the entry is missing in the middle: reported above.
    } else if (hash !== anchor.hash) {
      findings.push({
        kind: 'entry-altered',
        where: `history seq ${anchor.seq}`,
        detail: `the line does not hash to the value the ledger recorded for it (${anchor.where}): the journal was altered`,
      });
    }
  }
  return { entries, segments: segments.length, firstSeq: firstSeq ?? null, lastSeq: lastSeq ?? null, droppedThroughSeq, anchorsChecked };
}

/** The journal's anchors and drops in the ledger (entries whose chain and MACs the ledger's own check covers). */
async function readAnchors(ledgerPath: string): Promise<{ anchors: Anchor[]; drops: Map<number, Anchor> }> {
  const anchors: Anchor[] = [];
  const drops = new Map<number, Anchor>();
  for await (const line of readLedgerLines(ledgerPath)) {
    if (!line.complete || !line.bytes.includes('"kind":"history-')) continue;
    let entry: Record<string, unknown>;
    try {
      entry = JSON.parse(line.bytes.toString('utf8')) as Record<string, unknown>;
    } catch {
      continue; // the ledger's check reports it
    }
    if (!Number.isSafeInteger(entry.lastSeq) || typeof entry.lastHash !== 'string') continue;
    const anchor = { seq: entry.lastSeq as number, hash: entry.lastHash, where: `ledger seq ${String(entry.seq)} (${String(entry.kind)})` };
    if (entry.kind === 'history-dropped') drops.set(anchor.seq, anchor);
    else if (entry.kind === 'history-sealed' || entry.kind === 'history-checkpoint') anchors.push(anchor);
  }
  return { anchors, drops };
}
