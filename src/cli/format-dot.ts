/**
 * Pictures for people (issue 5, part 5): Graphviz DOT text of an SV evidence record (the
 * process and IPC graph, drawn like the paper's figure 9) and of a trace (the chain of hosts).
 * `render-svg.ts` turns the DOT into SVG.
 *
 * Everything in a record comes from the inspected host and may be hostile: a process can
 * name itself `x" color=red label="y` or put newlines and terminal escapes in its name. Every
 * string is written through {@link quoteDot}, which makes control characters visible (as the
 * text view does) and escapes what DOT gives a meaning to, so that no name can end its string,
 * add attributes or nodes, or inject Graphviz label escapes (`\N`, `\G`, `\l`).
 */
import type { EvidenceRecord, RecordProcess } from '../evidence/record.js';
import type { ClosureChannel, ClosureLink, ClosureSocket, UpstreamCandidate } from '../trace/types.js';
import type { TraceView } from './format-trace.js';
import { renderSvg } from './render-svg.js';
import { showEndpoint } from './show.js';

/** The picture formats of `stopctl redeem` and `stopctl trace`. */
export type PictureFormat = 'dot' | 'svg';

/** Options of {@link formatRecordPicture}. */
export interface RecordPictureOptions extends FormatRecordDotOptions {
  readonly format: PictureFormat;
}

/**
 * The picture of an SV record for `stopctl redeem --format dot|svg`: {@link formatRecordDot},
 * rendered to SVG by {@link renderSvg} when `format` is `svg`. Ends with a newline.
 */
export async function formatRecordPicture(token: string, record: EvidenceRecord, options: RecordPictureOptions): Promise<string> {
  const dot = formatRecordDot(token, record, options);
  return options.format === 'dot' ? dot : withNewline(await renderSvg(dot));
}

/** The picture of a trace for `stopctl trace --format dot|svg`: {@link formatTraceDot}, rendered when `svg`. */
export async function formatTracePicture(view: TraceView, options: { readonly format: PictureFormat }): Promise<string> {
  const dot = formatTraceDot(view);
  return options.format === 'dot' ? dot : withNewline(await renderSvg(dot));
}

function withNewline(text: string): string {
  return text.endsWith('\n') ? text : `${text}\n`;
}

/** Colours and styles, one place so the two pictures agree. */
const STYLE = {
  primaryFill: '#cfe2ff',
  resolvedFill: '#ffffff',
  holderPen: '#c62828',
  externalFill: '#eeeeee',
  parent: '#555555',
  pipe: '#1565c0',
  tcp: '#2e7d32',
  unix: '#6a1b9a',
  shared: '#8d6e63',
} as const;

/** Options of {@link formatRecordDot}. */
export interface FormatRecordDotOptions {
  /**
   * Why the record cannot be trusted (`redeemToken`'s `problems`), shown in red in the title
   * so that a picture saved on its own still says so. Default none.
   */
  readonly problems?: readonly string[];
}

/**
 * The DOT text of an SV record's process and IPC graph (paper 3.6, figure 9):
 *
 * - one node per process, labelled `name [pid]` and `user (uid N)` (and the effective uid
 *   when it differs); primary processes (the queried socket's holders and their ancestors,
 *   paper fig. 8) are filled blue, resolved ones white; the holders of the queried socket
 *   have a thick red border;
 * - one cluster per process group (`cluster_<pgid>`), like figure 9's three groups;
 * - edges: parent links solid from parent to child; pipes from writer to reader labelled
 *   `pipe:[inode]`; UNIX sockets without arrowheads (`dir=none`) labelled with the path or
 *   inode; host-local TCP from the connecting to the accepting side labelled with the ports;
 *   shared sockets dashed. IPC edges do not constrain the layout, so the process trees stay trees;
 * - each channel (an object with too many holders for pairwise links) as one hexagon node
 *   `pipe:[inode]` with its holder counts, and an edge to or from each holder (pipes from the
 *   writers and to the readers): the picture grows with the holders, not their square;
 * - the queried connection's remote end as a `next host` node (an edge from each holder), and
 *   each upstream candidate as a `previous host` node with an edge to each process holding it.
 *
 * Node names: `p<pid>`, `next`, `upstream<i>` and `channel<i>` (in record order), and `host` when the record
 * holds no processes. Deterministic: the same record always gives the same text.
 */
