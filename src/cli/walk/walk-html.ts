/**
 * `stopctl walk --html FILE`: the walk as one self-contained HTML file an investigator can
 * attach to a ticket. Opening it loads nothing: the style is inline, the pictures are inline
 * SVG (Graphviz via `render-svg.ts`, the same pictures `redeem --format svg` draws), there is
 * no script, and a Content-Security-Policy forbids fetching anything should a viewer try.
 *
 * Every string in the walk document came from the walked hosts (which may be hostile): text
 * goes through `show` (controls and bidirectional overrides made visible) and then HTML
 * escaping; labels in the pictures through the DOT quoting of `format-dot.ts`, which
 * Graphviz then writes as XML text.
 */
import { formatRecordDot, quoteDot } from '../format-dot.js';
import { renderSvg } from '../render-svg.js';
import { show, showEndpoint } from '../show.js';
import { readHopRecord } from './hop-record.js';
import type { WalkCheck, WalkDocument, WalkHop } from './walk-document.js';

/** The policy of the report: nothing may be loaded, run or submitted; inline style only. */
export const WALK_HTML_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'";

/**
 * The walk as a self-contained HTML document (UTF-8 text). Async because the pictures are
 * laid out by Graphviz (WebAssembly, loaded on first use). A hop whose record cannot be drawn
 * says why in place of its picture.
 */
