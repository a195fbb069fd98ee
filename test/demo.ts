/**
 * `npm run demo`: the paper's scenario (fig. 1, section 3.2) on four real test hosts.
 *
 * A user on H1 logs into H2, from there into H3 and from there into H4, through login-like
 * services (a shell on a terminal behind a TCP listener). H4 then asks H3 who is behind the
 * inbound connection with an SV_REC request. H3 replies a token, saves what it found, and
 * (recursion, DESIGN duty 6) asks H2, which asks H1. Finally the demo shows what an
 * investigator gets on each host: `stopctl redeem` of the local token, then `stopctl trace`,
 * which names the upstream host and the token to take there. Last, the same in one command:
 * `stopctl walk` on H4 reads each host's store over real SSH (sshd on each host, a test key).
 *
 * Needs root (network and PID namespaces); every connection stays between the test hosts.
 * Compiled with the tests to dist/test/demo.js.
 */
import { execFile } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { promisify } from 'node:util';
import { STOPCTL } from './support/daemon.js';
import { createSshKit, HAS_OPENSSH, startSshd } from './support/ssh-hosts.js';
import { cleanupStale, createTestNet, readLedger, startHopChain, type TestHost, type TestNet, type TestStopd } from './support/testnet.js';

const run = promisify(execFile);

/** How long each host may take to record the outcome of its upstream request. */
const UPSTREAM_WAIT_MS = 20_000;
const SESSION_PORT = 2222;

function heading(text: string): void {
  process.stdout.write(`\n=== ${text} ${'='.repeat(Math.max(3, 86 - text.length))}\n`);
}

/** Runs stopctl on the machine (stores are plain directories); returns its output whatever its status. */
async function stopctl(args: readonly string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [STOPCTL, ...args], { maxBuffer: 16 * 1024 * 1024 });
    return { code: 0, stdout, stderr };
  } catch (error: unknown) {
    const failed = error as { code?: unknown; stdout?: string; stderr?: string };
    return { code: typeof failed.code === 'number' ? failed.code : 1, stdout: failed.stdout ?? '', stderr: failed.stderr ?? String(error) };
  }
}

/** The ledger entry (kind 'upstream') a host wrote for `parentToken`, once it is there (bounded). */
async function waitForUpstream(storeDir: string, parentToken: string): Promise<Record<string, unknown>[]> {
  const deadline = Date.now() + UPSTREAM_WAIT_MS;
  for (;;) {
    const entries = readLedger(storeDir).filter((entry) => entry.kind === 'upstream' && entry.parentToken === parentToken);
    if (entries.length > 0 || Date.now() > deadline) return entries;
    await delay(100);
  }
}

/** The upstream candidates an SV record names (the connections recursion will ask about). */
async function upstreamCandidatesOf(storeDir: string, token: string): Promise<unknown[]> {
  const redeemed = await stopctl(['redeem', token, '--store', storeDir, '--json']);
  try {
    const record = JSON.parse(redeemed.stdout) as { upstream?: unknown[] };
    return record.upstream ?? [];
  } catch {
    return [];
  }
}

function describeUpstream(entry: Record<string, unknown>): string {
  const peer = entry.peer as { address?: string; port?: number } | undefined;
  const outcome = String(entry.outcome);
  const detail = outcome === 'token' ? String(entry.token) : `${outcome}: ${JSON.stringify(entry.error ?? entry.reply ?? '')}`;
  return `asked ${peer?.address ?? '?'}:${peer?.port ?? '?'} ${JSON.stringify(entry.request)} -> ${outcome === 'token' ? 'token ' : ''}${detail}`;
}

interface Finding {
  readonly host: TestHost;
  readonly label: string;
  readonly stopd: TestStopd;
  readonly token: string;
}

