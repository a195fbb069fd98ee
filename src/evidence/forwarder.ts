/**
 * Remote forwarding of the ledger (issue 5, part 3): every ledger entry is also sent to a
 * syslog collector as an RFC 5424 message over TCP, framed by octet counting (RFC 6587
 * 3.4.1), optionally inside TLS (RFC 5425, same framing). A copy off the host is what keeps
 * the evidence when the host itself is taken over (paper 6.5).
 *
 * Design: the ledger is the durable queue. The forwarder keeps one number on disk, the `seq`
 * of the last entry known delivered (`<store>/forward-state`), and sends every later entry:
 * from memory while it keeps up, from the ledger file itself when it fell behind (collector
 * down, memory bound exceeded, daemon restarted). Nothing is ever dropped and no second queue
 * file can disagree with the ledger. The daemon's replies never wait for the collector: the
 * ledger's `onDurable` hook only hands lines over.
 *
 * Delivery. Plain TCP syslog has no acknowledgement, so "delivered" is defined as follows:
 * - an entry written to a connection that then stays up for `settleMs` (default 2 s) is
 *   delivered;
 * - when the collector closes the connection gracefully (FIN) and no reset follows within
 *   `peerCloseGraceMs`, it read everything before closing (a socket closed with unread data
 *   sends a reset, not a FIN), so every entry written is delivered;
 * - when the forwarder closes (daemon stopping) it half-closes and waits for the collector to
 *   close in turn, which it does after reading everything: every entry is delivered;
 * - on any other loss of the connection (reset, timeout), entries written less than
 *   `settleMs` before are sent again after reconnecting.
 * So the guarantee is at-least-once, in ledger order, with duplicates possible only for the
 * entries of the last `settleMs` before an abrupt connection loss. Every message carries its
 * `seq` in structured data, so a collector can drop such duplicates. A collector that stops
 * reading for longer than `settleMs` and then crashes can lose what sat in its socket buffer;
 * only an application-level acknowledgement (RELP) would close that gap.
 */
import { readFileSync, statSync } from 'node:fs';
import { isIP, connect as connectTcp, type Socket } from 'node:net';
import { hostname as osHostname } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { connect as connectTls, type ConnectionOptions } from 'node:tls';
import { UsageError } from '../errors.js';
import { writeFileDurably } from './durable-file.js';
import type { DurableLine } from './ledger.js';
import { readLastEntry, readLedgerRange } from './ledger-segments.js';

/** RFC 5424 6.2.1: facility 10 is security/authorization (authpriv); severity 5 is notice. */
export const SYSLOG_FACILITY = 10;
export const SYSLOG_SEVERITY = 5;
/** RFC 5612: enterprise number 32473 is reserved for documentation, used in the SD-ID. */
export const SD_ID = 'stopd@32473';
/** RFC 5424 6.4: MSG in UTF-8 starts with a byte order mark. */
const BOM = Buffer.from([0xef, 0xbb, 0xbf]);

/** Where the collector listens. */
export interface SyslogTarget {
  readonly host: string;
  readonly port: number;
}

/** Parses `HOST:PORT` or `[IPV6]:PORT` (the value of `stopd --syslog`). */
export function parseSyslogTarget(text: string): SyslogTarget {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(text);
  const port = Number(match?.[3]);
  if (match === null || !(port >= 1 && port <= 65535)) {
    throw new UsageError(`--syslog expects HOST:PORT such as logs.example.net:6514 or [2001:db8::1]:514, not ${JSON.stringify(text)}`);
  }
  return { host: match[1] ?? match[2] ?? '', port };
}

/** What goes into the header of every message. */
export interface SyslogHeader {
  /** RFC 5424 HOSTNAME; default the host name. */
  readonly hostname: string;
  /** RFC 5424 PROCID; default the daemon's pid. */
  readonly procId: string;
}