export async function renderWalkHtml(doc: WalkDocument): Promise<string> {
  const chainSvg = inlineSvg(await renderSvg(formatWalkChainDot(doc)));
  const hops: string[] = [];
  for (const hop of doc.hops) hops.push(await renderHop(hop, doc));
  const title = `STOP walk from ${show(doc.start.host)}: ${doc.verdict}`;
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${WALK_HTML_CSP}">
<meta name="referrer" content="no-referrer">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="stopctl walk">
<title>${html(title)}</title>
<style>${STYLE}</style>
</head>
<body>
<header>
<h1>${html(title)}</h1>
${renderSummary(doc)}
</header>
<section id="chain">
<h2>Chain</h2>
<figure class="picture">${chainSvg}<figcaption>Each host reached (green: verified where it lives; red: failed) and how each branch ended.</figcaption></figure>
</section>
<section id="hops">
<h2>Hops</h2>
${hops.join('\n')}
</section>
${renderEnds(doc)}
<footer>Written by stopctl walk (schema version ${doc.version}). Raw documents are as each host printed them, behind each hop's "Raw records".</footer>
</body>
</html>
`;
}

/** The chain as DOT: a node per hop, an edge per upstream link walked, a node per branch end that is not a hop. */
export function formatWalkChainDot(doc: WalkDocument): string {
  const out = ['digraph stop_walk {'];
  out.push(`  graph [label=${quoteDot(`walk from ${doc.start.host}: ${doc.verdict}`)}, labelloc=t, rankdir=LR, pad=0.3, fontname="Helvetica", fontsize=12];`);
  out.push('  node [shape=box, style="rounded,filled", fillcolor="#ffffff", margin="0.2,0.08", fontname="Helvetica", fontsize=10];');
  out.push('  edge [fontname="Helvetica", fontsize=9];');
  if (doc.hops.length === 0) out.push(`  "start" [label=${dotLines([doc.start.host, 'not reached'])}, fillcolor="#ffcdd2", color="#c62828"];`);
  for (const hop of doc.hops) {
    const lines = [`hop ${hop.index + 1}: ${hop.host}`, `token ${shortToken(hop.token)}`, hop.verified ? 'verified' : 'FAILED verification'];
    const user = hop.summary?.user;
    if (user !== undefined && user !== null) lines.splice(2, 0, `user ${user}`);
    const colours = hop.verified ? 'fillcolor="#c8e6c9", color="#2e7d32"' : 'fillcolor="#ffcdd2", color="#c62828", penwidth=2';
    out.push(`  "hop${hop.index}" [label=${dotLines(lines)}, ${colours}];`);
    if (hop.parent !== null) {
      const via = hop.via === null ? '' : `${hop.via.connection.remote.address}:${hop.via.connection.remote.port} -> :${hop.via.connection.local.port}`;
      out.push(`  "hop${hop.parent}" -> "hop${hop.index}" [label=${quoteDot(via)}];`);
    }
  }
  doc.ends.forEach((end, i) => {
    if (end.reason === 'origin' || end.hop === null) return;
    const lines = [end.reason, end.host, ...(end.token === null ? [] : [`token ${shortToken(end.token)}`])];
    out.push(`  "end${i}" [label=${dotLines(lines)}, shape=note, fillcolor="#fff8e1", color="#b26a00"];`);
    out.push(`  "hop${end.hop}" -> "end${i}" [style=dashed, color="#b26a00"];`);
  });
  out.push('}');
  return out.join('\n') + '\n';
}

async function renderHop(hop: WalkHop, doc: WalkDocument): Promise<string> {
  const parent = hop.parent === null ? undefined : doc.hops[hop.parent];
  const rows: [string, string][] = [
    ['Host', show(hop.host)],
    ['Token', show(hop.token)],
    ['Reached', `${parent === undefined ? 'start of the walk' : `upstream of hop ${parent.index + 1} (${show(parent.host)})`}, via ${show(hop.access)}, depth ${hop.depth}`],
  ];
  const summary = hop.summary;
  if (summary !== null) {
    if (summary.time !== null) rows.push(['Issued', `${show(summary.time)}${summary.type === null ? '' : `, ${show(summary.type)}`}${summary.sid === null ? '' : ` SID ${show(summary.sid)}`}`]);
    if (summary.hostname !== null) rows.push(['Host name', show(summary.hostname)]);
    if (summary.connection !== null) rows.push(['Connection', `${showEndpoint(summary.connection.local)} → ${showEndpoint(summary.connection.remote)}`]);
    if (summary.communityId !== undefined) rows.push(['Community ID', show(summary.communityId)]);
    if (summary.uid !== null) rows.push(['User', `${summary.user === null ? '(no passwd entry)' : show(summary.user)} (uid ${summary.uid})`]);
    for (const p of summary.keyProcesses) {
      rows.push(['Process', `${p.pid} ${show(p.name)} (${show(p.user ?? (p.uid === null ? '?' : `uid ${p.uid}`))}${p.role === null ? '' : `, ${show(p.role)}`})${p.cmdline === null ? '' : ` ${show(p.cmdline)}`}`]);
    }
  }
  const picture = await renderHopPicture(hop);
  const verdict = hop.verified ? 'verified' : 'FAILED verification: its evidence is not trusted for the story';
  return `<article class="hop ${hop.verified ? 'ok' : 'failed'}" id="hop-${hop.index + 1}">
<h3>Hop ${hop.index + 1}: ${html(show(hop.host))} <span class="verdict">${html(verdict)}</span></h3>
<table class="facts">${rows.map(([name, value]) => `<tr><th>${html(name)}</th><td>${html(value)}</td></tr>`).join('')}</table>
<table class="checks"><tr><th>Check</th><th>Result</th><th>Detail</th></tr>${Object.entries(hop.checks)
    .map(([name, check]: [string, WalkCheck]) => `<tr class="${checkClass(check)}"><td>${html(name)}</td><td>${checkMark(check)}</td><td>${html(show(check.detail))}</td></tr>`)
    .join('')}</table>
${picture}
<details><summary>Raw records (as ${html(show(hop.host))} printed them)</summary>
<h4>stopctl redeem --json</h4><pre>${rawJson(hop.redeem)}</pre>
<h4>stopctl trace --json (upstream)</h4><pre>${rawJson(hop.upstream)}</pre>
<h4>stopctl verify --json</h4><pre>${rawJson(hop.verify)}</pre>
</details>
</article>`;
}

async function renderHopPicture(hop: WalkHop): Promise<string> {
  const read = readHopRecord(hop);
  if (!read.ok) return `<p class="note">No process picture: ${html(read.reason)}.</p>`;
  const problems = hop.verified ? [] : ['this hop failed verification'];
  const svg = await renderSvg(formatRecordDot(hop.token, read.record, { problems }));
  return `<figure class="picture">${inlineSvg(svg)}<figcaption>The processes and IPC behind the connection on ${html(show(hop.host))} (as redeem --format svg draws them).</figcaption></figure>`;
}

function renderSummary(doc: WalkDocument): string {
  const rows: [string, string][] = [
    ['Verdict', describeVerdict(doc)],
    ['Chain', doc.hops.length === 0 ? `${show(doc.start.host)} (not reached)` : doc.hops.map((hop) => `${show(hop.host)}${hop.verified ? '' : ' (FAILED)'}`).join(' → ')],
    ['Started', `${show(doc.startedAt)} from ${show(doc.start.host)}, token ${show(doc.start.token)}`],
    ['Finished', show(doc.finishedAt)],
    ['Limits', `at most ${doc.limits.maxHops} hops, ${doc.limits.maxHosts} hosts`],
  ];
  const ask = doc.start.ask;
  if (ask !== undefined) rows.splice(2, 0, ['Asked', `${showEndpoint(ask.target)} "${show(ask.request)}", reply "${show(ask.reply)}"`]);
  return `<table class="facts summary ${doc.verdict}">${rows.map(([name, value]) => `<tr><th>${html(name)}</th><td>${html(value)}</td></tr>`).join('')}</table>`;
}

function renderEnds(doc: WalkDocument): string {
  const rows = doc.ends.map(
    (end) =>
      `<tr><td>${html(end.reason)}</td><td>${end.hop === null ? '' : `hop ${end.hop + 1}`}</td><td>${html(show(end.host))}</td><td>${end.token === null ? '' : html(show(end.token))}</td><td>${html(show(end.message))}</td></tr>`,
  );
  return `<section id="ends">
<h2>How each branch ended</h2>
<table class="ends"><tr><th>Reason</th><th>At</th><th>Host</th><th>Token to take on</th><th>Detail</th></tr>${rows.join('')}</table>
</section>`;
}

function describeVerdict(doc: WalkDocument): string {
  const failed = doc.hops.filter((hop) => !hop.verified).length;
  if (doc.verdict === 'verified') return `verified: all ${doc.hops.length} hops verified where they live`;
  if (doc.verdict === 'failed') return `FAILED: ${failed} hop${failed === 1 ? '' : 's'} failed verification`;
  return `incomplete${doc.interrupted ? ': interrupted' : ': some branch ended before its origin'}`;
}

function checkClass(check: WalkCheck): string {
  return check.ok === true ? 'ok' : check.ok === false ? 'failed' : 'na';
}

function checkMark(check: WalkCheck): string {
  return check.ok === true ? 'ok' : check.ok === false ? 'FAILED' : 'n/a';
}

/**
 * An SVG document from Graphviz made fit to sit inside HTML: without its XML declaration,
 * doctype and comments (Graphviz writes the graph's name in one).
 */
function inlineSvg(svg: string): string {
  const start = svg.indexOf('<svg');
  if (start < 0) throw new Error('Cannot embed picture: Graphviz gave no <svg> element');
  return svg.slice(start).replace(/<!--[\s\S]*?-->/g, '').trim();
}

/** JSON as each host printed it, indented, with what could reorder or hide text made visible. */
function rawJson(value: unknown): string {
  const visible = JSON.stringify(value, null, 2).replace(/[\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/gu, (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`);
  return html(visible);
}

