import { test } from 'node:test';
import assert from 'node:assert/strict';
import { instance } from '@viz-js/viz';
import { ALL_SAVE_CATEGORIES, buildRecord, type EvidenceRecord, type SaveCategory } from '../evidence/record.js';
import { FakeHost } from '../host/fake-host.js';
import type { HostFacts } from '../host/types.js';
import { resolveClosure } from '../trace/index.js';
import {
  FIGURE_11_PIPES,
  NEXT_HOST,
  PREVIOUS_HOST,
  THIS_HOST,
  buildFigure11,
  buildFigure7,
  buildFigure9,
  type FigureFixture,
  buildSharedPipe,
} from '../trace/figures.js';
import { formatRecordDot, formatRecordPicture, formatTraceDot, formatTracePicture, quoteDot } from './format-dot.js';
import type { TraceView } from './format-trace.js';

const TOKEN = 'ab'.repeat(32);
const HOST: HostFacts = { hostname: 'h2.example', bootTime: '2024-01-01T00:00:00.000Z', kernel: '6.1.0-test', os: null };

function recordOf(
  fixture: Pick<FigureFixture<string>, 'host' | 'socket'>,
  save: readonly SaveCategory[] = ALL_SAVE_CATEGORIES,
  host: HostFacts = HOST,
): EvidenceRecord {
  const closure = resolveClosure(fixture.host, { socket: fixture.socket });
  const { local, remote } = fixture.socket;
  return buildRecord({
    closure,
    request: { line: `${local.port}, ${remote.port} : SV_REC : 92847523456`, requester: { address: NEXT_HOST, port: 40123 } },
    userName: (uid) => (uid === 0 ? 'root' : uid === 1000 ? 'alice' : null),
    host,
    utmp: [],
    denied: [],
    save,
    type: 'SV_REC',
    sid: '92847523456',
    now: new Date('2024-01-02T10:00:00Z'),
  });
}

interface DotGraph {
  /** Node name -> its attributes as Graphviz parsed them (labels raw, with their `\n` escapes). */
  readonly nodes: Map<string, Record<string, string>>;
  readonly edges: { tail: string; head: string; attributes: Record<string, string> }[];
  /** Cluster name -> names of its nodes. */
  readonly clusters: Map<string, string[]>;
  readonly attributes: Record<string, string>;
}

interface JsonObject {
  readonly name: string;
  readonly _gvid: number;
  readonly nodes?: readonly number[];
  readonly [attribute: string]: unknown;
}

/** Parses DOT with Graphviz itself (the `dot_json` output: the graph as read, without layout). */
async function parseDot(dot: string): Promise<DotGraph> {
  const viz = await instance();
  const result = viz.render(dot, { format: 'dot_json' });
  assert.equal(result.status, 'success', JSON.stringify(result.errors));
  const json = JSON.parse(result.output ?? '') as {
    objects?: JsonObject[];
    edges?: { tail: number; head: number; [attribute: string]: unknown }[];
    [attribute: string]: unknown;
  };
  const nodes = new Map<string, Record<string, string>>();
  const byId = new Map<number, string>();
  const clusters = new Map<string, string[]>();
  const attributesOf = (object: Record<string, unknown>): Record<string, string> =>
    Object.fromEntries(Object.entries(object).filter((entry): entry is [string, string] => typeof entry[1] === 'string'));
  for (const object of json.objects ?? []) {
    if (object.nodes !== undefined) continue;
    nodes.set(object.name, attributesOf(object));
    byId.set(object._gvid, object.name);
  }
  for (const object of json.objects ?? []) {
    if (object.nodes !== undefined) clusters.set(object.name, object.nodes.map((idx) => byId.get(idx) ?? `?${idx}`));
  }
  const edges = (json.edges ?? []).map((edge) => ({
    tail: byId.get(edge.tail) ?? '?',
    head: byId.get(edge.head) ?? '?',
    attributes: attributesOf(edge),
  }));
  return { nodes, edges, clusters, attributes: attributesOf(json) };
}