/**
 * The RFC 5424 message of one ledger entry (without framing):
 * `<85>1 TIMESTAMP HOSTNAME stopd PROCID ledger [stopd@32473 seq="N"] BOM LINE`.
 * TIMESTAMP is the entry's own time, so the collector files it when it happened, not when
 * it was (maybe much later) forwarded.
 */
export function formatSyslogMessage(entry: { readonly seq: number; readonly time: unknown; readonly line: string }, header: SyslogHeader): Buffer {
  const pri = SYSLOG_FACILITY * 8 + SYSLOG_SEVERITY;
  const timestamp = typeof entry.time === 'string' && RFC5424_TIMESTAMP.test(entry.time) ? entry.time : '-';
  const head = `<${pri}>1 ${timestamp} ${headerField(header.hostname, 255)} stopd ${headerField(header.procId, 128)} ledger [${SD_ID} seq="${entry.seq}"] `;
  return Buffer.concat([Buffer.from(head, 'ascii'), BOM, Buffer.from(entry.line, 'utf8')]);
}

/** RFC 6587 3.4.1 octet counting: `MSG-LEN SP SYSLOG-MSG`, the length in octets. */
export function frameOctetCounted(message: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`${message.length} `, 'ascii'), message]);
}

// RFC 5424 6.2.3: FULL-DATE "T" PARTIAL-TIME TIME-OFFSET, at most 6 fraction digits.
const RFC5424_TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})$/;

/** RFC 5424 6.2: header fields are PRINTUSASCII (33..126) with a maximum length, or `-`. */
function headerField(text: string, max: number): string {
  const clean = text.replace(/[^\x21-\x7e]/g, '_').slice(0, max);
  return clean === '' ? '-' : clean;
}

/** Where the forwarder reports connection changes. */
export interface ForwarderLog {
  info(message: string): void;
  warn(message: string): void;
}

/** Options of {@link SyslogForwarder}. */
export interface SyslogForwarderOptions {
  readonly target: SyslogTarget;
  /** Use TLS (RFC 5425); `ca` replaces the system's trusted certificates (PEM). */
  readonly tls?: { readonly ca?: string | Buffer };
  /** The ledger file: the queue of what is still to send. */
  readonly ledgerPath: string;
  /** Where the seq of the last delivered entry is kept (default `forward-state` beside the ledger). */
  readonly statePath?: string;
  readonly log?: ForwarderLog;
  readonly header?: Partial<SyslogHeader>;
  /** Lines kept in memory for sending, in bytes; beyond it they are read back from the ledger (default 1 MiB). */
  readonly maxQueuedBytes?: number;
  /** How long a connection must stay up after a write for it to count as delivered (default 2000). */
  readonly settleMs?: number;
  /** How long to watch for a reset after the collector closed (default 1000). */
  readonly peerCloseGraceMs?: number;
  /** Reconnect delays, doubling from min to max (defaults 500 and 30000). */
  readonly minBackoffMs?: number;
  readonly maxBackoffMs?: number;
  readonly connectTimeoutMs?: number;
  /** How long `close()` may spend delivering what is queued (default 5000). */
  readonly closeTimeoutMs?: number;
}

/** Where forwarding stands, for logs and tests. */
export interface ForwarderStatus {
  readonly connected: boolean;
  /** Seq of the last entry known delivered (persisted in the state file). */
  readonly deliveredSeq: number;
  /** Seq of the last entry written to the connection. */
  readonly sentSeq: number;
  /** Seq of the last entry durably in the ledger. */
  readonly ledgerSeq: number;
}

/** One ledger line to send, with its place in the ledger file. */
interface Item {
  readonly seq: number;
  readonly time: unknown;
  readonly line: string;
  /** The ledger file it is in (`ledger`, or `ledger-segments/<n>.ledger` once rotated), a hint with `offset`. */
  readonly segment: string | undefined;
  /** Byte offset of the line in that file (a hint for lines that came from memory). */
  readonly offset: number;
  /** Byte offset just after its newline. */
  readonly end: number;
}

