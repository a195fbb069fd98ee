/**
 * `stopctl verify`: checks a whole evidence store (DESIGN "Evidence"; paper 6.5) and says
 * precisely what is wrong: every record against its token, the ledger's hash chain and
 * sequence numbers, the forward-secure MACs (with the initial key), and the two against each
 * other (records the ledger names, records nobody names).
 *
 * A crash is not tampering, but it leaves traces until the daemon starts again and recovers
 * (ledger.ts `Ledger.open`): a partial last line, temporary record files, and records whose
 * reply entry never reached the ledger. Verify reports those as findings of their own kinds
 * (`partial-line`, `temporary-file`, `record-unreferenced`) whose detail says so; after the
 * daemon's restart they are accounted for in a `recovery` entry and the store verifies clean.
 */
import { existsSync } from 'node:fs';
import { StoreOpenError } from '../errors.js';
import { checkEntryMac, evolveKey, evolveKeyBy, forgetKey, ledgerKeyId, readKeyState, splitEntryMac, type LedgerKeyState } from './forward-mac.js';
import { verifyHistory, type HistoryVerifySummary } from './history-verify.js';
import { GENESIS_HASH, hashLine, parseLedgerEntry } from './ledger-format.js';
import { listLedgerSegments, readLedgerLines } from './ledger-segments.js';
import { readLinesForward } from './line-reader.js';
import { storePaths } from './store.js';
import { findLockHolder } from './store-lock.js';
import { checkRecords, listRecords } from './verify-records.js';

/** What kind of problem a finding is. */
export type FindingKind =
  /** A record's bytes do not hash to its name (changed, or another record's bytes under this name). */
  | 'record-altered'
  /** A record file cannot be read, or matches its token but is not a record. */
  | 'record-unreadable'
  /** The ledger names a record that is not in `records/`. */
  | 'record-missing'
  /** A record file that no ledger entry names. */
  | 'record-unreferenced'
  /** A temporary file of an interrupted record write. */
  | 'temporary-file'
  /** Anything else in `records/`: wrong names, directories, links. */
  | 'unexpected-file'
  /** An entry whose bytes changed: its successor's `prev` or its MAC does not match. */
  | 'entry-altered'
  /** Sequence numbers missing: entries deleted. */
  | 'entry-missing'
  /** Two lines with the same sequence number. */
  | 'entry-duplicate'
  /** Lines whose sequence numbers go backwards: entries moved. */
  | 'entry-reordered'
  /** A line that is not a JSON ledger entry. */
  | 'entry-not-json'
  /** An entry after the key was installed that carries no MAC. */
  | 'entry-mac-missing'
  /** The last line has no line end: an interrupted write or a cut. */
  | 'partial-line'
  /** The key state says more entries were written than the ledger holds. */
  | 'ledger-truncated'
  /** The ledger file is gone although records exist. */
  | 'ledger-missing'
  /** The key given is not the one installed, or no key-installed entry exists. */
  | 'key-mismatch'
  /** The key state (`ledger.key`) is missing, unreadable, or not derived from the initial key. */
  | 'key-state';

/** One problem: what, where (a file or ledger position), and why it is a problem. */
export interface VerifyFinding {
  readonly kind: FindingKind;
  readonly where: string;
  readonly detail: string;
}

/** The result of {@link verifyStore}. */
export interface VerifyReport {
  readonly clean: boolean;
  readonly ledger: {
    /** Lines that are ledger entries. */
    readonly entries: number;
    readonly lines: number;
    readonly firstSeq: number | null;
    readonly lastSeq: number | null;
    /** The key id of the key-installed entry, or null when the ledger has no MACs. */
    readonly keyId: string | null;
    /** Entries whose MAC was checked with the initial key (0 without `--key`). */
    readonly macsChecked: number;
    /** The key state's seq (entries known written), or null without a key state. */
    readonly keyStateSeq: number | null;
    /** Files read: rotated segments and the active `ledger`. */
    readonly segments: number;
    /**
     * The first seq from which the chain could be checked: 1, or after a prefix dropped by
     * retention (and accounted for by a `segment-dropped` entry) the first kept seq.
     */
    readonly checkedFromSeq: number | null;
    /** The last seq dropped by retention, or null when nothing was dropped. */
    readonly droppedThroughSeq: number | null;
  };
  readonly records: {
    /** Records in `records/` (`<token>.json`, or `<token>.json.gz` after `stopctl prune --gzip`). */
    readonly count: number;
    /** Tokens the ledger names as records. */
    readonly referenced: number;
    /** Records named by recovery entries: saved, but their token was never sent. */
    readonly unreplied: number;
    /** Records the ledger says are absent on purpose (`record-not-kept` at the quota, or pruned). */
    readonly absent: number;
    /**
     * Records that no kept entry names but that were written before the last entry dropped by
     * retention: their reply entry was in a dropped segment (their bytes are still checked).
     */
    readonly beforeKeptLedger: number;
  };
  /** The history journal (history-verify.ts), or null when the store has none. */
  readonly history: HistoryVerifySummary | null;
  readonly findings: readonly VerifyFinding[];
}