export function formatRecordDot(token: string, record: EvidenceRecord, options: FormatRecordDotOptions = {}): string {
  const out: string[] = [];
  const problems = options.problems ?? [];
  const title = [
    `${record.type} record ${shortToken(token)}`,
    `${record.host === undefined ? 'host not saved' : `host ${record.host.hostname}`}, ${record.time}`,
    ...(record.sid === undefined ? [] : [`SID ${record.sid}`]),
    // Issue 14: a record from history draws processes as captured at connect time, not at the request.
    ...(record.history === undefined
      ? []
      : [
          `FROM HISTORY: connection closed ${record.history.closedAt ?? '(close not seen)'}`,
          `processes as captured ${record.history.capturedAt ?? 'never (exited before capture)'}`,
        ]),
    ...problems.map((problem) => `INTEGRITY FAILURE: ${problem}`),
    // What the analysis could not see, as prominent as in `stopctl redeem` (issue 13).
    ...(record.problems ?? []).map((problem) => `PROBLEM: ${problem.message} (${problem.code}${problem.reason === undefined ? '' : `: ${problem.reason}`})`),
  ];
  const warn = problems.length > 0 || (record.problems ?? []).length > 0 ? `, fontcolor="${STYLE.holderPen}"` : '';
  out.push('digraph stop_record {');
  out.push(`  graph [label=${label(title)}${warn}, labelloc=t, pad=0.3, fontname="Helvetica", fontsize=12, newrank=true];`);
  // Graphviz sizes boxes with Helvetica's metrics; viewers without Helvetica substitute a wider
  // font (DejaVu Sans on Debian), so the margin is larger than Graphviz's default 0.11,0.055.
  out.push('  node [shape=box, style="rounded,filled", margin="0.2,0.08", fontname="Helvetica", fontsize=10];');
  out.push('  edge [fontname="Helvetica", fontsize=9];');

  const processes = record.processes ?? [];
  const holders = findHolders(record);
  const known = new Set(processes.map((process) => process.pid));

  // The `host` node stands for processes the record does not name: none saved, or no holder
  // of the queried socket or of an upstream candidate listed.
  const holderIds = record.processes === undefined || holders.size === 0 ? ['host'] : [...holders].map((pid) => `p${pid}`);
  if (holderIds[0] === 'host' || record.upstream.some((candidate) => candidate.pids.length === 0)) {
    const why = record.processes === undefined ? 'processes not saved' : 'holder not recorded';
    out.push(`  ${id('host')} [label=${label(['this host', why])}, fillcolor="${STYLE.externalFill}"];`);
  }
  if (record.processes !== undefined) {
    // Process groups as clusters, in the order their first process appears in the record.
    const groups = new Map<number, RecordProcess[]>();
    for (const process of processes) {
      const group = groups.get(process.pgid);
      if (group === undefined) groups.set(process.pgid, [process]);
      else group.push(process);
    }
    for (const [pgid, members] of groups) {
      out.push(`  subgraph ${id(`cluster_${pgid}`)} {`);
      out.push(`    graph [label=${label([`process group ${pgid}`])}, style=dashed, color="#999999", fontsize=9];`);
      for (const process of members) out.push(`    ${processNode(process, holders.has(process.pid))}`);
      out.push('  }');
    }
  }

  // Links may name a pid the record does not list (a damaged or edited record): draw it
  // rather than let Graphviz invent a node labelled with our internal name.
  const missing = new Set<number>();
  for (const link of record.links ?? []) {
    for (const pid of [link.from, link.to]) if (!known.has(pid)) missing.add(pid);
  }
  for (const candidate of record.upstream) {
    if (record.processes !== undefined) for (const pid of candidate.pids) if (!known.has(pid)) missing.add(pid);
  }
  for (const channel of record.channels ?? []) {
    for (const pid of [...channel.from, ...channel.to]) if (!known.has(pid)) missing.add(pid);
  }
  for (const pid of missing) {
    out.push(`  ${id(`p${pid}`)} [label=${label([`pid ${pid}`, 'not in this record'])}, style="rounded,dashed"];`);
  }

  for (const link of record.links ?? []) out.push(`  ${linkEdge(link, processes)}`);
  (record.channels ?? []).forEach((channel, index) => out.push(...channelLines(`channel${index}`, channel)));

  // The queried connection's far end: where the data went (paper fig. 5, H(i+1)).
  const connection = record.connection;
  out.push(
    `  ${id('next')} [label=${label(['next host', showEndpoint(connection.remote)])}, shape=ellipse, fillcolor="${STYLE.externalFill}"];`,
  );
  const queriedLabel = label([
    record.history === undefined ? `queried socket:[${connection.inode}]` : 'queried connection (closed, from history)',
    `:${connection.local.port} -> :${connection.remote.port}`,
  ]);
  for (const holder of holderIds) {
    out.push(`  ${id(holder)} -> ${id('next')} [label=${queriedLabel}, color="${STYLE.holderPen}", penwidth=2];`);
  }

  // Upstream candidates: where the data came from (paper 3.1.3, H(i-1)).
  record.upstream.forEach((candidate, index) => {
    const name = `upstream${index}`;
    out.push(
      `  ${id(name)} [label=${label(['previous host', showEndpoint(candidate.remote)])}, shape=ellipse, fillcolor="${STYLE.externalFill}"];`,
    );
    const targets = record.processes === undefined || candidate.pids.length === 0 ? ['host'] : candidate.pids.map((pid) => `p${pid}`);
    for (const target of targets) out.push(`  ${id(name)} -> ${id(target)} [${upstreamEdgeAttributes(candidate)}];`);
  });
  out.push('}');
  return `${out.join('\n')}\n`;
}

