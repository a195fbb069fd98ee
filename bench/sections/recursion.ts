/**
 * Item 6 of issue 6: a 4-host chain of test hosts (network + PID namespaces, each running
 * stopd on port 113, test/support/testnet.ts) with a user's login hopping h1 -> h2 -> h3 -> h4
 * (test/support/chain.ts). h4 sends SV_REC to h3 about the connection from h3; h3 replies,
 * then asks h2, which asks h1. Measured: from the moment h4 writes the request until h2's
 * ledger holds h1's token (the last upstream token of the chain), per run, with fresh SIDs.
 *
 * Times come from one clock: the requester runs on this machine inside h4 and reports when it
 * wrote the request; the ledger's `time` (set when the entry is appended, millisecond
 * resolution) says when each upstream answer arrived.
 */
import { randomInt } from 'node:crypto';
import { hopThrough, SHELL_PORT, shellConnectionPort, startShellService } from '../../test/support/chain.js';
import { createTestNet, readLedger, type TestHost, type TestNet, type TestStopd } from '../../test/support/testnet.js';
import { repeated, type Repeated } from '../lib/stats.js';
import { LIFT_REQUESTER_LIMITS } from '../lib/processes.js';

export interface RecursionResult {
  readonly skipped?: string;
  readonly runs: number;
  /** Request written on h4 -> h1's token in h2's ledger (ms). */
  readonly chainMs?: Repeated;
  /** Request written -> h3's reply read on h4 (ms): the first hop's own SV_REC. */
  readonly firstReplyMs?: Repeated;
  /** Per asking host: request written -> that host's upstream entry (ms). */
  readonly hopsMs?: Record<string, Repeated>;
}

/** Connects from inside the host, writes one line, prints when it wrote and when the reply came. */
const REQUESTER = String.raw`
const net = require('node:net');
const [host, line] = process.argv.slice(1);
const now = () => performance.timeOrigin + performance.now();
let sentAt = 0;
const socket = net.connect({ host, port: 113 }, () => { sentAt = now(); socket.write(line + '\r\n'); });
let data = '';
socket.setEncoding('latin1');
socket.on('data', (chunk) => {
  data += chunk;
  if (data.includes('\n')) { const repliedAt = now(); socket.destroy(); console.log(JSON.stringify({ sentAt, repliedAt, reply: data.trim() })); }
});
socket.on('error', (error) => { console.log(JSON.stringify({ error: error.message })); });
`;

async function waitForUpstream(stopd: TestStopd, sid: string, timeoutMs: number): Promise<Record<string, unknown>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = readLedger(stopd.storeDir).find((entry) => entry.kind === 'upstream' && entry.sid === sid);
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error(`No upstream entry for SID ${sid} in ${stopd.storeDir}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

export async function benchRecursion(options: { runs: number }): Promise<RecursionResult> {
  if (process.getuid?.() !== 0) return { skipped: 'needs root: creates network and PID namespaces', runs: 0 };
  let net: TestNet | undefined;
  try {
    net = await createTestNet({ hosts: [1, 2, 3, 4].map((n) => ({ name: `h${n}`, address: `192.0.2.${60 + n}` })) });
    const hosts = net.hosts.slice();
    const [h1, h2, h3, h4] = hosts as [TestHost, TestHost, TestHost, TestHost];
    const stopd = new Map<string, TestStopd>();
    for (const host of [h1, h2, h3]) stopd.set(host.name, await host.startStopd(LIFT_REQUESTER_LIMITS));
    for (const host of [h2, h3, h4]) await startShellService(host);
    await hopThrough(h1, [h2, h3, h4]);
    const port = await shellConnectionPort(h4, h3.address);

    const chain: number[] = [];
    const first: number[] = [];
    const hops: Record<string, number[]> = { h3: [], h2: [] };
    for (let run = 0; run < options.runs; run += 1) {
      const sid = String(randomInt(1, 2 ** 32 - 1));
      const result = await h4.exec([process.execPath, '-e', REQUESTER, h3.address, `${port},${SHELL_PORT}:SV_REC:${sid}`], { timeoutMs: 30_000 });
      const answer = JSON.parse(result.stdout.trim() || '{}') as { sentAt?: number; repliedAt?: number; reply?: string; error?: string };
      if (answer.sentAt === undefined || answer.repliedAt === undefined || !/:USERID:OTHER:/.test(answer.reply ?? '')) {
        throw new Error(`SV_REC from h4 to h3 failed: ${result.stdout} ${result.stderr}`);
      }
      first.push(answer.repliedAt - answer.sentAt);
      for (const name of ['h3', 'h2'] as const) {
        const entry = await waitForUpstream(stopd.get(name) as TestStopd, sid, 30_000);
        if (entry.outcome !== 'token') throw new Error(`${name} got ${String(entry.outcome)} from upstream: ${JSON.stringify(entry)}`);
        const at = Date.parse(String(entry.time)) - answer.sentAt;
        hops[name]?.push(at);
        if (name === 'h2') chain.push(at);
      }
    }
    return {
      runs: options.runs,
      chainMs: repeated(chain),
      firstReplyMs: repeated(first),
      hopsMs: Object.fromEntries(Object.entries(hops).map(([name, values]) => [name, repeated(values)])),
    };
  } finally {
    await net?.destroy();
  }
}