/** A verified SV_REC trace with one upstream host that answered a token. */
function hostileTraceView(): TraceView {
  return {
    token: TOKEN,
    verdict: 'verified',
    problems: [],
    local: {
      type: 'SV_REC',
      sid: '7',
      time: '2024-01-02T10:00:00.000Z',
      request: '968,23:SV_REC:7',
      requester: { address: NEXT_HOST, port: 40123 },
      connection: null,
      user: 'alice',
      uid: 1000,
      processes: 5,
      record: true,
      processed: true,
      analysisProblems: [],
    },
    upstream: [
      {
        host: '192.0.2.66',
        port: 113,
        request: '4000,22:SV_REC:7',
        connection: { local: { address: '198.51.100.2', port: 22 }, remote: { address: '192.0.2.66', port: 4000 }, communityId: null },
        direction: 'inbound',
        outcome: 'token',
        token: 'cd'.repeat(32),
        reply: null,
        error: null,
        message: null,
        elapsedMs: 5,
        time: '2024-01-02T10:00:01.000Z',
      },
    ],
    pending: 0,
  };
}

function edgesOf(graph: DotGraph, tail: string, head: string): Record<string, string>[] {
  return graph.edges.filter((edge) => edge.tail === tail && edge.head === head).map((edge) => edge.attributes);
}

test('formatRecordDot figure 7 draws the primary chain, the queried socket to the next host and the previous host', async () => {
  const fixture = buildFigure7();
  const record = recordOf(fixture);
  const graph = await parseDot(formatRecordDot(TOKEN, record));
  const processNames = ['p8339', 'p8338', 'p8337', 'p8000', 'p1'];
  assert.deepEqual([...graph.nodes.keys()].sort(), [...processNames, 'next', 'upstream0'].sort());
  assert.equal(graph.nodes.get('p8339')?.label, 'telnet [8339]\\nalice (uid 1000)');
  assert.equal(graph.nodes.get('p8337')?.label, 'sshd [8337]\\nroot (uid 0)');
  assert.equal(graph.nodes.get('p1')?.label, 'init [1]\\nroot (uid 0)\\nIPC not followed: root');
  // Every process here is primary (fig. 8); only telnet holds the queried socket.
  for (const name of processNames) assert.equal(graph.nodes.get(name)?.fillcolor, '#cfe2ff', name);
  assert.equal(graph.nodes.get('p8339')?.penwidth, '3');
  assert.equal(graph.nodes.get('p8338')?.penwidth, undefined);
  // Parent links, from parent to child.
  for (const [parent, child] of [
    ['p8338', 'p8339'],
    ['p8337', 'p8338'],
    ['p8000', 'p8337'],
    ['p1', 'p8000'],
  ] as const) {
    assert.equal(edgesOf(graph, parent, child).length, 1, `${parent} -> ${child}`);
  }
  assert.equal(graph.nodes.get('next')?.label, `next host\\n${NEXT_HOST}:23`);
  assert.equal(edgesOf(graph, 'p8339', 'next')[0]?.label, `queried socket:[${record.connection.inode}]\\n:968 -> :23`);
  assert.equal(graph.nodes.get('upstream0')?.label, `previous host\\n${PREVIOUS_HOST}:616`);
  assert.equal(edgesOf(graph, 'upstream0', 'p8337')[0]?.label, ':616 -> :22\\ninbound');
  assert.equal(graph.edges.length, 4 + 1 + 1);
  // Each process is its own process group in this fixture: one cluster each.
  assert.deepEqual(
    [...graph.clusters.entries()].sort(),
    processNames.map((name) => [`cluster_${name.slice(1)}`, [name]]).sort(),
  );
  assert.match(graph.attributes.label ?? '', /^SV_REC record abababababab…\\nhost h2\.example, 2024-01-02T10:00:00\.000Z\\nSID 92847523456$/);
});

