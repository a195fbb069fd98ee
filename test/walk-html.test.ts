/**
 * The walk's HTML report (issue 16) opened in a real browser: Debian's headless Chromium loads
 * the file with every request sent to a trap proxy on loopback, and the page must make none
 * (only the browser's own background services are heard from); the DOM it
 * builds shows the chain picture and every hop; its screenshot is a real picture; and the
 * report's SVG pictures pass the same rendering checks as `redeem --format svg` (pictures.test.ts).
 * Control runs show the trap catches a page that does load something, and that the report's
 * Content-Security-Policy stops even an image injected into it.
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { renderWalkHtml } from '../src/cli/walk/walk-html.js';
import { buildWalkFigure } from '../src/cli/walk/walk-figures.js';
import type { WalkDocument } from '../src/cli/walk/walk-document.js';
import { assertRealPicture, decodePng, hasRsvg, NEEDS_RSVG, parseSvg, rasterize, shareOf } from './support/picture-checks.js';

const CHROMIUM = '/usr/bin/chromium';
const hasChromium = ((): boolean => {
  try {
    execFileSync(CHROMIUM, ['--version'], { stdio: 'ignore', timeout: 30_000 });
    return true;
  } catch {
    return false;
  }
})();
const NEEDS_CHROMIUM = 'needs Debian chromium (apt-get install chromium) to open the report';
/** An address no test may reach (RFC 5737): only the trap proxy ever sees requests for it. */
const OUTSIDE = 'http://192.0.2.10/pixel.png';

/**
 * Chromium's own background services (time, component updates, accounts), which it contacts
 * whatever page it shows even with --disable-background-networking: not the page's requests.
 */
const BROWSER_SERVICES = /^(?:[a-z0-9-]+\.)*(?:google\.com|googleapis\.com|gvt1\.com|gstatic\.com)$/;

/**
 * A TCP listener posing as the browser's HTTP proxy, its only way out: it notes the host of
 * every request (`GET http://host/...` or `CONNECT host:443`) and closes the connection.
 */