/** Options of {@link verifyStore}. */
export interface VerifyOptions {
  /** The initial key A_0 (`stopctl verify --key`): every MAC is recomputed from it. */
  readonly key?: Buffer;
}

interface ParsedLine {
  /** Position among all lines read (every segment). */
  readonly line: number;
  readonly seq: number;
  readonly hash: string;
  /** `<file> line <n>`, for findings. */
  readonly where: string;
}

/**
 * Verifies the store in `storeDir`. Resolves a report (tampering is a finding, not an error);
 * rejects with a {@link StoreOpenError} when the store cannot be read at all.
 */
export async function verifyStore(storeDir: string, options: VerifyOptions = {}): Promise<VerifyReport> {
  const paths = storePaths(storeDir);
  const findings: VerifyFinding[] = [];
  // Records are listed before the ledger is read: a running daemon writes a record before its
  // entry, so every record listed has had its chance to be named by the time we read.
  const listing = listRecords(paths.records);
  let segments: number;
  try {
    segments = listLedgerSegments(paths.ledger).length;
  } catch (error) {
    throw new StoreOpenError(`Cannot read the ledger ${paths.ledger}: ${(error as Error).message}`, { cause: error });
  }
  const ledgerExists = segments > 0;
  if (!ledgerExists) {
    if (listing === undefined) {
      const what = existsSync(storeDir) ? 'it holds no ledger and no records' : 'the directory does not exist';
      throw new StoreOpenError(`Cannot read the store ${storeDir}: ${what}; give the daemon's store directory with --store`);
    }
    findings.push({ kind: 'ledger-missing', where: 'ledger', detail: 'the ledger file is missing, but records/ exists: the ledger was deleted' });
  }
  const scan = ledgerExists ? await scanLedger(paths.ledger, options.key, findings) : emptyScan();
  const keyStateSeq = checkKeyState(paths.ledgerKey, scan, options.key, findings);
  const live = findLockHolder(paths.lock) !== undefined;
  if (live && listing !== undefined) {
    // Records written while we read: their entries may have landed after our read.
    await scanLedgerGrowth(paths.ledger, scan.bytes, scan.referenced);
  }
  const recordSummary = checkRecords(paths.records, listing, scan, { live }, findings);
  const history = await verifyHistory(storeDir, paths.ledger, findings);
  return {
    clean: findings.length === 0,
    ledger: {
      entries: scan.entries,
      lines: scan.lines,
      firstSeq: scan.seqs[0]?.seq ?? null,
      lastSeq: scan.seqs.length === 0 ? null : scan.maxSeq,
      keyId: scan.keyId ?? null,
      macsChecked: scan.macsChecked,
      keyStateSeq,
      segments,
      checkedFromSeq: scan.seqs.length === 0 ? null : scan.checkedFromSeq,
      droppedThroughSeq: scan.dropped?.lastSeq ?? null,
    },
    records: recordSummary,
    history,
    findings: orderFindings(findings),
  };
}

