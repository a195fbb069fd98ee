/**
 * The text of `stopctl walk`: the chain hop by hop (host, connection, user, the key processes,
 * the verdict of each check), then how each branch ended and the walk's verdict. Everything
 * here came from the walked hosts' stores and goes through `show`.
 */
import { show, showEndpoint } from '../show.js';
import type { WalkDocument, WalkHop } from './walk-document.js';

/** The walk as text for people. */
export function formatWalkText(doc: WalkDocument): string {
  const out: string[] = [];
  const ask = doc.start.ask;
  if (ask !== undefined) {
    out.push(`Asked       ${showEndpoint(ask.target)} ${JSON.stringify(show(ask.request))}`);
    out.push(`Reply       ${show(ask.reply)}`);
  }
  out.push(`Walk        from ${show(doc.start.host)}, ${doc.hops.length} hop${doc.hops.length === 1 ? '' : 's'} reached${doc.interrupted ? ' (INTERRUPTED: what was gathered so far)' : ''}`);
  out.push(`Chain       ${describeChain(doc)}`);
  for (const hop of doc.hops) out.push('', ...formatHop(hop, doc));
  if (doc.ends.length > 0) {
    out.push('', 'Ends:');
    for (const end of doc.ends) out.push(`  ${end.reason.padEnd(19)} ${show(end.message)}`);
  }
  out.push('', `Verdict     ${describeVerdict(doc)}`);
  return out.join('\n') + '\n';
}

/** `203.0.113.2 -> 203.0.113.1`: the hosts in the order walked (upstream to the right). */
function describeChain(doc: WalkDocument): string {
  if (doc.hops.length === 0) return `${show(doc.start.host)} (not reached)`;
  return doc.hops.map((hop) => `${show(hop.host)}${hop.verified ? '' : ' (FAILED)'}`).join(' -> ');
}

function formatHop(hop: WalkHop, doc: WalkDocument): string[] {
  const parent = hop.parent === null ? undefined : doc.hops[hop.parent];
  const out = [`Hop ${hop.index + 1}       ${show(hop.host)}${parent === undefined ? ' (start)' : ` (upstream of ${show(parent.host)})`} via ${hop.access}`];
  out.push(`  Token     ${show(hop.token)}`);
  const summary = hop.summary;
  if (summary !== null) {
    const type = summary.type === null ? '' : `${show(summary.type)}${summary.sid === null ? '' : ` SID ${show(summary.sid)}`}`;
    out.push(`  Issued    ${show(summary.time ?? '?')}${type === '' ? '' : `, ${type}`}${summary.hostname === null ? '' : ` by ${show(summary.hostname)}`}`);
    if (summary.connection !== null) {
      out.push(`  Connection ${showEndpoint(summary.connection.local)} -> ${showEndpoint(summary.connection.remote)}${summary.communityId === undefined ? '' : ` (${show(summary.communityId)})`}`);
    }
    if (summary.uid !== null) out.push(`  User      ${summary.user === null ? '(no passwd entry)' : show(summary.user)} (uid ${summary.uid})`);
    for (const p of summary.keyProcesses) {
      const who = p.user ?? (p.uid === null ? '?' : `uid ${p.uid}`);
      const cmd = p.cmdline === null || p.cmdline === '' ? '' : `  ${show(p.cmdline.length > 100 ? `${p.cmdline.slice(0, 100)}…` : p.cmdline)}`;
      out.push(`  Process   ${p.pid} ${show(p.name)} (${show(who)}${p.role === null ? '' : `, ${show(p.role)}`})${cmd}`);
    }
  }
  out.push(`  Verdict   ${hop.verified ? 'verified' : 'FAILED VERIFICATION: its evidence is not trusted for the story'}`);
  for (const [name, check] of Object.entries(hop.checks)) {
    const mark = check.ok === true ? 'ok' : check.ok === false ? 'FAILED' : 'n/a';
    out.push(`    ${name.padEnd(7)} ${mark.padEnd(7)}${show(check.detail)}`);
  }
  return out;
}

function describeVerdict(doc: WalkDocument): string {
  const failed = doc.hops.filter((hop) => !hop.verified).length;
  switch (doc.verdict) {
    case 'verified':
      return `verified: all ${doc.hops.length} hop${doc.hops.length === 1 ? '' : 's'} verified where they live`;
    case 'failed':
      return `FAILED: ${failed} hop${failed === 1 ? '' : 's'} failed verification`;
    default:
      return doc.interrupted
        ? 'incomplete: interrupted'
        : 'incomplete: some branch ended before its origin (see Ends: take the tokens named there to their administrators)';
  }
}
