/**
 * Pictures for people (issue 5, part 5), end to end: a real stopd answers SV_REC about P4 of
 * the paper's complex structure (section 3.6, figure 9, built from real processes), asks the
 * previous host (a network namespace with no STOP daemon: refused), and `stopctl redeem
 * --format svg` and `stopctl trace --format svg` draw the record and the chain.
 *
 * "Check the SVG by rendering it": the SVG's node and edge titles must match the record's
 * processes and links one for one, and `rsvg-convert` (Debian librsvg2-bin) must turn it into
 * a PNG that is a real picture: non-trivial size, mostly white paper with ink on it, and the
 * colours that carry meaning (primary processes, the holder of the queried socket) present.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { exchange, STOPCTL, startDaemon, type DaemonHandle } from './support/daemon.js';
import { FIGURE9_LABELS, startFigure9 } from './support/figure9.js';
import { listen } from './support/peers.js';
import { createPreviousHost, type PreviousHost } from './support/previous-host.js';
import { freeFixedPort, waitFor } from './support/structures.js';
import { assertRealPicture, decodeXml, hasRsvg, NEEDS_RSVG, parseSvg, rasterize, shareOf } from './support/picture-checks.js';
import { runRedeem, type SvRedemption } from './support/sv-record.js';

const isRoot = process.getuid?.() === 0;
const NEEDS_ROOT = 'needs root: the previous host is a network namespace, and /proc of every process must be readable';

/** Runs stopctl and returns its exit code and output, never throwing on a non-zero exit. */
function stopctl(args: readonly string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [STOPCTL, ...args], { timeout: 30_000, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : -1, stdout, stderr });
    });
  });
}