/**
 * The processes holding the queried socket. From the saved sockets when there are any (the
 * one marked `queried`, or with the connection's inode); without them, the primary processes
 * that are no primary process's parent (primary = holders and their ancestors, so the leaves
 * of that chain hold the socket; a parent that shares it with its child is then missed).
 */
function findHolders(record: EvidenceRecord): Set<number> {
  const processes = record.processes ?? [];
  const holders = new Set<number>();
  for (const process of processes) {
    if (process.sockets?.some((socket) => socket.kind === 'tcp' && (socket.queried || socket.inode === record.connection.inode))) {
      holders.add(process.pid);
    }
  }
  if (holders.size > 0 || processes.some((process) => process.sockets !== undefined)) return holders;
  const primary = processes.filter((process) => process.role === 'primary');
  const parents = new Set(primary.map((process) => process.ppid));
  for (const process of primary) if (!parents.has(process.pid)) holders.add(process.pid);
  return holders;
}

function processNode(process: RecordProcess, holder: boolean): string {
  const effective = process.uid.effective === process.uid.real ? '' : `, euid ${process.uid.effective}`;
  const user = process.user === null ? `uid ${process.uid.real}${effective}` : `${process.user} (uid ${process.uid.real}${effective})`;
  const lines = [`${process.name} [${process.pid}]`, user];
  if (process.ipc !== 'followed') lines.push(`IPC not followed: ${process.ipc}`);
  const attributes = [
    `label=${label(lines)}`,
    `fillcolor="${process.role === 'primary' ? STYLE.primaryFill : STYLE.resolvedFill}"`,
    ...(holder ? [`color="${STYLE.holderPen}"`, 'penwidth=3'] : []),
  ];
  return `${id(`p${process.pid}`)} [${attributes.join(', ')}];`;
}