interface LedgerScan {
  entries: number;
  lines: number;
  bytes: number;
  /** Parsed lines in file order. */
  seqs: ParsedLine[];
  maxSeq: number;
  /** Record tokens named by reply entries, with where. */
  referenced: Map<string, string>;
  /** Record tokens named by recovery entries (saved, token never sent). */
  unreplied: Set<string>;
  /** Records the ledger says are absent on purpose: not kept at the store quota, or pruned. */
  absent: Set<string>;
  keyId: string | undefined;
  installSeq: number | undefined;
  macsChecked: number;
  /** Seq -> line hash, for the key state's head (only the lines the key state may name are looked up). */
  hashOfSeq: Map<number, { line: number; hash: string; where: string }>;
  /** See VerifyReport.ledger.checkedFromSeq. */
  checkedFromSeq: number;
  /** The newest segment-dropped entry that accounts for the missing prefix. */
  dropped: { lastSeq: number; lastTime: number | undefined } | undefined;
}

function emptyScan(): LedgerScan {
  return {
    entries: 0,
    lines: 0,
    bytes: 0,
    seqs: [],
    maxSeq: 0,
    referenced: new Map(),
    unreplied: new Set(),
    absent: new Set(),
    keyId: undefined,
    installSeq: undefined,
    macsChecked: 0,
    hashOfSeq: new Map(),
    checkedFromSeq: 1,
    dropped: undefined,
  };
}