interface Sent {
  readonly seq: number;
  readonly segment: string | undefined;
  readonly offset: number;
  readonly end: number;
  /** When the bytes were handed to the kernel; undefined while still in Node's buffer. */
  flushedAt: number | undefined;
}

type ConnectionState = 'connecting' | 'open' | 'peer-closed' | 'ending' | 'closed';

interface Connection {
  readonly socket: Socket;
  state: ConnectionState;
  readonly sent: Sent[];
  error: Error | undefined;
  /** Set when the close proved that the collector read everything written. */
  clean: boolean;
  graceTimer: NodeJS.Timeout | undefined;
}

const BATCH_BYTES = 64 * 1024;

/**
 * Sends every ledger entry to a syslog collector, in order, surviving collector outages and
 * daemon restarts (see the module comment for the delivery guarantee).
 *
 * Wiring: give {@link SyslogForwarder.push} to `Ledger.open(path, { onDurable })`, call
 * {@link SyslogForwarder.start} once the ledger is open, {@link SyslogForwarder.close} after
 * the ledger is closed.
 */
export class SyslogForwarder {
  readonly #o: Required<Omit<SyslogForwarderOptions, 'tls' | 'log' | 'header'>> & {
    readonly tls: SyslogForwarderOptions['tls'] | undefined;
    readonly log: ForwarderLog | undefined;
  };
  readonly #header: SyslogHeader;
  #started = false;
  #draining = false;
  #closed = false;
  #closing: Promise<void> | undefined;
  /** The last delivered entry: its seq and the offset just after its line. */
  #delivered: { seq: number; segment: string | undefined; end: number } = { seq: 0, segment: undefined, end: 0 };
  /** The next entry to write: the first seq after the last written, and a file offset hint. */
  #next: { seq: number; segment: string | undefined; offset: number } = { seq: 1, segment: undefined, offset: 0 };
  #highWater = 0;
  #tailOffset = 0;
  #memory: Item[] = [];
  #memoryBytes = 0;
  #spilled = false;
  #conn: Connection | undefined;
  #backoffMs: number;
  #reconnectTimer: NodeJS.Timeout | undefined;
  #confirmTimer: NodeJS.Timeout | undefined;
  #failing = false;
  #waiters: (() => void)[] = [];
  #persisting: Promise<void> | undefined;
  #persistAgain = false;
  #warnedGap = false;

  constructor(options: SyslogForwarderOptions) {
    this.#o = {
      target: options.target,
      tls: options.tls,
      log: options.log,
      ledgerPath: options.ledgerPath,
      statePath: options.statePath ?? join(dirname(options.ledgerPath), 'forward-state'),
      maxQueuedBytes: options.maxQueuedBytes ?? 1024 * 1024,
      settleMs: options.settleMs ?? 2000,
      peerCloseGraceMs: options.peerCloseGraceMs ?? 1000,
      minBackoffMs: options.minBackoffMs ?? 500,
      maxBackoffMs: options.maxBackoffMs ?? 30_000,
      connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
      closeTimeoutMs: options.closeTimeoutMs ?? 5000,
    };
    this.#header = { hostname: options.header?.hostname ?? osHostname(), procId: options.header?.procId ?? String(process.pid) };
    this.#backoffMs = this.#o.minBackoffMs;
  }

  /** `host:port` of the collector, for messages. */
  get targetText(): string {
    const { host, port } = this.#o.target;
    return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  }

  /** Where forwarding stands. */
  status(): ForwarderStatus {
    return {
      connected: this.#conn?.state === 'open',
      deliveredSeq: this.#delivered.seq,
      sentSeq: this.#next.seq - 1,
      ledgerSeq: this.#highWater,
    };
  }

  /**
   * The ledger's `onDurable` hook: entries now on disk, in order. Never throws and never
   * waits: it only queues (in memory up to the bound; past it the ledger file is the queue).
   */
  push(lines: readonly DurableLine[]): void {
    for (const { entry, line } of lines) {
      if (entry.seq > this.#highWater) this.#highWater = entry.seq;
      // Before start() the file is read back anyway; after close() the next start will.
      if (!this.#started || this.#closed) continue;
      const size = Buffer.byteLength(line) + 1;
      // A rotation renamed the active file: this entry is the first line of the new one.
      if (entry.kind === 'segment-start') this.#tailOffset = 0;
      const item: Item = { seq: entry.seq, time: entry.time, line, segment: basename(this.#o.ledgerPath), offset: this.#tailOffset, end: this.#tailOffset + size };
      this.#tailOffset += size;
      if (this.#spilled) continue;
      if (this.#memoryBytes + size > this.#o.maxQueuedBytes) {
        // Over the bound: forget the copies and read them back from the ledger when needed.
        this.#memory = [];
        this.#memoryBytes = 0;
        this.#spilled = true;
        continue;
      }
      this.#memory.push(item);
      this.#memoryBytes += size;
    }
    this.#signal();
  }

  /**
   * Reads the delivered seq from the state file and the end of the ledger, then connects.
   * Call once the ledger is open and before it takes new entries.
   */
  start(): void {
    if (this.#started) return;
    this.#delivered = this.#loadState();
    this.#highWater = Math.max(this.#highWater, readLastEntry(this.#o.ledgerPath)?.seq ?? 0);
    this.#tailOffset = fileSize(this.#o.ledgerPath);
    if (this.#delivered.seq > this.#highWater) {
      this.#o.log?.warn(
        `The syslog forwarding state says entry ${this.#delivered.seq} was delivered, but the ledger ends at ${this.#highWater}: forwarding the whole ledger again`,
      );
      this.#delivered = { seq: 0, segment: undefined, end: 0 };
    }
    this.#next = { seq: this.#delivered.seq + 1, segment: this.#delivered.segment, offset: this.#delivered.end };
    this.#started = true;
    this.#connect();
  }

  /**
   * Delivers what is queued (bounded by `closeTimeoutMs`), closes the connection, and saves
   * the delivered seq. What is not delivered by then is sent after the next start. Idempotent.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#draining = true;
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = undefined;
    const deadline = Date.now() + this.#o.closeTimeoutMs;
    const conn = this.#conn;
    if (conn !== undefined && conn.state === 'open') {
      await this.#waitUntil(
        () => conn.state !== 'open' || (this.#next.seq > this.#highWater && conn.sent.every((sent) => sent.flushedAt !== undefined)),
        deadline,
      );
      if (conn.state === 'open') {
        // Half-close: the collector closes its side once it has read everything (our EOF
        // comes after every byte), which proves delivery of all of it.
        conn.state = 'ending';
        conn.socket.end();
      }
    } else if (conn?.state === 'connecting') {
      conn.socket.destroy();
    }
    // Wait for the collector's side of the close (or the reset watch after its FIN), bounded.
    await this.#waitUntil(() => this.#conn === undefined, Math.max(deadline, Date.now() + this.#o.peerCloseGraceMs + 100));
    if (this.#conn !== undefined) {
      this.#conn.socket.destroy();
      await this.#waitUntil(() => this.#conn === undefined, Date.now() + 1000);
    }
    this.#closed = true;
    clearInterval(this.#confirmTimer);
    this.#confirmTimer = undefined;
    this.#persist();
    while (this.#persisting !== undefined) await this.#persisting;
    this.#signal();
  }

  #connect(): void {
    if (this.#draining || this.#conn !== undefined) return;
    const { host, port } = this.#o.target;
    const tls = this.#o.tls;
    // allowHalfOpen: after the collector's FIN we keep listening for a reset (see #onPeerEnd).
    const socket: Socket =
      tls === undefined
        ? connectTcp({ host, port, allowHalfOpen: true })
        : connectTls(tlsOptions(host, port, tls));
    const conn: Connection = { socket, state: 'connecting', sent: [], error: undefined, clean: false, graceTimer: undefined };
    this.#conn = conn;
    socket.setTimeout(this.#o.connectTimeoutMs, () => {
      if (conn.state === 'connecting') socket.destroy(new Error(`no connection within ${this.#o.connectTimeoutMs} ms`));
    });
    socket.once(tls === undefined ? 'connect' : 'secureConnect', () => {
      if (conn.state !== 'connecting') return;
      conn.state = 'open';
      socket.setTimeout(0);
      // A collector that vanished without a word is noticed by keepalive probes.
      socket.setKeepAlive(true, 30_000);
      this.#o.log?.info(`Forwarding the ledger to syslog ${this.targetText} from entry ${this.#next.seq}`);
      this.#failing = false;
      this.#startConfirmTimer();
      void this.#pump(conn);
    });
    // Collectors send nothing; reading keeps a reset from going unnoticed.
    socket.on('data', () => undefined);
    socket.on('end', () => this.#onPeerEnd(conn));
    socket.on('error', (error) => {
      conn.error ??= error;
    });
    socket.on('close', () => this.#onClose(conn));
  }

  /** The collector closed its side (FIN). */
  #onPeerEnd(conn: Connection): void {
    if (conn.state === 'ending') {
      // It read up to our EOF, so it read everything.
      conn.clean = conn.error === undefined;
      conn.socket.destroy();
      return;
    }
    if (conn.state !== 'open') return;
    conn.state = 'peer-closed';
    this.#signal();
    // A FIN (not a reset) means its receive buffer was empty when it closed. Bytes still in
    // flight then would meet a closed socket and draw a reset within a round trip: if none
    // comes, it read every byte written.
    conn.graceTimer = setTimeout(() => {
      conn.clean = conn.error === undefined;
      conn.socket.destroy();
    }, this.#o.peerCloseGraceMs);
    conn.graceTimer.unref();
  }

  #onClose(conn: Connection): void {
    clearTimeout(conn.graceTimer);
    const wasOpen = conn.state !== 'connecting';
    conn.state = 'closed';
    if (this.#conn !== conn) return;
    this.#conn = undefined;
    const confirmedAll = conn.clean && conn.error === undefined;
    const settledBefore = confirmedAll ? Infinity : Date.now() - this.#o.settleMs;
    this.#confirm(conn, settledBefore);
    // Resend from the first entry not known delivered.
    const first = conn.sent[0];
    if (first !== undefined) {
      this.#next = { seq: first.seq, segment: first.segment, offset: first.offset };
      conn.sent.length = 0;
    }
    this.#signal();
    if (this.#draining) return;
    if (wasOpen && confirmedAll) {
      this.#backoffMs = this.#o.minBackoffMs;
      this.#o.log?.warn(`The syslog collector ${this.targetText} closed the connection; reconnecting`);
    } else if (!this.#failing) {
      const why = conn.error?.message ?? 'the connection closed';
      this.#o.log?.warn(
        `Cannot forward the ledger to syslog ${this.targetText}: ${why}; retrying, entries wait in the ledger from ${this.#next.seq}`,
      );
    }
    this.#failing = !confirmedAll;
    const delay = this.#backoffMs;
    this.#backoffMs = Math.min(this.#o.maxBackoffMs, this.#backoffMs * 2);
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = undefined;
      this.#connect();
    }, delay);
    this.#reconnectTimer.unref();
  }

  /** Marks as delivered the leading entries flushed at or before `flushedBefore`. */
  #confirm(conn: Connection, flushedBefore: number): void {
    let count = 0;
    for (const sent of conn.sent) {
      if (sent.flushedAt === undefined || sent.flushedAt > flushedBefore) break;
      count += 1;
    }
    if (count === 0) return;
    const last = conn.sent[count - 1];
    conn.sent.splice(0, count);
    if (last !== undefined && last.seq > this.#delivered.seq) {
      this.#delivered = { seq: last.seq, segment: last.segment, end: last.end };
      this.#persist();
    }
  }

  #startConfirmTimer(): void {
    if (this.#confirmTimer !== undefined) return;
    this.#confirmTimer = setInterval(
      () => {
        const conn = this.#conn;
        if (conn?.state !== 'open') return;
        const before = this.#delivered.seq;
        this.#confirm(conn, Date.now() - this.#o.settleMs);
        // A connection that delivers is healthy: the next failure starts a fresh backoff.
        if (this.#delivered.seq > before) this.#backoffMs = this.#o.minBackoffMs;
      },
      Math.max(50, Math.floor(this.#o.settleMs / 4)),
    );
    this.#confirmTimer.unref();
  }

  /** Writes entries to `conn` while it is open. */
  async #pump(conn: Connection): Promise<void> {
    while (conn.state === 'open') {
      let batch: Item[];
      try {
        batch = await this.#nextBatch();
      } catch (error) {
        this.#o.log?.warn(`Cannot read the ledger for syslog forwarding: ${(error as Error).message}`);
        await this.#waitUntil(() => conn.state !== 'open', Date.now() + 1000);
        continue;
      }
      if (conn.state !== 'open') return;
      if (batch.length === 0) {
        await this.#waitUntil(() => conn.state !== 'open' || this.#next.seq <= this.#highWater, Infinity);
        continue;
      }
      const sent = batch.map((item): Sent => ({ seq: item.seq, segment: item.segment, offset: item.offset, end: item.end, flushedAt: undefined }));
      conn.sent.push(...sent);
      const last = batch[batch.length - 1] ?? { seq: this.#next.seq - 1, segment: this.#next.segment, end: this.#next.offset };
      this.#next = { seq: last.seq + 1, segment: last.segment, offset: last.end };
      const bytes = Buffer.concat(batch.map((item) => frameOctetCounted(formatSyslogMessage(item, this.#header))));
      const flowing = conn.socket.write(bytes, (error) => {
        if (error !== undefined && error !== null) return;
        const now = Date.now();
        for (const one of sent) one.flushedAt = now;
        this.#signal();
      });
      if (!flowing) {
        await new Promise<void>((resolve) => {
          const done = (): void => {
            conn.socket.off('drain', done);
            conn.socket.off('close', done);
            resolve();
          };
          conn.socket.on('drain', done);
          conn.socket.on('close', done);
        });
      }
    }
  }

  /** The next entries to send: from memory when it holds the next one, else from the ledger file. */
  async #nextBatch(): Promise<Item[]> {
    let drop = 0;
    while (drop < this.#memory.length && (this.#memory[drop]?.seq ?? 0) < this.#next.seq) drop += 1;
    if (drop > 0) this.#takeMemory(drop);
    if (this.#memory[0]?.seq === this.#next.seq) {
      let count = 0;
      let bytes = 0;
      for (const item of this.#memory) {
        if (count > 0 && bytes + item.line.length > BATCH_BYTES) break;
        bytes += item.line.length;
        count += 1;
      }
      return this.#takeMemory(count);
    }
    if (this.#next.seq > this.#highWater) {
      // Caught up with the ledger: new entries may be kept in memory again.
      this.#spilled = false;
      return [];
    }
    return this.#readFromLedger();
  }

  #takeMemory(count: number): Item[] {
    const taken = this.#memory.splice(0, count);
    for (const item of taken) this.#memoryBytes -= Buffer.byteLength(item.line) + 1;
    return taken;
  }

  async #readFromLedger(): Promise<Item[]> {
    // Across segments (ledger-segments.ts): the position hint saves reading a segment from its start.
    const scan = await readLedgerRange(this.#o.ledgerPath, {
      minSeq: this.#next.seq,
      maxSeq: this.#highWater,
      maxBytes: BATCH_BYTES,
      hint: { segment: this.#next.segment, offset: this.#next.offset },
    });
    const items: Item[] = scan.items.map((item) => ({ seq: item.seq, time: item.time, line: item.line, segment: item.segment.name, offset: item.offset, end: item.end }));
    const found = items[0];
    if (found === undefined) {
      // Nothing from next.seq up to the high-water mark: the ledger skipped those numbers (a
      // failed write uses up its seq). There is nothing to send for them.
      this.#noteGap(this.#next.seq, this.#highWater + 1);
      this.#next = { seq: this.#highWater + 1, segment: scan.end.segment, offset: scan.end.offset };
      return [];
    }
    // A gap: failed writes used up numbers, or retention dropped entries before they were sent
    // (their segment-dropped entry, which is sent, says which).
    if (found.seq > this.#next.seq) this.#noteGap(this.#next.seq, found.seq);
    return items;
  }

  #noteGap(from: number, to: number): void {
    if (this.#warnedGap) return;
    this.#warnedGap = true;
    this.#o.log?.warn(
      `The ledger has no entries ${from} to ${to - 1} (failed writes use up their numbers; retention drops old segments); forwarding goes on from ${to}`,
    );
  }

  #loadState(): { seq: number; segment: string | undefined; end: number } {
    let text: string;
    try {
      text = readFileSync(this.#o.statePath, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
        this.#o.log?.warn(`Cannot read ${this.#o.statePath}: ${(error as Error).message}; forwarding the whole ledger`);
      }
      return { seq: 0, segment: undefined, end: 0 };
    }
    try {
      const state = JSON.parse(text) as { seq?: unknown; offset?: unknown; segment?: unknown };
      if (Number.isSafeInteger(state.seq) && Number.isSafeInteger(state.offset)) {
        // Older states have no segment: their offset is in the single `ledger` file.
        const segment = typeof state.segment === 'string' ? state.segment : basename(this.#o.ledgerPath);
        return { seq: Math.max(0, state.seq as number), segment, end: Math.max(0, state.offset as number) };
      }
    } catch {
      // Reported below.
    }
    // Sending again is better than losing: at-least-once.
    this.#o.log?.warn(`${this.#o.statePath} is not a forwarding state; forwarding the whole ledger`);
    return { seq: 0, segment: undefined, end: 0 };
  }

  /** Saves the delivered seq (temp file, fsync, rename); writes are serialised and coalesced. */
  #persist(): void {
    if (this.#persisting !== undefined) {
      this.#persistAgain = true;
      return;
    }
    this.#persisting = (async () => {
      do {
        this.#persistAgain = false;
        const state = { seq: this.#delivered.seq, segment: this.#delivered.segment ?? null, offset: this.#delivered.end, target: this.targetText };
        try {
          // No directory flush: a rename lost in a crash brings back an older seq, and older means sending again (at-least-once).
          await writeFileDurably(this.#o.statePath, `${JSON.stringify(state)}\n`, { syncDirectory: false });
        } catch (error) {
          this.#o.log?.warn(`Cannot save the syslog forwarding state: ${(error as Error).message}`);
        }
      } while (this.#persistAgain);
      this.#persisting = undefined;
    })();
  }

  #signal(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
  }

  /** Resolves once `condition()` holds (re-checked on every state change) or at `deadline`. */
  async #waitUntil(condition: () => boolean, deadline: number): Promise<void> {
    while (!condition()) {
      const left = deadline - Date.now();
      if (left <= 0) return;
      await new Promise<void>((resolve) => {
        const timer = Number.isFinite(left) ? setTimeout(resolve, left) : undefined;
        timer?.unref();
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }
}

/** `tls.connect` options; `allowHalfOpen` is honoured by Node but missing from its types. */
function tlsOptions(host: string, port: number, tls: { readonly ca?: string | Buffer }): ConnectionOptions {
  const options: ConnectionOptions & { allowHalfOpen: boolean } = {
    host,
    port,
    allowHalfOpen: true,
    ...(tls.ca === undefined ? {} : { ca: tls.ca }),
    // RFC 6066: SNI carries host names only.
    ...(isIP(host) === 0 ? { servername: host } : {}),
  };
  return options;
}

function fileSize(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}