/** Text as HTML character data or a double- or single-quoted attribute value. */
export function html(text: string): string {
  return text.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`);
}

/** Lines as one DOT label: each line quoted by {@link quoteDot} (host text cannot break a line), joined by DOT's newline. */
function dotLines(lines: readonly string[]): string {
  return `"${lines.map((line) => quoteDot(line).slice(1, -1)).join('\\n')}"`;
}

function shortToken(token: string): string {
  return token.length > 16 ? `${token.slice(0, 12)}…` : token;
}

const STYLE = `
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1b1b1b; background: #ffffff; margin: 2em auto; max-width: 72em; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; } h3 { margin: 0 0 .5em; }
table { border-collapse: collapse; margin: .5em 0; } th, td { text-align: left; vertical-align: top; padding: .2em .6em; border-bottom: 1px solid #eee; }
.facts th { width: 9em; color: #555; font-weight: 600; }
td { word-break: break-all; }
.summary.verified th:first-child + td, .ok .verdict { color: #2e7d32; }
.summary.failed, .failed .verdict, tr.failed td { color: #c62828; }
.hop { border: 1px solid #ccc; border-left: 6px solid #2e7d32; border-radius: 4px; padding: 1em; margin: 1em 0; }
.hop.failed { border-left-color: #c62828; }
.verdict { font-size: .8em; font-weight: normal; margin-left: 1em; }
.picture { margin: 1em 0; overflow-x: auto; } .picture svg { max-width: 100%; height: auto; }
figcaption { color: #555; font-size: .9em; }
pre { background: #f6f6f6; padding: .8em; overflow-x: auto; font-size: 12px; }
.note { color: #555; font-style: italic; }
footer { margin-top: 3em; color: #777; font-size: .85em; }
`;