/** Reads the ledger once: chain, sequence numbers, MACs, references to records. */
async function scanLedger(path: string, initialKey: Buffer | undefined, findings: VerifyFinding[]): Promise<LedgerScan> {
  const scan = emptyScan();
  const altered = new Map<number, { where: string; reasons: string[] }>();
  const noteAltered = (seq: number, where: string, reason: string): void => {
    const known = altered.get(seq);
    if (known === undefined) altered.set(seq, { where, reasons: [reason] });
    else known.reasons.push(reason);
  };
  let previous: { line: number; hash: string; seq: number | undefined; where: string } | undefined;
  // The MAC epoch: from the key-installed entry on, every entry must carry a MAC.
  let epoch: { installSeq: number; keyId: string; checkable: boolean } | undefined;
  // The key of MAC position `index` (seq - installSeq), evolved forward from A_0 as verify reads.
  const keyCursor: { index: number; key: Buffer | undefined } = {
    index: 0,
    key: initialKey === undefined ? undefined : Buffer.from(initialKey),
  };
  const keyFor = (index: number): Buffer | undefined => {
    if (initialKey === undefined || keyCursor.key === undefined) return undefined;
    let key: Buffer = keyCursor.key;
    if (index < keyCursor.index) {
      // Reordered entries: start again from the initial key.
      forgetKey(key);
      key = Buffer.from(initialKey);
      keyCursor.index = 0;
    }
    while (keyCursor.index < index) {
      const next = evolveKey(key);
      forgetKey(key);
      key = next;
      keyCursor.index += 1;
    }
    keyCursor.key = key;
    return key;
  };
  let macWithoutInstall: number | undefined;
  const wantedKeyId = initialKey === undefined ? undefined : ledgerKeyId(initialKey);

  // The first entry read, and what segment-dropped entries say about the entries before it.
  let firstEntry: { seq: number; prev: string; where: string } | undefined;
  const drops = new Map<number, { lastHash: string; lastTime: number | undefined; where: string }>();
  let lines = 0;
  let readError: unknown;
  const stream = readLedgerLines(path);
  for (;;) {
    let next: Awaited<ReturnType<typeof stream.next>>;
    try {
      next = await stream.next();
    } catch (error) {
      readError = error;
      break;
    }
    if (next.done === true) break;
    const { bytes, complete, lineNumber: fileLine, end, segment } = next.value;
    lines += 1;
    const lineNumber = lines;
    scan.lines = lines;
    if (segment.active) scan.bytes = end;
    const where = `${segment.name} line ${fileLine}`;
    if (!complete) {
      findings.push({
        kind: 'partial-line',
        where,
        detail: segment.active
          ? `the last ${bytes.length} bytes have no line end: a write was interrupted (the daemon stopped; starting it cuts them off and keeps them in a recovery entry), or the ledger was cut in the middle of an entry`
          : `the last ${bytes.length} bytes of this rotated segment have no line end: the segment was cut in the middle of an entry`,
      });
      if (segment.active) break;
      previous = { line: lineNumber, hash: hashLine(bytes), seq: undefined, where };
      continue;
    }
    const text = bytes.toString('utf8');
    const hash = hashLine(bytes);
    const entry = parseLedgerEntry(text);
    if (entry === undefined) {
      findings.push({ kind: 'entry-not-json', where, detail: `the line is not a ledger entry (a JSON object with seq, time and prev): ${JSON.stringify(text.slice(0, 80))}` });
      previous = { line: lineNumber, hash, seq: undefined, where };
      continue;
    }
    const { seq } = entry;
    firstEntry ??= { seq, prev: entry.prev, where };
    if (entry.kind === 'segment-dropped' && Number.isSafeInteger(entry.lastSeq) && typeof entry.lastHash === 'string') {
      const time = typeof entry.lastTime === 'string' ? Date.parse(entry.lastTime) : Number.NaN;
      drops.set(entry.lastSeq as number, { lastHash: entry.lastHash, lastTime: Number.isFinite(time) ? time : undefined, where: `${where} (seq ${seq})` });
    }
    // After a dropped prefix the key-installed entry may be gone: the first kept entry, a
    // segment-start (itself MACed), carries the key's epoch.
    if (
      previous === undefined &&
      epoch === undefined &&
      entry.kind === 'segment-start' &&
      typeof entry.keyId === 'string' &&
      Number.isSafeInteger(entry.installSeq) &&
      (entry.installSeq as number) <= seq
    ) {
      epoch = { installSeq: entry.installSeq as number, keyId: entry.keyId, checkable: wantedKeyId !== undefined && entry.keyId === wantedKeyId };
      scan.keyId = entry.keyId;
      scan.installSeq = epoch.installSeq;
    }
    scan.entries += 1;
    scan.seqs.push({ line: lineNumber, seq, hash, where });
    scan.maxSeq = Math.max(scan.maxSeq, seq);
    scan.hashOfSeq.set(seq, { line: lineNumber, hash, where });
    // Chain: this entry's prev must be the hash of the line before it.
    const expectedPrev = previous?.hash ?? GENESIS_HASH;
    if (entry.prev !== expectedPrev) {
      if (previous === undefined && seq === 1) {
        noteAltered(seq, where, 'its prev is not the genesis hash of a first entry');
      } else if (previous?.seq !== undefined && previous.seq === seq - 1) {
        noteAltered(previous.seq, previous.where, `its bytes no longer hash to the prev recorded by the next entry (seq ${seq}, line ${lineNumber})`);
      }
      // Otherwise the line before is not this entry's predecessor: the missing, reordered,
      // duplicate or not-JSON finding about it explains the break.
    }
    // Forward-secure MAC.
    if (entry.kind === 'key-installed' && typeof entry.keyId === 'string') {
      epoch = { installSeq: seq, keyId: entry.keyId, checkable: wantedKeyId !== undefined && entry.keyId === wantedKeyId };
      scan.keyId = entry.keyId;
      scan.installSeq = seq;
      if (wantedKeyId !== undefined && !epoch.checkable) {
        findings.push({
          kind: 'key-mismatch',
          where: `${where} (seq ${seq})`,
          detail: `this entry installs key id ${entry.keyId}, but the key given has id ${wantedKeyId}: it is not the initial key of this ledger (or the entry was forged), so the MACs from here on cannot be checked`,
        });
      }
    }
    const split = splitEntryMac(text);
    if (epoch !== undefined && seq >= epoch.installSeq) {
      if (split === undefined) {
        findings.push({
          kind: 'entry-mac-missing',
          where: `${where} (seq ${seq})`,
          detail: `the key was installed at seq ${epoch.installSeq}, but this entry has no MAC: it was written or rewritten without the key`,
        });
      } else if (epoch.checkable) {
        const key = keyFor(seq - epoch.installSeq);
        scan.macsChecked += 1;
        if (key !== undefined && !checkEntryMac(key, split.lineWithoutMac, split.mac)) {
          noteAltered(seq, where, 'its MAC does not verify with the key derived from the initial key: it was altered, or forged with a later key');
        }
      }
    } else if (split !== undefined && epoch === undefined && macWithoutInstall === undefined) {
      macWithoutInstall = lineNumber;
    }
    // References between the ledger and records/.
    if (entry.kind === 'reply' && typeof entry.record === 'string') scan.referenced.set(entry.record, `seq ${seq}, line ${lineNumber}`);
    // quota.ts and prune.ts: a record deliberately not saved, or removed by `stopctl prune`.
    if (typeof entry.record === 'string' && (entry.kind === 'record-not-kept' || (entry.kind === 'prune' && entry.action === 'removed'))) {
      scan.absent.add(entry.record);
    }
    if (entry.kind === 'recovery' && Array.isArray(entry.unrepliedRecords)) {
      for (const token of entry.unrepliedRecords) if (typeof token === 'string') scan.unreplied.add(token);
    }
    previous = { line: lineNumber, hash, seq, where };
  }
  // Stopped early (a partial last line): close the file.
  await stream.return(undefined).catch(() => undefined);
  if (keyCursor.key !== undefined) forgetKey(keyCursor.key);
  if (readError !== undefined) {
    throw new StoreOpenError(`Cannot read the ledger ${path}: ${(readError as Error).message}`, { cause: readError });
  }
  if (firstEntry !== undefined && firstEntry.seq > 1) {
    const drop = drops.get(firstEntry.seq - 1);
    if (drop !== undefined) {
      // A prefix dropped by retention: checked from the first kept entry on.
      scan.checkedFromSeq = firstEntry.seq;
      scan.dropped = { lastSeq: firstEntry.seq - 1, lastTime: drop.lastTime };
      if (drop.lastHash !== firstEntry.prev) {
        noteAltered(
          firstEntry.seq,
          firstEntry.where,
          `its prev is not the hash of the last dropped entry (seq ${firstEntry.seq - 1}) recorded by the segment-dropped entry at ${drop.where}: it or that note was altered`,
        );
      }
    }
  }
  if (macWithoutInstall !== undefined) {
    findings.push({
      kind: 'key-mismatch',
      where: `ledger line ${macWithoutInstall}`,
      detail: 'entries carry MACs but no key-installed entry comes before them: the key-installed entry was removed or altered',
    });
  } else if (initialKey !== undefined && epoch === undefined && scan.entries > 0) {
    findings.push({
      kind: 'key-mismatch',
      where: 'ledger',
      detail: 'a key was given, but the ledger has no key-installed entry: it was never keyed, or that entry was removed',
    });
  }
  checkSequence(scan.seqs, findings, scan.checkedFromSeq);
  for (const [seq, { where, reasons }] of altered) {
    findings.push({ kind: 'entry-altered', where: `${where} (seq ${seq})`, detail: reasons.join('; ') });
  }
  return scan;
}