function linkEdge(link: ClosureLink, processes: readonly RecordProcess[]): string {
  const ends = `${id(`p${link.from}`)} -> ${id(`p${link.to}`)}`;
  const [first = 0, second] = link.inodes;
  switch (link.kind) {
    case 'parent':
      return `${ends} [color="${STYLE.parent}"];`;
    case 'pipe':
      // ClosureLink: `from` holds the write end, `to` the read end, so the arrow is the data flow.
      return `${ends} [label=${label([`pipe:[${first}]`])}, color="${STYLE.pipe}", fontcolor="${STYLE.pipe}", constraint=false];`;
    case 'tcp': {
      // ClosureLink: `from` is the connecting side, `to` the accepting side.
      const socket = findSocket(processes, link.from, first);
      const text =
        socket?.kind === 'tcp'
          ? `tcp :${socket.local.port} -> :${socket.remote.port}`
          : `tcp socket:[${first}]${second === undefined ? '' : ` -> socket:[${second}]`}`;
      return `${ends} [label=${label([text])}, color="${STYLE.tcp}", fontcolor="${STYLE.tcp}", constraint=false];`;
    }
    case 'unix': {
      // UNIX sockets have no direction (ClosureLink: `from` is merely the earlier one).
      // The bound path shows on one end only (the server's); a socketpair has none.
      const sockets = [findSocket(processes, link.from, first), second === undefined ? undefined : findSocket(processes, link.to, second)];
      const path = sockets.find((socket) => socket?.kind === 'unix' && socket.path !== null);
      const text = path?.kind === 'unix' && path.path !== null ? `unix ${path.path}` : `unix socket:[${first}]`;
      return `${ends} [label=${label([text])}, dir=none, color="${STYLE.unix}", fontcolor="${STYLE.unix}", constraint=false];`;
    }
    case 'shared':
      return `${ends} [label=${label([`shared socket:[${first}]`])}, dir=none, style=dashed, color="${STYLE.shared}", fontcolor="${STYLE.shared}", constraint=false];`;
  }
}

/** A channel's node and its edges to and from its holders. */
function channelLines(name: string, channel: ClosureChannel): string[] {
  const [first = 0, second] = channel.inodes;
  const color = STYLE[channel.kind];
  let lines: string[];
  let fromEdge = `color="${color}", constraint=false`;
  let toEdge = fromEdge;
  switch (channel.kind) {
    case 'pipe':
      lines = [`pipe:[${first}]`, `${channel.from.length} writers, ${channel.to.length} readers`];
      break;
    case 'shared':
      lines = [`shared socket:[${first}]`, `${channel.from.length} holders`];
      fromEdge = `dir=none, style=dashed, ${fromEdge}`;
      break;
    case 'tcp':
      lines = [`tcp socket:[${first}] -> socket:[${second ?? 0}]`, `${channel.from.length} -> ${channel.to.length} holders`];
      break;
    case 'unix':
      lines = [`unix socket:[${first}] - socket:[${second ?? 0}]`, `${channel.from.length} - ${channel.to.length} holders`];
      fromEdge = `dir=none, ${fromEdge}`;
      toEdge = fromEdge;
      break;
  }
  const out = [`  ${id(name)} [label=${label(lines)}, shape=hexagon, fillcolor="${STYLE.externalFill}", color="${color}", fontcolor="${color}"];`];
  for (const pid of channel.from) out.push(`  ${id(`p${pid}`)} -> ${id(name)} [${fromEdge}];`);
  for (const pid of channel.to) out.push(`  ${id(name)} -> ${id(`p${pid}`)} [${toEdge}];`);
  return out;
}

function findSocket(processes: readonly RecordProcess[], pid: number, inode: number): ClosureSocket | undefined {
  return processes.find((process) => process.pid === pid)?.sockets?.find((socket) => socket.inode === inode);
}

function upstreamEdgeAttributes(candidate: UpstreamCandidate): string {
  const direction = candidate.direction === 'inbound' ? 'inbound' : 'direction unknown';
  const text = label([`:${candidate.remote.port} -> :${candidate.local.port}`, direction]);
  // An `unknown` direction (paper 4: requests go to all such sockets) is a guess: dashed.
  return `label=${text}, color="${STYLE.tcp}", fontcolor="${STYLE.tcp}"${candidate.direction === 'inbound' ? '' : ', style=dashed'}`;
}

