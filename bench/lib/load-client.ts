/**
 * The load generator, run as its own process (`node dist/bench/lib/load-client.js CONFIG`)
 * so it never shares an event loop with what it measures. One new TCP connection per query,
 * as real IDENT clients do (RFC 1413 servers mostly see one query per connection): connect,
 * write the line, read one reply line, close. Prints one JSON line (LoadResult) on stdout.
 *
 * Closed loop (`concurrency` workers, each starting its next query when the last one ended)
 * measures capacity; open loop (`ratePerSec`, queries started on a fixed schedule whatever
 * happens) is a steady background rate for the system-impact table.
 */
import { connect } from 'node:net';
import { randomInt } from 'node:crypto';
import { summarize, type Summary } from './stats.js';

/** What to send, where, and how long. */
export interface LoadConfig {
  readonly host: string;
  readonly port: number;
  /** Source address of the queries: the daemon asks about connections to this address. */
  readonly localAddress?: string;
  /** Request line without CRLF; each `{sid}` becomes a fresh random SID (recursive types). */
  readonly line: string;
  /** Regular expression a successful reply line matches. */
  readonly expect: string;
  readonly mode: 'closed' | 'open';
  readonly concurrency?: number;
  /** Closed loop: stop after this long, or after `count` queries. */
  readonly durationMs?: number;
  readonly count?: number;
  /** Open loop: queries started per second, for `durationMs`. */
  readonly ratePerSec?: number;
  /** Queries before measuring (not counted), closed loop only. */
  readonly warmup?: number;
  readonly timeoutMs?: number;
}

/** What the load generator prints. */
export interface LoadResult {
  readonly ok: number;
  readonly failed: number;
  readonly elapsedMs: number;
  /** Successful queries per second of elapsed time. */
  readonly perSecond: number;
  /** Latency of successful queries, connect to reply line, in milliseconds. */
  readonly latency: Summary;
  /** Up to five failure descriptions. */
  readonly failures: readonly string[];
}

interface Outcome {
  readonly ok: boolean;
  readonly ms: number;
  readonly detail?: string;
}

function query(config: LoadConfig): Promise<Outcome> {
  const line = config.line.replaceAll('{sid}', () => String(randomInt(1, 2 ** 32 - 1)));
  const expect = new RegExp(config.expect);
  const started = process.hrtime.bigint();
  const elapsed = (): number => Number(process.hrtime.bigint() - started) / 1e6;
  return new Promise((resolve) => {
    let data = '';
    let settled = false;
    const socket = connect({
      host: config.host,
      port: config.port,
      ...(config.localAddress === undefined ? {} : { localAddress: config.localAddress }),
    });
    const finish = (outcome: Outcome): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(outcome);
    };
    const timer = setTimeout(() => finish({ ok: false, ms: elapsed(), detail: `timeout; got ${JSON.stringify(data)}` }), config.timeoutMs ?? 10_000);
    socket.setNoDelay(true);
    socket.setEncoding('latin1');
    socket.on('connect', () => socket.write(`${line}\r\n`));
    socket.on('data', (chunk: string) => {
      data += chunk;
      const end = data.indexOf('\n');
      if (end < 0) return;
      const reply = data.slice(0, end).replace(/\r$/, '');
      const ms = elapsed();
      finish(expect.test(reply) ? { ok: true, ms } : { ok: false, ms, detail: `unexpected reply ${JSON.stringify(reply)}` });
    });
    socket.on('end', () => finish({ ok: false, ms: elapsed(), detail: `closed without a reply; got ${JSON.stringify(data)}` }));
    socket.on('error', (error: NodeJS.ErrnoException) => finish({ ok: false, ms: elapsed(), detail: error.code ?? error.message }));
  });
}

async function runClosed(config: LoadConfig): Promise<{ outcomes: Outcome[]; elapsedMs: number }> {
  for (let i = 0; i < (config.warmup ?? 0); i += 1) await query(config);
  const outcomes: Outcome[] = [];
  const concurrency = config.concurrency ?? 1;
  const started = performance.now();
  const deadline = config.durationMs === undefined ? Number.POSITIVE_INFINITY : started + config.durationMs;
  const limit = config.count ?? Number.POSITIVE_INFINITY;
  let issued = 0;
  const worker = async (): Promise<void> => {
    while (issued < limit && performance.now() < deadline && !stopping) {
      issued += 1;
      outcomes.push(await query(config));
    }
  };
  await Promise.all(Array.from({ length: concurrency }, () => worker()));
  return { outcomes, elapsedMs: performance.now() - started };
}

/** Set by SIGTERM: stop starting queries, finish those in flight, report. */
let stopping = false;
let wakeUp: (() => void) | undefined;
process.on('SIGTERM', () => {
  stopping = true;
  wakeUp?.();
});

async function runOpen(config: LoadConfig): Promise<{ outcomes: Outcome[]; elapsedMs: number }> {
  const rate = config.ratePerSec ?? 1;
  const duration = config.durationMs ?? 1000;
  const total = Math.max(1, Math.round((rate * duration) / 1000));
  const outcomes: Promise<Outcome>[] = [];
  const started = performance.now();
  for (let i = 0; i < total && !stopping; i += 1) {
    // Absolute schedule: a late timer does not push every later query back.
    const due = started + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, wait);
        wakeUp = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    if (stopping) break;
    outcomes.push(query(config));
  }
  const settled = await Promise.all(outcomes);
  return { outcomes: settled, elapsedMs: performance.now() - started };
}

async function main(): Promise<void> {
  const config = JSON.parse(process.argv[2] ?? '{}') as LoadConfig;
  const { outcomes, elapsedMs } = config.mode === 'open' ? await runOpen(config) : await runClosed(config);
  const ok = outcomes.filter((outcome) => outcome.ok);
  const failures = outcomes.filter((outcome) => !outcome.ok).map((outcome) => outcome.detail ?? 'failed');
  const result: LoadResult = {
    ok: ok.length,
    failed: failures.length,
    elapsedMs,
    perSecond: (ok.length * 1000) / elapsedMs,
    latency: summarize(ok.map((outcome) => outcome.ms)),
    failures: [...new Set(failures)].slice(0, 5),
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`load-client: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