test('formatRecordDot figure 9 draws three process groups, four pipes and two loopback TCP connections', async () => {
  const fixture = buildFigure9();
  const record = recordOf(fixture);
  const graph = await parseDot(formatRecordDot(TOKEN, record));
  const { pids } = fixture;
  const node = (label: keyof typeof pids): string => `p${pids[label]}`;
  assert.equal([...graph.nodes.keys()].filter((name) => name.startsWith('p')).length, 13);
  // Paper 3.6: P1, P2 and P3 with its descendants are the three process groups (and init its own).
  assert.deepEqual(graph.clusters.get(`cluster_${pids.P1}`), [node('P1')]);
  assert.deepEqual(graph.clusters.get(`cluster_${pids.P2}`), [node('P2')]);
  assert.deepEqual(
    graph.clusters.get(`cluster_${pids.P3}`)?.sort(),
    (['P3', 'P4', 'P5', 'P6', 'P7', 'P8', 'P9', 'P10', 'P11', 'P12'] as const).map(node).sort(),
  );
  assert.equal(graph.clusters.size, 4);
  // Primary: P4 (the holder), P3, init; everything else was resolved through IPC.
  for (const label of ['P4', 'P3', 'init'] as const) assert.equal(graph.nodes.get(node(label))?.fillcolor, '#cfe2ff', label);
  for (const label of ['P1', 'P2', 'P5', 'P8', 'P12'] as const) assert.equal(graph.nodes.get(node(label))?.fillcolor, '#ffffff', label);
  assert.equal(graph.nodes.get(node('P4'))?.penwidth, '3');
  // Pipes from writer to reader: P8 and P12 -> P4 (one pipe), P5 -> P8, P11 -> P12, P9 -> P10.
  const pipeA = edgesOf(graph, node('P8'), node('P4'))[0]?.label;
  assert.match(pipeA ?? '', /^pipe:\[\d+\]$/);
  assert.equal(edgesOf(graph, node('P12'), node('P4'))[0]?.label, pipeA);
  for (const [writer, reader] of [
    ['P5', 'P8'],
    ['P11', 'P12'],
    ['P9', 'P10'],
  ] as const) {
    const pipes = edgesOf(graph, node(writer), node(reader)).filter((edge) => edge.label?.startsWith('pipe:['));
    assert.equal(pipes.length, 1, `${writer} -> ${reader}`);
  }
  // Loopback TCP from the connecting to the accepting side, labelled with the ports.
  assert.equal(edgesOf(graph, node('P1'), node('P2'))[0]?.label, 'tcp :39352 -> :8011');
  assert.equal(edgesOf(graph, node('P2'), node('P5'))[0]?.label, 'tcp :32145 -> :8012');
  assert.equal(edgesOf(graph, 'upstream0', node('P1'))[0]?.label, ':1874 -> :8010\\ninbound');
  assert.equal(edgesOf(graph, node('P4'), 'next').length, 1);
  // 12 parent links, 5 pipe links (pipe A counts twice), 2 TCP, the queried and the upstream edge.
  assert.equal(graph.edges.length, 12 + 5 + 2 + 1 + 1);
  assert.equal(graph.edges.filter((edge) => edge.attributes.constraint === 'false').length, 7);
});