/** How each upstream outcome looks: answers solid, failures red, broken or skipped dashed or dotted. */
const OUTCOME_STYLE: Record<TraceView['upstream'][number]['outcome'], { readonly color: string; readonly style: string }> = {
  token: { color: '#2e7d32', style: 'solid' },
  user: { color: '#ef6c00', style: 'solid' },
  error: { color: '#ef6c00', style: 'solid' },
  refused: { color: '#c62828', style: 'dashed' },
  timeout: { color: '#c62828', style: 'dotted' },
  unreachable: { color: '#c62828', style: 'dashed' },
  protocol: { color: '#6a1b9a', style: 'dashed' },
  'line-too-long': { color: '#6a1b9a', style: 'dashed' },
  'bad-token': { color: '#6a1b9a', style: 'dashed' },
  'wrong-ports': { color: '#6a1b9a', style: 'dashed' },
  skipped: { color: '#9e9e9e', style: 'dotted' },
};

/**
 * The DOT text of `stopctl trace` (paper 3.1.3): this host (with the local token, shortened),
 * the requester it answered, and each upstream host asked, labelled with its address, the
 * request sent (the port pair), the outcome and the upstream token (shortened). Edges run
 * from each upstream host to this host, labelled with the connection, coloured and styled
 * by outcome (refused and unreachable dashed red, timeouts dotted red, tokens green). Upstream
 * hosts whose outcome is not in the ledger yet appear as one dashed `pending` node.
 *
 * Node names: `this`, `requester`, `upstream<i>` (in view order), `pending`.
 */
export function formatTraceDot(view: TraceView): string {
  const out: string[] = [];
  const local = view.local;
  const title = [`trace of ${shortToken(view.token)}: ${view.verdict}`, ...view.problems.map((problem) => `problem: ${problem}`)];
  out.push('digraph stop_trace {');
  out.push(`  graph [label=${label(title)}, labelloc=t, rankdir=LR, pad=0.3, fontname="Helvetica", fontsize=12];`);
  out.push('  node [shape=box, style="rounded,filled", fillcolor="#ffffff", margin="0.2,0.08", fontname="Helvetica", fontsize=10];');
  out.push('  edge [fontname="Helvetica", fontsize=9];');

  const thisLines = ['this host', `token ${shortToken(view.token)}`];
  if (local === null) {
    thisLines.push('not in this store');
  } else {
    thisLines.push(`${local.type ?? 'unparsed'}${local.sid === null ? '' : ` SID ${local.sid}`}`, local.time);
    if (local.uid !== null) thisLines.push(local.user === null ? `uid ${local.uid}` : `${local.user} (uid ${local.uid})`);
    if (local.processes !== null) thisLines.push(`${local.processes} processes${local.record ? ' (record saved)' : ''}`);
    if (!local.processed) thisLines.push('not processed (repeat or over budget)');
  }
  const failed = view.verdict !== 'verified';
  out.push(
    `  ${id('this')} [label=${label(thisLines)}, fillcolor="${STYLE.primaryFill}"${failed ? `, color="${STYLE.holderPen}", penwidth=3` : ''}];`,
  );

  if (local !== null) {
    out.push(`  ${id('requester')} [label=${label(['requester', showEndpoint(local.requester)])}, shape=ellipse, fillcolor="${STYLE.externalFill}"];`);
    const about = local.connection === null ? [local.request] : [`${showEndpoint(local.connection.local)} -> ${showEndpoint(local.connection.remote)}`];
    out.push(`  ${id('this')} -> ${id('requester')} [label=${label(about)}];`);
  }

  view.upstream.forEach((u, index) => {
    const name = `upstream${index}`;
    const look = OUTCOME_STYLE[u.outcome] ?? OUTCOME_STYLE.protocol;
    const lines = [`upstream host ${showEndpoint({ address: u.host, port: u.port })}`, `asked ${u.request}`, describeOutcome(u)];
    out.push(
      `  ${id(name)} [label=${label(lines)}, color="${look.color}", style="rounded,filled,${look.style}", penwidth=2];`,
    );
    const connection = `${showEndpoint(u.connection.remote)} -> ${showEndpoint(u.connection.local)}`;
    out.push(
      `  ${id(name)} -> ${id('this')} [label=${label([connection, u.direction])}, color="${look.color}", fontcolor="${look.color}", style=${look.style}];`,
    );
  });
  if (view.pending > 0) {
    out.push(`  ${id('pending')} [label=${label([`${view.pending} upstream host${view.pending === 1 ? '' : 's'}`, 'not answered yet'])}, style="rounded,dashed"];`);
    out.push(`  ${id('pending')} -> ${id('this')} [style=dashed, color="#9e9e9e"];`);
  }
  out.push('}');
  return `${out.join('\n')}\n`;
}