async function runDemo(): Promise<number> {
  const removed = await cleanupStale();
  if (removed.netnses.length > 0) process.stdout.write(`Removed ${removed.netnses.length} namespaces left by earlier runs.\n`);

  heading('Building hosts H1 .. H4 (network + PID namespaces on one test switch)');
  const net: TestNet = await createTestNet({ hosts: [1, 2, 3, 4].map((n) => ({ name: `h${n}`, address: `203.0.113.${n}` })) });
  const label = (host: TestHost): string => host.name.toUpperCase();
  try {
    const stopds = new Map<TestHost, TestStopd>();
    for (const host of net.hosts) {
      stopds.set(host, await host.startStopd());
      process.stdout.write(`${label(host)}  ${host.address}  stopd on port 113, store ${stopds.get(host)?.storeDir ?? '?'}\n`);
    }

    heading(`The user hops H1 -> H2 -> H3 -> H4 (shells behind socat on port ${SESSION_PORT})`);
    const chain = await startHopChain(net.hosts, { port: SESSION_PORT });
    for (const hop of chain.hops) {
      process.stdout.write(`${label(hop.from)} ${hop.from.address}:${hop.clientPort} -> ${label(hop.to)} ${hop.to.address}:${hop.serverPort}\n`);
    }
    chain.type('echo "the user is now on $(hostname)"');
    for (const deadline = Date.now() + 10_000; !chain.output().includes('the user is now on h4') && Date.now() < deadline; ) await delay(50);
    process.stdout.write(`What the user's terminal on H1 shows:\n${chain.output().replace(/\r/g, '').trimEnd()}\n`);

    const last = chain.hops.at(-1);
    if (last === undefined) throw new Error('The hop chain has no hops');
    const sid = randomInt(1, 2 ** 32);
    heading(`H4 asks H3 about the inbound connection from ${last.from.address}:${last.clientPort} (SV_REC, SID ${sid})`);
    const query = await last.to.exec([process.execPath, STOPCTL, 'query', last.from.address, String(last.clientPort), String(last.serverPort), '--type', 'SV_REC', '--sid', String(sid)]);
    process.stdout.write(`H4$ stopctl query ${last.from.address} ${last.clientPort} ${last.serverPort} --type SV_REC --sid ${sid}\n${query.stdout}${query.stderr}`);
    const reply = query.stdout.trim();
    if (query.code !== 0 || !reply.includes(':USERID:OTHER:')) {
      process.stdout.write('H3 did not answer with a token; stopping here.\n');
      return 1;
    }

    // Follow the chain the way an investigator would: token -> host -> upstream token -> ...
    heading('Following the recursion through the ledgers');
    const findings: Finding[] = [];
    let current: { host: TestHost; token: string } | undefined = { host: last.from, token: reply.slice(reply.lastIndexOf(':') + 1) };
    let complete = true;
    while (current !== undefined) {
      const { host, token } = current;
      const stopd = stopds.get(host);
      if (stopd === undefined) break;
      findings.push({ host, label: label(host), stopd, token });
      current = undefined;
      const candidates = await upstreamCandidatesOf(stopd.storeDir, token);
      if (candidates.length === 0) {
        process.stdout.write(`${label(host)}: the record names no upstream connection: the session started here.\n`);
        break;
      }
      const upstream = await waitForUpstream(stopd.storeDir, token);
      if (upstream.length === 0) {
        complete = false;
        process.stdout.write(
          `${label(host)}: the record names ${candidates.length} upstream connection(s), but no upstream outcome was recorded within ${UPSTREAM_WAIT_MS / 1000} s.\n` +
            '    This stopd does not send recursive requests yet (see `stopd --help`).\n',
        );
        break;
      }
      for (const entry of upstream) process.stdout.write(`${label(host)}: ${describeUpstream(entry)}\n`);
      const next = upstream.find((entry) => entry.outcome === 'token');
      const peer = next?.peer as { address?: string } | undefined;
      const nextHost = net.hosts.find((candidate) => candidate.address === peer?.address);
      if (next !== undefined && nextHost !== undefined && typeof next.token === 'string') current = { host: nextHost, token: next.token };
      else complete = false;
    }

    const hasTrace = (await stopctl(['--help'])).stdout.includes('trace TOKEN');
    for (const finding of findings) {
      heading(`What the investigator sees on ${finding.label} (${finding.host.address})`);
      const redeem = await stopctl(['redeem', finding.token, '--store', finding.stopd.storeDir]);
      process.stdout.write(`${finding.label}# stopctl redeem ${finding.token}\n${redeem.stdout}${redeem.stderr}`);
      if (hasTrace) {
        const trace = await stopctl(['trace', finding.token, '--store', finding.stopd.storeDir]);
        process.stdout.write(`\n${finding.label}# stopctl trace ${finding.token}\n${trace.stdout}${trace.stderr}`);
      } else {
        const entries = readLedger(finding.stopd.storeDir).filter((entry) => entry.kind === 'upstream' && entry.parentToken === finding.token);
        process.stdout.write(`\nUpstream ledger entries for this token:\n${entries.map((entry) => `  ${describeUpstream(entry)}\n`).join('') || '  none\n'}`);
      }
    }

    const start = findings[0];
    if (start !== undefined) {
      heading(`The same in one command: stopctl walk on H4, reaching each host's store over SSH`);
      if (!HAS_OPENSSH) process.stdout.write('Skipped: needs openssh-server and openssh-client (sshd on each host, ssh on H4).\n');
      else {
        // A test host key and user key; sshd on H1..H3 on their addresses, each giving its
        // sessions that host's store (the remote stopctl the walk runs reads it).
        const kit = createSshKit(net.hosts);
        try {
          for (const host of net.hosts.slice(0, -1)) {
            const stopd = stopds.get(host);
            if (stopd !== undefined) await startSshd(host, kit, { storeDir: stopd.storeDir });
          }
          const walkArgs = ['walk', start.host.address, start.token, '--ssh', kit.sshLine, '--remote-stopctl', kit.remoteStopctl];
          const walked = await last.to.exec([process.execPath, STOPCTL, ...walkArgs], { timeoutMs: 180_000 });
          process.stdout.write(`H4# stopctl walk ${start.host.address} ${start.token} --ssh "ssh -i KEY -l root ..."\n${walked.stdout}${walked.stderr}(exit status ${walked.code})\n`);
        } finally {
          kit.remove();
        }
      }
    }

    heading('Summary');
    process.stdout.write(
      complete
        ? `The chain was followed from H4 back to ${findings.at(-1)?.label ?? '?'}: ${findings.map((finding) => finding.label).join(' <- ')}.\n`
        : `The chain was built and H3 answered, but the recursion was not followed to H1 (${findings.map((finding) => finding.label).join(' <- ')}).\n`,
    );
    await chain.close();
    for (const stopd of stopds.values()) await stopd.stop();
    return 0;
  } finally {
    heading('Cleaning up');
    await net.destroy();
    process.stdout.write('All test hosts, links and processes are gone.\n');
  }
}

if (process.getuid?.() !== 0) {
  process.stderr.write('The demo needs root: it builds its four test hosts from network and PID namespaces.\n');
  process.exitCode = 1;
} else {
  runDemo().then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      process.stderr.write(`Demo failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      process.exitCode = 1;
    },
  );
}