test('formatRecordDot figure 11 draws both pipes of the shell and no previous host', async () => {
  const fixture = buildFigure11();
  const graph = await parseDot(formatRecordDot(TOKEN, recordOf(fixture)));
  const { pids } = fixture;
  assert.equal(edgesOf(graph, `p${pids.telnetIn}`, `p${pids.sh}`)[0]?.label, `pipe:[${FIGURE_11_PIPES.telnetToShell}]`);
  assert.equal(edgesOf(graph, `p${pids.sh}`, `p${pids.telnetOut}`)[0]?.label, `pipe:[${FIGURE_11_PIPES.shellToTelnet}]`);
  assert.equal(graph.nodes.get('next')?.label, `next host\\n${PREVIOUS_HOST}:8000`);
  assert.equal(graph.nodes.get(`p${pids.telnetIn}`)?.penwidth, '3');
  assert.equal(graph.nodes.get(`p${pids.server}`)?.label, 'server [9818]\\nuid 33');
  assert.ok(![...graph.nodes.keys()].some((name) => name.startsWith('upstream')));
  assert.deepEqual(graph.clusters.get(`cluster_${pids.telnetIn}`)?.sort(), [pids.telnetIn, pids.sh, pids.telnetOut].map((pid) => `p${pid}`).sort());
});

/** Figure 7 plus a UNIX relay from telnet and the queried socket shared with csh. */
function buildUnixAndShared(path: string): { host: FakeHost; socket: FigureFixture<string>['socket']; relay: number } {
  const fixture = buildFigure7();
  const relay = 8400;
  fixture.host.addProcess({ pid: relay, ppid: 1, name: 'relay', uid: 1000, cmdline: ['relay'] });
  fixture.host.addUnixPair(fixture.pids.telnet, relay, { path });
  fixture.host.shareFd(fixture.pids.csh, fixture.socket.inode);
  return { host: fixture.host, socket: fixture.socket, relay };
}

test('formatRecordDot draws UNIX sockets without arrowheads and shared sockets dashed, and highlights every holder', async () => {
  const { host, socket, relay } = buildUnixAndShared('/run/relay.sock');
  const record = recordOf({ host, socket });
  const graph = await parseDot(formatRecordDot(TOKEN, record));
  const unix = graph.edges.find((edge) => edge.attributes.label?.startsWith('unix'));
  assert.ok(unix, 'a UNIX edge');
  assert.deepEqual([unix.tail, unix.head].sort(), ['p8339', `p${relay}`].sort());
  assert.equal(unix.attributes.label, 'unix /run/relay.sock');
  assert.equal(unix.attributes.dir, 'none');
  const shared = graph.edges.find((edge) => edge.attributes.label?.startsWith('shared'));
  assert.ok(shared, 'a shared-socket edge');
  assert.deepEqual([shared.tail, shared.head].sort(), ['p8338', 'p8339']);
  assert.equal(shared.attributes.label, `shared socket:[${socket.inode}]`);
  assert.equal(shared.attributes.style, 'dashed');
  // Both holders of the queried socket are highlighted and point at the next host.
  assert.equal(graph.nodes.get('p8338')?.penwidth, '3');
  assert.equal(graph.nodes.get('p8339')?.penwidth, '3');
  assert.equal(edgesOf(graph, 'p8338', 'next').length, 1);
  assert.equal(edgesOf(graph, 'p8339', 'next').length, 1);
});

test('formatRecordDot without saved sockets labels links by inode and finds the holder from the primary chain', async () => {
  const { host, socket, relay } = buildUnixAndShared('/run/relay.sock');
  const record = recordOf({ host, socket }, ['processes']);
  const graph = await parseDot(formatRecordDot(TOKEN, record));
  const unix = graph.edges.find((edge) => edge.attributes.label?.startsWith('unix'));
  assert.match(unix?.attributes.label ?? '', /^unix socket:\[\d+\]$/);
  assert.ok(graph.nodes.has(`p${relay}`));
  assert.equal(graph.nodes.get('p8339')?.penwidth, '3');
  assert.equal(edgesOf(graph, 'p8339', 'next').length, 1);
});

