/**
 * Issue 14: how long an SV_REC takes when answered from history, against the same request about
 * the same kind of connection while it is still open (answered live), side by side in one run
 * against one daemon. Each sample is a fresh connection from a process of `nobody` to a
 * loopback listener, in a session of its own: "live" asks while the process holds it; "history" asks after the process
 * closed it and exited and the journal has its close. The two kinds alternate, so load drifts
 * hit both alike. Time is from the request's connect to its reply line, as a requester sees it.
 */
import { execFile, spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { once } from 'node:events';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { exchange, startDaemon, STOPCTL } from '../../test/support/daemon.js';
import { readFirstLine } from '../../test/support/peers.js';
import { LIFT_REQUESTER_LIMITS } from '../lib/processes.js';
import { repeated, summarize, type Repeated, type Summary } from '../lib/stats.js';

const run = promisify(execFile);
const TOKEN = /^\d+,\d+:USERID:OTHER:[0-9a-f]{64}$/;

/** What the section measured. */
export interface HistoryAnswerResult {
  readonly skipped?: string;
  readonly samples: number;
  /** Processes on the machine at the start (a live SV's cost grows with them; one from history reads none). */
  readonly machineProcesses?: number;
  /** Milliseconds per request. */
  readonly live?: Summary;
  readonly history?: Summary;
  /** history ÷ live, median of each. */
  readonly ratio?: number;
  /** history ÷ live per pair of neighbouring samples, to show the spread. */
  readonly pairRatios?: Repeated;
}

interface Row {
  readonly local: { readonly port: number };
  readonly capturedAt: string | null;
  readonly closedAt: string | null;
}

/** Polls the journal (bounded) until it holds local port `port` with a row that passes `ready`. */
async function waitForRow(storeDir: string, port: number, ready: (row: Row) => boolean): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const { stdout } = await run(process.execPath, [STOPCTL, 'history', '--store', storeDir, '--port', String(port), '--json']);
    if ((JSON.parse(stdout) as Row[]).some((row) => row.local.port === port && ready(row))) return;
    if (Date.now() > deadline) throw new Error(`the history journal never showed local port ${port}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * A client (or listener) process of nobody in a session of its own, sharing no pipe with this
 * process once it has said its port: a live closure then finds the client and the listener
 * (host-local TCP), as an ssh client and a server, not this process and the daemon, which the
 * pipes of a plain child (or a listener in this process) would link to it.
 */
async function spawnLone(role: 'client' | 'listener', port = 0): Promise<{ localPort: number; stop(): Promise<void> }> {
  const open =
    role === 'client'
      ? [`s = socket.create_connection(('127.0.0.1', ${port}))`]
      : [
          "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(64); held = []",
          'threading.Thread(target=lambda: [held.append(s.accept()[0]) for _ in iter(int, 1)], daemon=True).start()',
        ];
  const script = [
    'import os, signal, socket, threading',
    ...open,
    'print(s.getsockname()[1], flush=True)',
    'os.close(1)',
    'signal.signal(signal.SIGTERM, lambda *_: os._exit(0))',
    'signal.pause()',
  ].join('\n');
  const child = spawn('/usr/bin/python3', ['-c', script], { stdio: ['ignore', 'pipe', 'ignore'], detached: true, uid: 65534, gid: 65534 });
  const localPort = Number(await readFirstLine(child, { what: `${role} process`, timeoutMs: 5000 }));
  return {
    localPort,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** Measures `samples` SV_REC requests answered live and as many answered from history. */
export async function benchHistoryAnswer(options: { samples: number }): Promise<HistoryAnswerResult> {
  if (process.getuid?.() !== 0) return { skipped: 'needs root: loads the eBPF recorder', samples: 0 };
  // Forty SV_REC requests from one address in a few seconds: past the default per-requester
  // rate limit, which would answer some of them UNKNOWN-ERROR (issue 13).
  const daemon = await startDaemon([...LIFT_REQUESTER_LIMITS]);
  const service = await spawnLone('listener');
  const servicePort = service.localPort;
  try {
    if (!daemon.stderr().includes('History is on')) {
      return { skipped: `history is off on this machine: ${daemon.stderr().trim().split('\n').find((l) => l.includes('History is')) ?? ''}`, samples: 0 };
    }
    const live: number[] = [];
    const history: number[] = [];
    const ask = async (port: number, sid: number): Promise<number> => {
      const started = performance.now();
      const { lines } = await exchange(daemon, `${port},${servicePort}:SV_REC:${sid}\r\n`, { timeoutMs: 15_000 });
      const elapsed = performance.now() - started;
      if (!TOKEN.test(lines[0] ?? '')) throw new Error(`expected a token, got ${lines[0]}`);
      return elapsed;
    };
    for (let i = 0; i < options.samples; i++) {
      // Both kinds wait for the capture first: the history one needs it, and the live one
      // should not race the capture's /proc reads on the analysis thread.
      const open = await spawnLone('client', servicePort);
      const closed = await spawnLone('client', servicePort);
      await waitForRow(daemon.storeDir, open.localPort, (row) => row.capturedAt !== null);
      await waitForRow(daemon.storeDir, closed.localPort, (row) => row.capturedAt !== null);
      await closed.stop();
      await waitForRow(daemon.storeDir, closed.localPort, (row) => row.closedAt !== null);
      // Alternate which kind goes first.
      if (i % 2 === 0) {
        live.push(await ask(open.localPort, 2 * i + 1));
        history.push(await ask(closed.localPort, 2 * i + 2));
      } else {
        history.push(await ask(closed.localPort, 2 * i + 2));
        live.push(await ask(open.localPort, 2 * i + 1));
      }
      await open.stop();
    }
    const liveSummary = summarize(live);
    const historySummary = summarize(history);
    return {
      samples: options.samples,
      machineProcesses: readdirSync('/proc').filter((name) => /^\d+$/.test(name)).length,
      live: liveSummary,
      history: historySummary,
      ratio: historySummary.p50 / liveSummary.p50,
      pairRatios: repeated(history.map((ms, index) => ms / (live[index] ?? Number.NaN))),
    };
  } finally {
    await service.stop();
    await daemon.stop();
  }
}
