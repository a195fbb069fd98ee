import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatWalkChainDot, html, renderWalkHtml, WALK_HTML_CSP } from './walk-html.js';
import { buildWalkFigure } from './walk-figures.js';

// Text a hostile host could put in its records: markup, a script, an attribute break-out,
// terminal controls and a bidirectional override.
const EVIL = '<script>alert(1)</script><img src=x onerror=alert(2)>"\'&\x1b[2J\u202e';

/** Every tag name in the document, in order. */
function tagsOf(page: string): Set<string> {
  return new Set([...page.matchAll(/<([a-zA-Z][a-zA-Z0-9]*)[\s>/]/g)].map((match) => (match[1] ?? '').toLowerCase()));
}

test('renderWalkHtml writes one document with the CSP, the chain, every hop and the ends', async () => {
  const doc = buildWalkFigure();
  const page = await renderWalkHtml(doc);
  assert.match(page, /^<!DOCTYPE html>\n<html lang="en">/);
  assert.ok(page.includes(`<meta http-equiv="Content-Security-Policy" content="${WALK_HTML_CSP}">`));
  assert.match(WALK_HTML_CSP, /^default-src 'none';/);
  assert.ok(page.includes('<section id="chain">'));
  for (const hop of doc.hops) {
    assert.ok(page.includes(`<article class="hop ok" id="hop-${hop.index + 1}">`), `hop ${hop.index + 1}`);
    assert.ok(page.includes(html(hop.token)), `token of hop ${hop.index + 1}`);
  }
  // Three pictures: the chain and both hops' processes, inline, without XML prologue.
  assert.equal(page.match(/<svg /g)?.length, 3);
  assert.doesNotMatch(page, /<\?xml|<!DOCTYPE svg/);
  // Community ID and the raw records behind a click.
  assert.ok(page.includes(`<th>Community ID</th><td>${html(doc.hops[0]?.summary?.communityId ?? 'missing')}</td>`));
  assert.equal(page.match(/<details><summary>Raw records/g)?.length, 2);
  assert.ok(page.includes('<td>unreachable</td><td>hop 2</td>'));
});

test('renderWalkHtml loads nothing: no script, no external reference, no URL in any attribute', async () => {
  const page = await renderWalkHtml(buildWalkFigure({ evil: EVIL }));
  const tags = tagsOf(page);
  for (const tag of ['script', 'img', 'iframe', 'link', 'object', 'embed', 'image', 'use', 'foreignobject', 'a']) assert.ok(!tags.has(tag), `no <${tag}>`);
  // Host text has every '<' escaped, so each '<' left starts a tag this module wrote.
  const tagText = [...page.matchAll(/<[a-zA-Z][^>]*>/g)].map((match) => match[0]);
  const attributes = new Set(tagText.flatMap((tag) => [...tag.matchAll(/\s([a-zA-Z:-]+)=/g)].map((match) => (match[1] ?? '').toLowerCase())));
  for (const name of ['src', 'href', 'xlink:href', 'action', 'srcset', 'background', 'style']) assert.ok(!attributes.has(name), `no ${name}= attribute`);
  assert.deepEqual([...attributes].filter((name) => name.startsWith('on')), []);
  const style = /<style>([\s\S]*?)<\/style>/.exec(page)?.[1] ?? '';
  assert.doesNotMatch(style, /url\(|@import|@font-face/i);
  for (const tag of tagText) assert.doesNotMatch(tag, /https?:\/\/(?!www\.w3\.org\/)/i, tag);
});

test('renderWalkHtml escapes everything the hosts wrote', async () => {
  const page = await renderWalkHtml(buildWalkFigure({ evil: EVIL, tampered: true }));
  assert.ok(!page.includes('<script>alert'), 'no raw markup from a host');
  assert.ok(!page.includes('onerror=alert(2)>'), 'no raw attribute from a host');
  // eslint-disable-next-line no-control-regex -- matching control characters is the point
  assert.ok(!/[\x1b\u202e]/u.test(page), 'controls and bidi overrides are made visible');
  assert.ok(page.includes('&#60;script&#62;alert(1)&#60;/script&#62;'), 'the text is there, escaped');
  assert.ok(page.includes('\\x1b[2J'), 'the escape shown as text');
  assert.ok(page.includes('<article class="hop failed" id="hop-2">'));
  assert.match(page, /FAILED verification: its evidence is not trusted/);
});

test('formatWalkChainDot draws a node per hop, an edge per link walked and a note per end', () => {
  const dot = formatWalkChainDot(buildWalkFigure());
  assert.match(dot, /^digraph stop_walk \{\n/);
  assert.match(dot, /"hop0" \[label="hop 1: 198\.51\.100\.2\\ntoken [0-9a-f]{12}…\\nuser alice\\nverified"/);
  assert.match(dot, /"hop0" -> "hop1" \[label="192\.0\.2\.1:616 -> :22"\]/);
  assert.match(dot, /"hop1" -> "end0" \[style=dashed/);
  assert.match(dot, /"end0" \[label="unreachable\\n192\.0\.2\.99\\ntoken efefefefefef…"/);
});

test('renderWalkHtml of a walk that reached no host still says where it started', async () => {
  const doc = { ...buildWalkFigure(), hops: [], ends: [], verdict: 'incomplete' as const };
  const page = await renderWalkHtml(doc);
  assert.equal(page.match(/<svg /g)?.length, 1);
  assert.match(page, /198\.51\.100\.2 \(not reached\)/);
});