test('formatRecordDot without saved processes draws this host between the previous and next hosts', async () => {
  const record = recordOf(buildFigure7(), []);
  const graph = await parseDot(formatRecordDot(TOKEN, record));
  assert.deepEqual([...graph.nodes.keys()].sort(), ['host', 'next', 'upstream0']);
  assert.equal(graph.nodes.get('host')?.label, 'this host\\nprocesses not saved');
  assert.equal(edgesOf(graph, 'host', 'next').length, 1);
  assert.equal(edgesOf(graph, 'upstream0', 'host').length, 1);
  assert.equal(graph.clusters.size, 0);
});

test('formatRecordDot shows integrity problems in red in the title', async () => {
  const record = recordOf(buildFigure7());
  const graph = await parseDot(formatRecordDot(TOKEN, record, { problems: ['the record\'s bytes hash to 00, not to the token'] }));
  assert.match(graph.attributes.label ?? '', /\\nINTEGRITY FAILURE: the record's bytes hash to 00, not to the token$/);
  assert.equal(graph.attributes.fontcolor, '#c62828');
  assert.equal((await parseDot(formatRecordDot(TOKEN, record))).attributes.fontcolor, undefined);
});

test('formatRecordDot draws a pid that a link names but the record does not list', async () => {
  const record = recordOf(buildFigure7());
  const edited: EvidenceRecord = { ...record, links: [...(record.links ?? []), { kind: 'pipe', from: 4242, to: 8339, inodes: [77] }] };
  const graph = await parseDot(formatRecordDot(TOKEN, edited));
  assert.equal(graph.nodes.get('p4242')?.label, 'pid 4242\\nnot in this record');
  assert.equal(edgesOf(graph, 'p4242', 'p8339')[0]?.label, 'pipe:[77]');
});

const HOSTILE_NAMES = [
  'evil" color="red" label="pwned',
  '"]; "injected" -> "p1"; "x',
  'a\nb\r\tc\u001b[31mred',
  'back\\slash \\N \\G \\l \\E',
  '\u202eepyt\u2066x',
  'lone \ud800 surrogate',
  '}\ndigraph { x',
];

test('formatRecordDot escapes hostile process names, paths and host names so they stay one label', async () => {
  const fixture = buildFigure7();
  const base = recordOf(fixture, ALL_SAVE_CATEGORIES, { ...HOST, hostname: 'h"]; x [label="y' });
  const processes = base.processes ?? [];
  const edited: EvidenceRecord = {
    ...base,
    processes: processes.map((process, index) => ({ ...process, name: HOSTILE_NAMES[index] ?? process.name })),
  };
  const dot = formatRecordDot(TOKEN, edited);
  const graph = await parseDot(dot);
  // No node, edge or attribute was added: the same graph as with honest names.
  const honest = await parseDot(formatRecordDot(TOKEN, base));
  assert.deepEqual([...graph.nodes.keys()].sort(), [...honest.nodes.keys()].sort());
  assert.equal(graph.edges.length, honest.edges.length);
  for (const [name, attributes] of honest.nodes) {
    assert.deepEqual(Object.keys(graph.nodes.get(name) ?? {}).sort(), Object.keys(attributes).sort(), name);
  }
  assert.equal(graph.nodes.get('p8339')?.color, '#c62828');
  assert.equal(graph.nodes.get('p8338')?.color, undefined);
  // Each label holds the name made visible: escapes Graphviz reads as one backslash each.
  // (Graphviz reads `\"` as a quote: the label is the name itself.)
  assert.equal(graph.nodes.get('p8339')?.label, 'evil" color="red" label="pwned [8339]\\nalice (uid 1000)');
  assert.equal(graph.nodes.get('p8337')?.label, 'a\\\\nb\\\\r\\\\tc\\\\x1b[31mred [8337]\\nroot (uid 0)');
  assert.equal(graph.nodes.get('p8000')?.label, 'back\\\\\\\\slash \\\\\\\\N \\\\\\\\G \\\\\\\\l \\\\\\\\E [8000]\\nroot (uid 0)');
  assert.equal(graph.nodes.get('p1')?.label?.split('\\n')[0], '\\\\u{202e}epyt\\\\u{2066}x [1]');
  assert.ok(!dot.includes('\u001b') && !dot.includes('\u202e') && !/\p{Cs}/u.test(dot));
  // One line per statement: a newline in a name never reaches the DOT text.
  assert.ok(dot.split('\n').every((line) => line === '' || /^(?:\s*(?:"|graph |node |edge |subgraph |})|digraph )/.test(line)));
  assert.match(graph.attributes.label ?? '', /host h"\]; x \[label="y, /);
});

test('formatRecordDot escapes a hostile UNIX socket path', async () => {
  const { host, socket } = buildUnixAndShared('/tmp/x" dir=forward color="red\n');
  const graph = await parseDot(formatRecordDot(TOKEN, recordOf({ host, socket })));
  const unix = graph.edges.find((edge) => edge.attributes.label?.startsWith('unix'));
  assert.equal(unix?.attributes.label, 'unix /tmp/x" dir=forward color="red\\\\n');
  assert.equal(unix?.attributes.dir, 'none');
});

test('quoteDot escapes quotes, backslashes and control characters', () => {
  assert.equal(quoteDot('plain'), '"plain"');
  assert.equal(quoteDot('a"b'), '"a\\"b"');
  // A backslash shows as `\\` (as in the text view), so `a\\nb` is not confused with a newline.
  assert.equal(quoteDot('a\\b'), '"a\\\\\\\\b"');
  assert.equal(quoteDot('a\nb'), '"a\\\\nb"');
  assert.equal(quoteDot('\u0000\u007f\u0085'), '"\\\\x00\\\\x7f\\\\x85"');
  assert.equal(quoteDot('\u2028'), '"\\\\u{2028}"');
  assert.equal(quoteDot('é 中 😀'), '"é 中 😀"');
});

function traceView(overrides: Partial<TraceView> = {}): TraceView {
  const connection = (port: number): TraceView['upstream'][number]['connection'] => ({
    local: { address: THIS_HOST, port: 22 },
    remote: { address: PREVIOUS_HOST, port },
    communityId: null,
  });
  const base = {
    token: TOKEN,
    verdict: 'verified',
    problems: [],
    local: {
      type: 'SV_REC',
      sid: '92847523456',
      time: '2024-01-02T10:00:00.000Z',
      request: '968, 23 : SV_REC : 92847523456',
      requester: { address: NEXT_HOST, port: 40123 },
      connection: { local: { address: THIS_HOST, port: 968 }, remote: { address: NEXT_HOST, port: 23 }, communityId: null },
      user: 'alice',
      uid: 1000,
      processes: 5,
      record: true,
      processed: true,
      analysisProblems: [],
    },
    upstream: [
      {
        host: PREVIOUS_HOST,
        port: 113,
        request: '616,22:SV_REC:92847523456',
        connection: connection(616),
        direction: 'inbound',
        outcome: 'token',
        token: 'cd'.repeat(32),
        reply: `616,22:USERID:OTHER:${'cd'.repeat(32)}`,
        error: null,
        message: null,
        elapsedMs: 12,
        time: '2024-01-02T10:00:01.000Z',
      },
      {
        host: '192.0.2.7',
        port: 113,
        request: '617,22:SV_REC:92847523456',
        connection: connection(617),
        direction: 'unknown',
        outcome: 'refused',
        token: null,
        reply: null,
        error: null,
        message: 'connect ECONNREFUSED',
        elapsedMs: 12,
        time: '2024-01-02T10:00:01.000Z',
      },
      {
        host: '192.0.2.8',
        port: 113,
        request: '618,22:SV_REC:92847523456',
        connection: connection(618),
        direction: 'inbound',
        outcome: 'timeout',
        token: null,
        reply: null,
        error: null,
        message: 'no reply in 10 s',
        elapsedMs: 10000,
        time: '2024-01-02T10:00:11.000Z',
      },
    ],
    pending: 0,
  } satisfies TraceView;
  return { ...base, ...overrides };
}

test('formatTraceDot draws this host, the requester and every upstream host with its outcome', async () => {
  const graph = await parseDot(formatTraceDot(traceView()));
  assert.deepEqual([...graph.nodes.keys()].sort(), ['requester', 'this', 'upstream0', 'upstream1', 'upstream2']);
  assert.equal(
    graph.nodes.get('this')?.label,
    'this host\\ntoken abababababab…\\nSV_REC SID 92847523456\\n2024-01-02T10:00:00.000Z\\nalice (uid 1000)\\n5 processes (record saved)',
  );
  assert.equal(edgesOf(graph, 'this', 'requester')[0]?.label, `${THIS_HOST}:968 -> ${NEXT_HOST}:23`);
  assert.equal(
    graph.nodes.get('upstream0')?.label,
    `upstream host ${PREVIOUS_HOST}:113\\nasked 616,22:SV_REC:92847523456\\ntoken cdcdcdcdcdcd…`,
  );
  const token = edgesOf(graph, 'upstream0', 'this')[0];
  assert.equal(token?.label, `${PREVIOUS_HOST}:616 -> ${THIS_HOST}:22\\ninbound`);
  assert.equal(token?.style, 'solid');
  // Refused and timed-out hosts look different from answers and from each other.
  const refused = edgesOf(graph, 'upstream1', 'this')[0];
  const timeout = edgesOf(graph, 'upstream2', 'this')[0];
  assert.equal(refused?.style, 'dashed');
  assert.equal(timeout?.style, 'dotted');
  assert.notEqual(refused?.color, token?.color);
  assert.match(graph.nodes.get('upstream1')?.label ?? '', /refused: no STOP daemon$/);
  assert.match(graph.nodes.get('upstream2')?.label ?? '', /timeout: no answer in time$/);
  assert.equal(graph.nodes.get('upstream1')?.style, 'rounded,filled,dashed');
});

test('formatTraceDot shows pending hosts, an unknown token and integrity problems', async () => {
  const pending = await parseDot(formatTraceDot(traceView({ upstream: [], pending: 2 })));
  assert.equal(pending.nodes.get('pending')?.label, '2 upstream hosts\\nnot answered yet');
  assert.equal(edgesOf(pending, 'pending', 'this').length, 1);
  const unknown = await parseDot(
    formatTraceDot(traceView({ verdict: 'integrity-failure', local: null, upstream: [], problems: ['ledger line 3 "altered"\n'] })),
  );
  assert.deepEqual([...unknown.nodes.keys()], ['this']);
  assert.equal(unknown.nodes.get('this')?.label, 'this host\\ntoken abababababab…\\nnot in this store');
  assert.equal(unknown.nodes.get('this')?.penwidth, '3');
  assert.equal(unknown.attributes.label, 'trace of abababababab…: integrity-failure\\nproblem: ledger line 3 "altered"\\\\n');
});

test('formatTraceDot escapes hostile replies and messages from upstream hosts', async () => {
  const view = traceView();
  const [first] = view.upstream;
  assert.ok(first);
  const hostile = { ...first, outcome: 'user' as const, reply: '616,22:USERID:UNIX:"] ; x [color=red\n', token: null };
  const graph = await parseDot(formatTraceDot({ ...view, upstream: [hostile] }));
  assert.deepEqual([...graph.nodes.keys()].sort(), ['requester', 'this', 'upstream0']);
  assert.match(graph.nodes.get('upstream0')?.label ?? '', /\\nuser name: 616,22:USERID:UNIX:"\] ; x \[color=red\\\\n$/);
  assert.equal(graph.edges.length, 2);
});

test('formatRecordPicture and formatTracePicture give DOT as is or rendered SVG', async () => {
  const record = recordOf(buildFigure7());
  assert.equal(await formatRecordPicture(TOKEN, record, { format: 'dot' }), formatRecordDot(TOKEN, record));
  const svg = await formatRecordPicture(TOKEN, record, { format: 'svg' });
  assert.match(svg, /^<\?xml [^>]*\?>\n<!DOCTYPE svg /);
  assert.ok(svg.includes('<title>p8339</title>'));
  assert.ok(svg.endsWith('</svg>\n'));
  const traceSvg = await formatTracePicture(traceView(), { format: 'svg' });
  assert.ok(traceSvg.includes('<title>upstream0&#45;&gt;this</title>'));
  assert.equal(await formatTracePicture(traceView(), { format: 'dot' }), formatTraceDot(traceView()));
});

test('formatTraceDot keeps hostile upstream text inside its labels and styles the new outcomes', async () => {
  const evil = '\x1b]0;owned\x07\x9b31m';
  const base = hostileTraceView();
  const upstream = ['bad-token', 'wrong-ports', 'line-too-long', 'user'].map((outcome, i) => ({
    ...(base.upstream[0] as TraceView['upstream'][number]),
    request: `${4000 + i},22:SV_REC:7`,
    outcome: outcome as TraceView['upstream'][number]['outcome'],
    reply: `"];evil${i}[label="${evil}`,
    message: `"];evil${i}[label="${evil}`,
  }));
  const dot = formatTraceDot({ ...base, upstream });
  // eslint-disable-next-line no-control-regex -- matching control characters is the point
  assert.doesNotMatch(dot, /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/u);
  const graph = await parseDot(dot);
  assert.deepEqual([...graph.nodes.keys()].sort(), ['requester', 'this', 'upstream0', 'upstream1', 'upstream2', 'upstream3']);
  assert.match(graph.nodes.get('upstream0')?.label ?? '', /not a plain token, not kept/);
  assert.match(graph.nodes.get('upstream1')?.label ?? '', /reply for another port pair, not kept/);
  assert.match(graph.nodes.get('upstream2')?.label ?? '', /reply line too long, not read/);
  assert.match(graph.nodes.get('upstream3')?.label ?? '', /user name: "\];evil3\[label="\\\\x1b/);
  assert.equal(graph.nodes.get('upstream0')?.color, '#6a1b9a');
});

test('formatRecordDot puts the record problems into the title', async () => {
  const fixture = buildFigure7();
  fixture.host.closeFd(fixture.pids.telnet, fixture.socket.inode);
  const record = { ...recordOf(fixture), problems: [{ code: 'no-visible-holder', reason: 'other-pid-namespace', message: 'No process visible to stopd holds the queried socket' }] };
  const graph = await parseDot(formatRecordDot(TOKEN, record));
  assert.match(graph.attributes.label ?? '', /PROBLEM: No process visible to stopd holds the queried socket \(no-visible-holder: other-pid-namespace\)/);
});

test('formatRecordDot draws a pipe shared by many workers as one node with an edge per holder', async () => {
  const fixture = buildSharedPipe(30);
  const record = recordOf(fixture);
  assert.equal(record.channels?.length, 1);
  const graph = await parseDot(formatRecordDot(TOKEN, record));
  const node = graph.nodes.get('channel0');
  assert.ok(node, 'the channel is a node');
  assert.equal(node.shape, 'hexagon');
  assert.match(node.label ?? '', new RegExp(`pipe:\\[${fixture.pipe}\\]\\\\n30 writers, 30 readers`));
  assert.equal(edgesOf(graph, 'p100', 'channel0').length, 1);
  assert.equal(edgesOf(graph, 'channel0', 'p129').length, 1);
  const pipeEdges = graph.edges.filter((edge) => edge.tail === 'channel0' || edge.head === 'channel0');
  assert.equal(pipeEdges.length, 60, 'linear: 30 in, 30 out, not 30 x 29 pairs');
});