function describeOutcome(u: TraceView['upstream'][number]): string {
  switch (u.outcome) {
    case 'token':
      return `token ${u.token === null ? '?' : shortToken(u.token)}`;
    case 'user':
      return `user name: ${clip(u.reply ?? '', 40)}`;
    case 'error':
      return `error ${u.error ?? '?'}`;
    case 'refused':
      return 'refused: no STOP daemon';
    case 'timeout':
      return 'timeout: no answer in time';
    case 'unreachable':
      return `unreachable${u.message === null ? '' : `: ${u.message}`}`;
    case 'protocol':
      return 'not a STOP reply';
    case 'line-too-long':
      return 'reply line too long, not read';
    case 'bad-token':
      return 'not a plain token, not kept';
    case 'wrong-ports':
      return 'reply for another port pair, not kept';
    case 'skipped':
      return `not asked${u.message === null ? '' : `: ${u.message}`}`;
    default:
      return `outcome ${String(u.outcome)}`;
  }
}

/** Upstream text cut for a picture (the whole of it is in `stopctl trace`'s text and JSON). */
function clip(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

/** A token shortened for a picture: its first 12 digits and an ellipsis (the full token is in the text views). */
function shortToken(token: string): string {
  return token.length > 16 ? `${token.slice(0, 12)}…` : token;
}


/** A DOT node or cluster name, always quoted. */
function id(name: string): string {
  return quoteDot(name);
}

/** A multi-line label: each line quoted safely, joined with the DOT line break `\n`. */
function label(lines: readonly string[]): string {
  return `"${lines.map((line) => escapeDot(line)).join('\\n')}"`;
}

/**
 * Text as a double-quoted DOT string (exported for the tests). Control characters, DEL, C1
 * controls, line and paragraph separators, bidirectional overrides and lone surrogates become
 * visible `\n`, `\xNN` or `\u{NNNN}` text first, and a backslash `\\` (as `stopctl redeem`'s text
 * view shows them, so a name holding backslash-n is not confused with one holding a newline); then
 * backslashes and double quotes are escaped, so the string cannot end early and Graphviz's
 * label escapes (`\n`, `\l`, `\N`, ...) only ever come from this module.
 */
export function quoteDot(text: string): string {
  return `"${escapeDot(text)}"`;
}

function escapeDot(text: string): string {
  // eslint-disable-next-line no-control-regex -- matching control characters is the point
  const visible = text.replace(/[\\\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]|\p{Cs}/gu, (char) => {
    if (char === '\\') return '\\\\';
    const code = char.codePointAt(0) ?? 0;
    if (char === '\n') return '\\n';
    if (char === '\t') return '\\t';
    if (char === '\r') return '\\r';
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u{${code.toString(16)}}`;
  });
  // DOT: inside a quoted string only `\"` is an escape for the parser, but Graphviz reads
  // labels as escString, where `\\` is one backslash; so every backslash is doubled.
  return visible.replaceAll('\\', '\\\\').replaceAll('"', '\\"');
}