describe('stopctl pictures of a real figure 9 record and its trace', { skip: isRoot ? false : NEEDS_ROOT }, () => {
  let daemon: DaemonHandle;
  let previous: PreviousHost;
  let token = '';
  let record: SvRedemption;
  const pids = new Map<string, number>();
  let cleanup: () => Promise<void> = () => Promise.resolve();

  before(async () => {
    daemon = await startDaemon(['--upstream-timeout', '5']);
    previous = await createPreviousHost();
    const ports: [number, number, number] = [await freeFixedPort(), await freeFixedPort(), await freeFixedPort()];
    const next = await listen('127.0.0.2');
    const structure = await startFigure9({ bind: previous.hostAddress, ports, next: { host: '127.0.0.2', port: next.port } });
    cleanup = async () => {
      structure.kill();
      await next.close();
    };
    await previous.connect(ports[0]);
    const ready = await structure.ready();
    for (const [label, pid] of ready.pids) pids.set(label, pid);
    const accepted = await next.nextAccepted(10_000);
    // The daemon asks about (its address, cl_port) with the requester (RFC 1413): request from 127.0.0.2.
    const line = `${accepted.remotePort ?? 0},${next.port}:SV_REC:4242`;
    const { lines } = await exchange(daemon, `${line}\r\n`, { localAddress: '127.0.0.2', timeoutMs: 15_000 });
    const match = /:USERID:OTHER:([0-9a-f]{64})$/.exec(lines[0] ?? '');
    assert.ok(match, `SV_REC reply is a token: ${JSON.stringify(lines)}`);
    token = match[1] ?? '';
    const redeemed = await runRedeem(daemon.storeDir, token);
    assert.equal(redeemed.code, 0, redeemed.stderr);
    record = JSON.parse(redeemed.stdout) as SvRedemption;
    assert.equal(record.type, 'SV_REC');
    // The upstream request goes out after the reply (paper 3.1.3): wait (bounded) for its outcome.
    await waitFor(
      'the upstream outcome in the ledger',
      async () => {
        const { stdout } = await stopctl(['trace', token, '--store', daemon.storeDir, '--json']);
        const view = JSON.parse(stdout) as { upstream: unknown[]; pending: number };
        return view.upstream.length === 1 && view.pending === 0;
      },
      { timeoutMs: 20_000, intervalMs: 100 },
    );
  });
  after(async () => {
    await cleanup();
    await previous.close();
    await daemon.stop();
  });

  test('stopctl redeem --format dot prints the Graphviz source of the record', async () => {
    const { code, stdout, stderr } = await stopctl(['redeem', token, '--store', daemon.storeDir, '--format', 'dot']);
    assert.equal(code, 0, stderr);
    assert.match(stdout, /^digraph stop_record \{\n/);
    assert.ok(stdout.includes(`"p${pids.get('P4')}" -> "next"`));
  });

  test('stopctl redeem --format svg draws a node per process and an edge per link of figure 9', async () => {
    const { code, stdout: svg, stderr } = await stopctl(['redeem', token, '--store', daemon.storeDir, '--format', 'svg']);
    assert.equal(code, 0, stderr);
    assert.equal(stderr, '');
    const { nodes, edges, clusters } = parseSvg(svg);
    const processNodes = record.processes.map((process) => `p${process.pid}`);
    assert.equal(processNodes.length, 13);
    assert.deepEqual([...nodes.keys()].sort(), [...processNodes, 'next', 'upstream0'].sort());
    for (const process of record.processes) {
      assert.equal(nodes.get(`p${process.pid}`)?.[0], `${process.name} [${process.pid}]`, `label of ${process.pid}`);
    }
    const p4 = pids.get('P4') ?? 0;
    const p1 = pids.get('P1') ?? 0;
    const expectedEdges = [
      ...record.links.map((link) => `p${link.from}->p${link.to}`),
      `p${p4}->next`,
      `upstream0->p${p1}`,
    ];
    assert.deepEqual(edges.sort(), expectedEdges.sort());
    // Figure 9's three process groups (P1; P2; P3 and its descendants), and init's.
    const groups = new Set(FIGURE9_LABELS.map((label) => record.processes.find((process) => process.pid === pids.get(label))?.pgid));
    assert.equal(groups.size, 3);
    for (const pgid of groups) assert.ok(clusters.includes(`cluster_${pgid}`), `cluster of process group ${pgid}`);
    assert.deepEqual(nodes.get('upstream0'), ['previous host', `${previous.address}:${record.upstream[0]?.remote.port}`]);
  });

  test('stopctl redeem --format svg renders to a real picture', { skip: hasRsvg ? false : NEEDS_RSVG }, async () => {
    const { code, stdout: svg, stderr } = await stopctl(['redeem', token, '--store', daemon.storeDir, '--format', 'svg']);
    assert.equal(code, 0, stderr);
    const { png, bytes } = await rasterize(svg, 'figure9-record');
    assertRealPicture(png, bytes, { width: 400, height: 300 });
    // The colours that mean something are there: primary processes (P4, P3, init) filled blue,
    // the holder of the queried socket (P4) outlined red.
    assert.ok(shareOf(png, [0xcf, 0xe2, 0xff], 6) > 0.005, 'primary fill is drawn');
    assert.ok(shareOf(png, [0xc6, 0x28, 0x28], 40) > 0.0005, 'the holder is outlined in red');
  });

  test('stopctl trace --format svg draws this host, the requester and the refused previous host', async () => {
    const { code, stdout: svg, stderr } = await stopctl(['trace', token, '--store', daemon.storeDir, '--format', 'svg']);
    assert.equal(code, 0, stderr);
    const { nodes, edges } = parseSvg(svg);
    assert.deepEqual([...nodes.keys()].sort(), ['requester', 'this', 'upstream0']);
    assert.deepEqual(edges.sort(), ['this->requester', 'upstream0->this']);
    assert.deepEqual(nodes.get('this')?.slice(0, 3), ['this host', `token ${token.slice(0, 12)}…`, 'SV_REC SID 4242']);
    const upstream = nodes.get('upstream0') ?? [];
    assert.equal(upstream[0], `upstream host ${previous.address}:113`);
    assert.match(upstream[2] ?? '', /^refused: no STOP daemon$/);
    // Refused is drawn dashed (and red): the edge's path has a dash pattern.
    assert.match(svg, /<g id="edge\d+" class="edge">\n<title>upstream0&#45;&gt;this<\/title>\n<path fill="none" stroke="#c62828" stroke-dasharray="5,2"/);
  });

  test('stopctl trace --format svg renders to a real picture', { skip: hasRsvg ? false : NEEDS_RSVG }, async () => {
    const { code, stdout: svg, stderr } = await stopctl(['trace', token, '--store', daemon.storeDir, '--format', 'svg']);
    assert.equal(code, 0, stderr);
    const { png, bytes } = await rasterize(svg, 'figure9-trace');
    assertRealPicture(png, bytes, { width: 300, height: 80 });
  });

  test('stopctl redeem --format svg of an altered record exits 3 and says so on stderr and in the picture', async () => {
    const copy = mkdtempSync(join(tmpdir(), 'stopd-pictures-store-'));
    try {
      cpSync(daemon.storeDir, copy, { recursive: true });
      const file = join(copy, 'records', `${token}.json`);
      const bytes = readFileSync(file, 'utf8');
      assert.ok(bytes.includes('"python3"'));
      writeFileSync(file, bytes.replace('"python3"', '"pythoN3"'));
      const { code, stdout: svg, stderr } = await stopctl(['redeem', token, '--store', copy, '--format', 'svg']);
      assert.equal(code, 3);
      assert.match(stderr, /^stopctl: INTEGRITY FAILURE: the record's bytes hash to [0-9a-f]{64}, not to the token\n/);
      const title = [...svg.matchAll(/<text [^>]*>([^<]*)<\/text>/g)].map((match) => decodeXml(match[1] ?? ''));
      assert.ok(title.some((line) => line.startsWith("INTEGRITY FAILURE: the record's bytes hash to")), title.slice(0, 5).join(' | '));
      assert.ok(parseSvg(svg).nodes.has(`p${pids.get('P4')}`));
    } finally {
      rmSync(copy, { recursive: true, force: true });
    }
  });

  test('stopctl redeem refuses contradicting --json and --format, and unknown formats', async () => {
    const both = await stopctl(['redeem', token, '--store', daemon.storeDir, '--json', '--format', 'svg']);
    assert.equal(both.code, 64);
    assert.match(both.stderr, /--json contradicts --format svg/);
    const bad = await stopctl(['trace', token, '--store', daemon.storeDir, '--format', 'png']);
    assert.equal(bad.code, 64);
    assert.match(bad.stderr, /--format must be one of text, json, dot, svg, not "png"/);
    const json = await stopctl(['redeem', token, '--store', daemon.storeDir, '--format', 'json']);
    assert.equal(json.code, 0);
    assert.equal((JSON.parse(json.stdout) as { token: string }).token, token);
  });
});