/** Missing, duplicate and reordered sequence numbers. */
function checkSequence(seqs: readonly ParsedLine[], findings: VerifyFinding[], startSeq: number): void {
  // Reordered: every place where the numbers go backwards (a moved line shows as one descent).
  for (let index = 1; index < seqs.length; index += 1) {
    const before = seqs[index - 1];
    const here = seqs[index];
    if (before === undefined || here === undefined || here.seq > before.seq) continue;
    if (here.seq === before.seq) continue; // a duplicate, reported below
    findings.push({
      kind: 'entry-reordered',
      where: `${before.where.replace(/ line /, ' lines ')}-${here.where.replace(/^.* line /, '')}`,
      detail: `seq ${before.seq} comes before seq ${here.seq}: entries were moved`,
    });
  }
  const byNumber = [...seqs].sort((a, b) => a.seq - b.seq || a.line - b.line);
  let expected = startSeq;
  let previous: ParsedLine | undefined;
  for (const item of byNumber) {
    if (previous !== undefined && item.seq === previous.seq) {
      findings.push({
        kind: 'entry-duplicate',
        where: `${previous.where.replace(/ line /, ' lines ')} and ${item.where.replace(/^ledger line /, '')}`,
        detail: `both lines have seq ${item.seq}: one was copied or forged`,
      });
      continue;
    }
    if (item.seq > expected) {
      const range = item.seq - 1 === expected ? `seq ${expected} is` : `seqs ${expected}-${item.seq - 1} are`;
      const after = previous === undefined ? 'the start of the ledger' : `seq ${previous.seq} (${previous.where.replace(/^ledger line/, 'line')})`;
      const unaccounted = previous === undefined ? ', and no segment-dropped entry accounts for them' : '';
      findings.push({
        kind: 'entry-missing',
        where: `ledger seq ${expected === item.seq - 1 ? expected : `${expected}-${item.seq - 1}`}`,
        detail: `${range} missing between ${after} and seq ${item.seq} (${item.where.replace(/^ledger line/, 'line')}): entries were deleted${unaccounted}`,
      });
    }
    expected = item.seq + 1;
    previous = item;
  }
}