async function startTrap(): Promise<{ server: Server; port: number; requests: () => Promise<string[]> }> {
  const hosts: string[] = [];
  const open = new Set<Promise<void>>();
  const server = createServer((socket: Socket) => {
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    open.add(closed);
    void closed.then(() => open.delete(closed));
    socket.once('data', (data) => {
      const line = data.toString('latin1').split('\r\n')[0] ?? '';
      const target = line.split(' ')[1] ?? '';
      hosts.push(target.startsWith('http://') ? new URL(target).hostname : (target.split(':')[0] ?? target));
      socket.destroy();
    });
    socket.on('error', () => socket.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  assert.ok(address !== null && typeof address === 'object');
  // Called after the browser exited: its sockets are closed, so every request line is in.
  const requests = async (): Promise<string[]> => {
    await Promise.all([...open]);
    return hosts.splice(0);
  };
  return { server, port: address.port, requests };
}

/** The requests that were not the browser's own background traffic. */
function pageRequests(hosts: readonly string[]): string[] {
  return hosts.filter((host) => !BROWSER_SERVICES.test(host));
}

/** Runs headless Chromium on a file with a fresh profile, all traffic through the trap proxy. */
function runChromium(dir: string, file: string, trapPort: number, extra: readonly string[]): Promise<string> {
  const profile = mkdtempSync(join(dir, 'profile-'));
  const args = [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--disable-extensions',
    '--no-first-run',
    '--no-default-browser-check',
    `--user-data-dir=${profile}`,
    `--proxy-server=http://127.0.0.1:${trapPort}`,
    // Even loopback goes to the proxy, so nothing at all escapes uncounted.
    '--proxy-bypass-list=<-loopback>',
    ...extra,
    pathToFileURL(file).href,
  ];
  return new Promise((resolve, reject) => {
    execFile(CHROMIUM, args, { timeout: 120_000, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error !== null) reject(new Error(`chromium failed: ${error.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

describe('the walk HTML report in headless Chromium', { skip: hasChromium ? false : NEEDS_CHROMIUM }, () => {
  let dir = '';
  let doc: WalkDocument;
  let page = '';
  let trap: Awaited<ReturnType<typeof startTrap>>;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'stopd-walk-html-'));
    doc = buildWalkFigure();
    page = await renderWalkHtml(doc);
    writeFileSync(join(dir, 'report.html'), page);
    trap = await startTrap();
  });

  after(async () => {
    await new Promise<void>((resolve) => trap.server.close(() => resolve()));
    rmSync(dir, { recursive: true, force: true });
  });

  test('it loads with no network access and shows the chain picture and every hop', async () => {
    // An image pointing outside is injected into the report: its CSP must stop the request.
    const injected = page.replace('</body>', `<img src="${OUTSIDE}" alt="injected">\n</body>`);
    const file = join(dir, 'injected.html');
    writeFileSync(file, injected);
    await trap.requests();
    const dom = await runChromium(dir, file, trap.port, ['--dump-dom']);
    assert.deepEqual(pageRequests(await trap.requests()), [], 'the page made no request');
    assert.match(dom, /<section id="chain">[\s\S]*?<svg /, 'the chain picture is in the DOM');
    for (const hop of doc.hops) {
      const article = new RegExp(`<article class="hop ok" id="hop-${hop.index + 1}">[\\s\\S]*?${hop.token}[\\s\\S]*?<svg [\\s\\S]*?</article>`);
      assert.match(dom, article, `hop ${hop.index + 1} with its token and process picture`);
    }
    assert.equal(dom.match(/<details>/g)?.length, doc.hops.length, 'raw records behind a click, one per hop');
  });

  test('a control page without the policy does reach the trap (the check can fail)', async () => {
    const file = join(dir, 'control.html');
    writeFileSync(file, `<!DOCTYPE html><html><body><p>control</p><img src="${OUTSIDE}" alt="x"></body></html>`);
    await trap.requests();
    await runChromium(dir, file, trap.port, ['--dump-dom']);
    assert.deepEqual(pageRequests(await trap.requests()), ['192.0.2.10'], 'the image request went to the trap proxy');
  });

  test('its screenshot is a real picture, not a blank page', async () => {
    const shot = join(dir, 'shot.png');
    await runChromium(dir, join(dir, 'report.html'), trap.port, ['--hide-scrollbars', '--window-size=1280,1600', `--screenshot=${shot}`]);
    const bytes = readFileSync(shot);
    const png = decodePng(bytes);
    assertRealPicture(png, bytes.length, { width: 1280, height: 1600 });
    // The verified hops' green (border and chain nodes) is drawn.
    assert.ok(shareOf(png, [0x2e, 0x7d, 0x32], 30) > 0.001, 'verified green is drawn');
    assert.ok(shareOf(png, [0xc8, 0xe6, 0xc9], 6) > 0.001, 'the chain nodes are filled');
  });
});

describe('the walk HTML report pictures', () => {
  test('each SVG has a node per hop or process and an edge per link, like redeem --format svg', async () => {
    const doc = buildWalkFigure();
    const page = await renderWalkHtml(doc);
    const svgs = [...page.matchAll(/<svg [\s\S]*?<\/svg>/g)].map((match) => match[0]);
    assert.equal(svgs.length, 1 + doc.hops.length);
    const chain = parseSvg(svgs[0] ?? '');
    assert.deepEqual([...chain.nodes.keys()].sort(), ['end0', 'hop0', 'hop1']);
    assert.deepEqual(chain.edges.sort(), ['hop0->hop1', 'hop1->end0']);
    assert.equal(chain.nodes.get('hop0')?.[0], `hop 1: ${doc.hops[0]?.host}`);
    doc.hops.forEach((hop, i) => {
      const { nodes, edges } = parseSvg(svgs[i + 1] ?? '');
      const processes = (hop.redeem?.processes ?? []) as { pid: number; name: string }[];
      const links = (hop.redeem?.links ?? []) as { from: number; to: number }[];
      assert.ok(processes.length > 0);
      for (const process of processes) assert.equal(nodes.get(`p${process.pid}`)?.[0], `${process.name} [${process.pid}]`);
      for (const link of links) assert.ok(edges.includes(`p${link.from}->p${link.to}`), `edge ${link.from}->${link.to}`);
    });
  });

  test('each SVG renders to a real picture', { skip: hasRsvg ? false : NEEDS_RSVG }, async () => {
    const page = await renderWalkHtml(buildWalkFigure());
    const svgs = [...page.matchAll(/<svg [\s\S]*?<\/svg>/g)].map((match) => match[0]);
    for (const [i, svg] of svgs.entries()) {
      const { png, bytes } = await rasterize(svg, `walk-${i}`);
      assertRealPicture(png, bytes, i === 0 ? { width: 300, height: 60 } : { width: 300, height: 300 });
    }
  });
});