/** Checks `ledger.key` against the ledger (and the initial key). Returns the state's seq. */
function checkKeyState(path: string, scan: LedgerScan, initialKey: Buffer | undefined, findings: VerifyFinding[]): number | null {
  let state: LedgerKeyState | undefined;
  try {
    state = readKeyState(path);
  } catch (error) {
    findings.push({ kind: 'key-state', where: 'ledger.key', detail: `the key state cannot be read: ${(error as Error).message}` });
    return null;
  }
  if (state === undefined) {
    if (scan.keyId !== undefined) {
      findings.push({
        kind: 'key-state',
        where: 'ledger.key',
        detail: `the ledger was keyed (key id ${scan.keyId}) but the key state is gone: it was deleted, so the daemon stopped authenticating entries`,
      });
    }
    return null;
  }
  try {
    if (scan.installSeq === undefined) {
      findings.push({
        kind: 'key-mismatch',
        where: 'ledger',
        detail: `a key state exists (key id ${state.keyId}, installed at seq ${state.installSeq}) but the ledger has no key-installed entry: it was removed`,
      });
    }
    const lastSeq = scan.maxSeq;
    if (state.seq > lastSeq) {
      findings.push({
        kind: 'ledger-truncated',
        where: `ledger seq ${lastSeq + 1}-${state.seq}`,
        detail: `the key state shows entries up to seq ${state.seq} were written, but the ledger ends at seq ${lastSeq}: entries were removed from its end`,
      });
    } else {
      const head = scan.hashOfSeq.get(state.seq);
      if (head !== undefined && head.hash !== state.head) {
        findings.push({
          kind: 'entry-altered',
          where: `${head.where} (seq ${state.seq})`,
          detail: 'its bytes do not hash to the head recorded in the key state: the entry was altered',
        });
      }
      // state.seq < lastSeq: the daemon stopped between a ledger write and the key write (the
      // documented crash window); it evolves the key forward when it starts. Not a finding.
    }
    if (initialKey !== undefined && state.keyId === ledgerKeyId(initialKey)) {
      const expected = evolveKeyBy(initialKey, state.seq + 1 - state.installSeq);
      const matches = expected.equals(state.key);
      forgetKey(expected);
      if (!matches) {
        findings.push({
          kind: 'key-state',
          where: 'ledger.key',
          detail: `the key on the host is not the one the initial key evolves to for seq ${state.seq + 1}: the key state was replaced or rolled back`,
        });
      }
    }
    return state.seq;
  } finally {
    forgetKey(state.key);
  }
}

/** Adds record references from lines appended after `offset` (a running daemon's latest entries). */
async function scanLedgerGrowth(path: string, offset: number, referenced: Map<string, string>): Promise<void> {
  try {
    for await (const line of readLinesForward(path, { offset })) {
      const entry = parseLedgerEntry(line.bytes.toString('utf8'));
      if (entry?.kind === 'reply' && typeof entry.record === 'string') referenced.set(entry.record, `seq ${entry.seq}, written during verification`);
    }
  } catch {
    // Unreadable now: the records are judged on what was read.
  }
}

/** Ledger findings in file order first, then key state, then records by name. */
function orderFindings(findings: readonly VerifyFinding[]): VerifyFinding[] {
  const rank = (finding: VerifyFinding): [number, number, number, string] => {
    // Rotated segments (by first seq) come before the active file.
    const line = /^ledger(?:-segments\/(\d+)\.ledger)? lines? (\d+)/.exec(finding.where);
    if (line !== null) return [0, line[1] === undefined ? Infinity : Number(line[1]), Number(line[2]), ''];
    const seq = /^ledger seq (\d+)/.exec(finding.where);
    if (seq !== null) return [1, Number(seq[1]), 0, ''];
    if (finding.where.startsWith('ledger')) return [2, 0, 0, finding.where];
    return [3, 0, 0, finding.where];
  };
  return [...findings].sort((a, b) => {
    const [ga, fa, na, sa] = rank(a);
    const [gb, fb, nb, sb] = rank(b);
    return ga - gb || (fa === fb ? 0 : fa < fb ? -1 : 1) || na - nb || sa.localeCompare(sb);
  });
}
