import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ALL_SAVE_CATEGORIES, buildRecord, type EvidenceRecord, type SaveCategory } from '../evidence/record.js';
import type { HostFacts } from '../host/types.js';
import { resolveClosure } from '../trace/index.js';
import { FIGURE_11_PIPES, NEXT_HOST, buildFigure11, buildFigure7, buildFigure9, buildSharedPipe, type FigureFixture } from '../trace/figures.js';
import {
  describeRecordJson,
  describeUnreadableRecordJson,
  formatRecordText,
  formatUnreadableRecordText,
} from './format-record.js';

const TOKEN = 'ab'.repeat(32);
const HOST: HostFacts = { hostname: 'h2.example', bootTime: '2024-01-01T00:00:00.000Z', kernel: '6.1.0-test', os: 'Debian GNU/Linux 12' };

function recordOf(fixture: Pick<FigureFixture<string>, 'host' | 'socket'>, save: readonly SaveCategory[] = ALL_SAVE_CATEGORIES): EvidenceRecord {
  const closure = resolveClosure(fixture.host, { socket: fixture.socket });
  const { local, remote } = fixture.socket;
  return buildRecord({
    closure,
    request: { line: `${local.port}, ${remote.port} : SV_REC : 92847523456`, requester: { address: NEXT_HOST, port: 40123 } },
    userName: (uid) => (uid === 0 ? 'root' : uid === 1000 ? 'alice' : null),
    host: HOST,
    utmp: [{ type: 'USER_PROCESS', pid: 8337, line: 'pts/1', user: 'alice', host: '192.0.2.1', time: '2024-01-02T03:04:05.000Z', address: '192.0.2.1' }],
    denied: [],
    save,
    type: 'SV_REC',
    sid: '92847523456',
    now: new Date('2024-01-02T10:00:00Z'),
  });
}

/** The process header lines (`N: name [pid] parent: ppid`) under one section heading. */
function section(text: string, heading: string): string[] {
  const lines = text.split('\n');
  const start = lines.indexOf(heading);
  if (start < 0) return [];
  const headers: string[] = [];
  for (const line of lines.slice(start + 1)) {
    if (/^\d+: /.test(line)) headers.push(line);
    else if (!line.startsWith(' ')) break;
  }
  return headers;
}

/** The indented lines that follow the header of process `pid`, up to the next process. */
function detailOf(text: string, pid: number): string[] {
  const lines = text.split('\n');
  const start = lines.findIndex((line) => new RegExp(`^\\d+: .* \\[${pid}\\] parent: `).test(line));
  assert.ok(start >= 0, `process ${pid} is listed`);
  const detail: string[] = [];
  for (const line of lines.slice(start + 1)) {
    if (!line.startsWith(' ')) break;
    detail.push(line.trim());
  }
  return detail;
}

test('formatRecordText figure 7 lists telnet, csh, sshd, sshd and init as primary with their sockets', () => {
  const text = formatRecordText(TOKEN, recordOf(buildFigure7()), { verified: true });
  assert.deepEqual(section(text, 'Primary Processes'), [
    '1: telnet [8339] parent: 8338',
    '2: csh [8338] parent: 8337',
    '3: sshd [8337] parent: 8000',
    '4: sshd [8000] parent: 1',
    '5: init [1] parent: 0',
  ]);
  assert.ok(!text.includes('Resolved Processes'));
  assert.deepEqual(detailOf(text, 8339).slice(-2), ['Sockets:', 'INET_TCP: 198.51.100.2:968 -> 203.0.113.3:23  (queried)']);
  assert.deepEqual(detailOf(text, 8337).slice(-2), ['Sockets:', 'INET_TCP: 198.51.100.2:22 <- 192.0.2.1:616']);
  assert.deepEqual(detailOf(text, 8000).slice(-2), ['Sockets:', 'INET_TCP: 0.0.0.0:22 <- any:0']);
  assert.ok(!detailOf(text, 8338).includes('Sockets:'));
  assert.ok(detailOf(text, 8339).includes('user: alice (uid 1000)  tty: /dev/pts/1  started: 2024-01-01T00:00:00.000Z'));
  assert.ok(detailOf(text, 8339).includes(`command: telnet ${NEXT_HOST}`));
  assert.ok(detailOf(text, 8337).includes('command: "sshd: alice [priv]"'));
});

test('formatRecordText shows each problem before the processes, escaped, and redeem JSON carries them', () => {
  const record = { ...recordOf(buildFigure7()), problems: [{ code: 'no-visible-holder', message: 'No process holds it\u001b[2J.' }] };
  const text = formatRecordText(TOKEN, record, { verified: true });
  const line = text.split('\n').findIndex((each) => each.startsWith('PROBLEM     '));
  assert.ok(line > 0 && line < text.split('\n').indexOf('Primary Processes'), text);
  assert.ok(!text.includes('\u001b'), 'the escape character is shown escaped');
  assert.ok(text.includes('(no-visible-holder)'));
  assert.deepEqual(describeRecordJson(TOKEN, record, { verified: true, actualHash: TOKEN }).analysisProblems, record.problems);
  const { problems, ...older } = record;
  assert.equal(problems.length, 1);
  assert.deepEqual(describeRecordJson(TOKEN, older, { verified: true, actualHash: TOKEN }).analysisProblems, []);
  assert.ok(!formatRecordText(TOKEN, older, { verified: true }).includes('PROBLEM'));
});

test('formatRecordText shows the reason of a problem and says an empty holder list is what stopd could see', () => {
  const fixture = buildFigure7();
  fixture.host.closeFd(fixture.pids.telnet, fixture.socket.inode);
  const problem = { code: 'no-visible-holder', reason: 'other-pid-namespace', message: 'No process visible to stopd holds the queried socket' };
  const record = { ...recordOf(fixture), problems: [problem] };
  const lines = formatRecordText(TOKEN, record, { verified: true }).split('\n');
  assert.ok(lines.includes('PROBLEM     No process visible to stopd holds the queried socket (no-visible-holder: other-pid-namespace)'), lines.join('\n'));
  assert.equal(lines[lines.indexOf('Primary Processes') + 1], '  (none visible to stopd: see PROBLEM above)');
  const { problems, ...older } = record;
  assert.equal(problems.length, 1);
  const olderLines = formatRecordText(TOKEN, older, { verified: true }).split('\n');
  assert.equal(olderLines[olderLines.indexOf('Primary Processes') + 1], '  (none: no process held the socket when it was scanned)');
});

test('formatRecordText figure 7 header names the token, request, type, connection and host', () => {
  const text = formatRecordText(TOKEN, recordOf(buildFigure7()), { verified: true });
  const lines = text.split('\n');
  assert.deepEqual(lines.slice(0, 7), [
    `Token       ${TOKEN}`,
    'Time        2024-01-02T10:00:00.000Z',
    `Request     "968, 23 : SV_REC : 92847523456" from ${NEXT_HOST}:40123`,
    'Type        SV_REC, SID 92847523456',
    `Connection  198.51.100.2:968 -> ${NEXT_HOST}:23 (ESTABLISHED, socket:[${recordOf(buildFigure7()).connection.inode}], owner alice (uid 1000))`,
    'Host        h2.example (Debian GNU/Linux 12), kernel 6.1.0-test, booted 2024-01-01T00:00:00.000Z',
    'Saved       processes, cmdline, sockets, pipes, utmp, host',
  ]);
  assert.ok(text.includes('Upstream candidates:\n  198.51.100.2:22 <- 192.0.2.1:616  (inbound; socket:['));
  assert.ok(text.includes('Logins (utmp):\n  alice pts/1 from 192.0.2.1 at 2024-01-02T03:04:05.000Z (USER_PROCESS, pid 8337)'));
  assert.ok(text.endsWith('Integrity: record matches its token\n'));
});

test('formatRecordText figure 9 lists the resolved processes after the primary ones, numbered on', () => {
  const fixture = buildFigure9();
  const record = recordOf(fixture);
  const text = formatRecordText(TOKEN, record, { verified: true });
  const primary = section(text, 'Primary Processes');
  const resolved = section(text, 'Resolved Processes');
  assert.deepEqual(primary, ['1: resolve [3004] parent: 3003', '2: resolve [3003] parent: 1', '3: init [1] parent: 0']);
  const expectedResolved = record.processes?.filter((process) => process.role === 'resolved') ?? [];
  assert.equal(expectedResolved.length, 10);
  assert.deepEqual(
    resolved,
    expectedResolved.map((process, index) => `${index + 4}: resolve [${process.pid}] parent: ${process.ppid}`),
  );
  // P4 reads the pipe that P8 and P12 write (paper fig. 10, E07F2600 -> E08CA780).
  const p4Pipe = detailOf(text, fixture.pids.P4).find((line) => line.startsWith('pipe:['));
  assert.match(p4Pipe ?? '', /^pipe:\[\d+\] read <- pids 3008,3012$/);
  assert.ok(detailOf(text, fixture.pids.P2).includes('INET_TCP: 127.0.0.1:32145 -> 127.0.0.1:8012  (peer pids 3005)'));
  assert.ok(detailOf(text, fixture.pids.P5).includes('INET_TCP: 127.0.0.1:8012 <- any:0'));
  assert.ok(detailOf(text, fixture.pids.P1).includes('INET_TCP: 198.51.100.2:8010 <- 192.0.2.1:1874'));
});

test('formatRecordText figure 11 shows both pipes of the shell with their directions', () => {
  const fixture = buildFigure11();
  const text = formatRecordText(TOKEN, recordOf(fixture), { verified: true });
  assert.deepEqual(detailOf(text, fixture.pids.sh).slice(-3), [
    'Pipes:',
    `pipe:[${FIGURE_11_PIPES.telnetToShell}] read <- pids ${fixture.pids.telnetIn}`,
    `pipe:[${FIGURE_11_PIPES.shellToTelnet}] write -> pids ${fixture.pids.telnetOut}`,
  ]);
  assert.ok(detailOf(text, fixture.pids.server).includes('INET_TCP: 0.0.0.0:80 <- any:0'));
  assert.ok(text.includes('Upstream candidates: none'));
});

test('formatRecordText shows unknown directions, IPv6, UNIX and other sockets, and both-ends pipes', () => {
  const record = recordOf(buildFigure7());
  const [first, ...rest] = record.processes ?? [];
  assert.ok(first);
  const edited: EvidenceRecord = {
    ...record,
    processes: [
      {
        ...first,
        sockets: [
          {
            kind: 'tcp',
            fd: 3,
            inode: 11,
            state: 'CLOSE_WAIT',
            local: { address: '2001:db8::2', port: 1885 },
            remote: { address: '2001:db8::1', port: 8000 },
            direction: 'unknown',
            queried: false,
            peerPids: [],
            sharedWith: [9],
          },
          { kind: 'unix', fd: 4, inode: 12, path: '/run/app.sock', type: 'stream', peer: 13, peerPids: [10, 11], sharedWith: [] },
          { kind: 'unix', fd: 5, inode: 14, path: null, type: 'dgram', peer: 0, peerPids: [], sharedWith: [] },
          { kind: 'other', fd: 6, inode: 15 },
        ],
        pipes: [{ fd: 7, inode: 16, end: 'both', otherPids: [] }],
      },
      ...rest,
    ],
  };
  assert.deepEqual(detailOf(formatRecordText(TOKEN, edited, { verified: true }), first.pid).slice(-7), [
    'Sockets:',
    'INET6_TCP: [2001:db8::2]:1885 <> [2001:db8::1]:8000  (CLOSE_WAIT; shared with 9)',
    'UNIX: /run/app.sock socket:[12] -> peer socket:[13] (pids 10,11)',
    'UNIX dgram: (unbound) socket:[14] -> no peer',
    'OTHER: socket:[15] (not a TCP or UNIX socket, or closed meanwhile)',
    'Pipes:',
    'pipe:[16] read/write <> no other process in this record',
  ]);
});

test('formatRecordText reports an integrity failure on the last line', () => {
  const text = formatRecordText(TOKEN, recordOf(buildFigure7()), { verified: false, actualHash: 'cd'.repeat(32) });
  const last = text.trimEnd().split('\n').at(-1);
  assert.equal(
    last,
    `INTEGRITY FAILURE: the record does not match its token (its hash is ${'cd'.repeat(32)}); it was altered after it was saved`,
  );
  assert.ok(!text.includes('Integrity: record matches'));
});

test('formatRecordText escapes control characters from the host', () => {
  const record = recordOf(buildFigure7());
  const [first, ...rest] = record.processes ?? [];
  assert.ok(first);
  const hostile: EvidenceRecord = {
    ...record,
    request: { ...record.request, line: '1,2\u001b[2J"' },
    processes: [{ ...first, name: 'evil\u001b]0;owned\u0007\u202e', cmdline: ['sh', '-c', 'a\nb\\c'] }, ...rest],
  };
  const text = formatRecordText(TOKEN, hostile, { verified: true });
  // eslint-disable-next-line no-control-regex -- looking for raw control characters is the point
  assert.ok(!/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202e]/u.test(text), 'no raw control characters');
  assert.ok(text.includes('Request     "1,2\\x1b[2J\\"" from'));
  assert.ok(text.includes('1: evil\\x1b]0;owned\\x07\\u{202e} [8339] parent: 8338'));
  assert.ok(text.includes('command: sh -c "a\\nb\\\\c"'));
});

test('formatRecordText says what was not saved and notes missing data', () => {
  const minimal: EvidenceRecord = { ...recordOf(buildFigure7(), []), vanished: [77], denied: [88, 89], truncated: true };
  const text = formatRecordText(TOKEN, minimal, { verified: true });
  assert.ok(text.includes('Host        not saved'));
  assert.ok(text.includes('Saved       the minimum (request, connection, upstream)'));
  assert.ok(text.includes('\nProcesses: not saved\n'));
  assert.ok(text.includes('Note: pids 77 exited during the analysis'));
  assert.ok(text.includes('Note: the descriptors of pids 88,89 could not be read'));
  assert.ok(text.includes('Note: the analysis stopped at the process limit'));
  assert.ok(!text.includes('Logins (utmp)'));

  const noCommands = formatRecordText(TOKEN, recordOf(buildFigure7(), ['processes', 'sockets']), { verified: true });
  assert.ok(!noCommands.includes('command:'));
  assert.ok(noCommands.includes('INET_TCP: 198.51.100.2:968 -> 203.0.113.3:23  (queried)'));
});

test('describeRecordJson has every field of the DESIGN contract', () => {
  const fixture = buildFigure9();
  const record = recordOf(fixture);
  const json = describeRecordJson(TOKEN, record, { verified: true, actualHash: TOKEN });
  const parsed = JSON.parse(JSON.stringify(json)) as Record<string, unknown>;
  const designKeys = ['token', 'verdict', 'type', 'time', 'request', 'connection', 'host', 'processes'];
  const recordKeys = ['links', 'upstream', 'vanished', 'denied', 'truncated', 'utmp', 'saved', 'sid'];
  for (const key of [...designKeys, ...recordKeys]) {
    assert.ok(key in parsed, `${key} is present`);
  }
  assert.equal(json.token, TOKEN);
  assert.equal(json.verdict, 'verified');
  assert.equal(json.hash, 'sha256');
  assert.equal(json.type, 'SV_REC');
  assert.equal(json.sid, '92847523456');
  assert.equal(json.time, '2024-01-02T10:00:00.000Z');
  assert.deepEqual(json.request, { line: '8526, 9010 : SV_REC : 92847523456', requester: { address: NEXT_HOST, port: 40123 }, clientIp: null });
  assert.deepEqual(json.connection.local, { address: '198.51.100.2', port: 8526 });
  assert.deepEqual(json.connection.remote, { address: NEXT_HOST, port: 9010 });
  assert.deepEqual(json.host && { hostname: json.host.hostname, bootTime: json.host.bootTime, kernel: json.host.kernel }, {
    hostname: 'h2.example',
    bootTime: '2024-01-01T00:00:00.000Z',
    kernel: '6.1.0-test',
  });
  assert.equal(json.processes.length, 13);
  const p4 = json.processes[0];
  assert.ok(p4);
  for (const key of ['pid', 'ppid', 'name', 'uid', 'startTime', 'tty', 'priority', 'nice', 'role', 'sockets', 'pipes']) {
    assert.ok(key in p4, `process.${key} is present`);
  }
  assert.equal(p4.pid, fixture.pids.P4);
  assert.deepEqual(p4.uid, { real: 1000, effective: 1000 });
  assert.equal(p4.role, 'primary');
  assert.equal(p4.sockets.length, 1);
  assert.equal(p4.pipes.length, 1);
  assert.deepEqual(
    json.processes.map((process) => process.role),
    [...Array<string>(3).fill('primary'), ...Array<string>(10).fill('resolved')],
  );
  assert.ok(!('salt' in parsed));
});

test('describeRecordJson marks an unverified record and fills categories not saved', () => {
  const json = describeRecordJson(TOKEN, recordOf(buildFigure7(), ['processes']), { verified: false, actualHash: 'cd'.repeat(32) });
  assert.equal(json.verdict, 'integrity-failure');
  assert.equal(json.actualHash, 'cd'.repeat(32));
  assert.equal(json.host, null);
  assert.equal(json.utmp, null);
  assert.equal(json.processes[0]?.cmdline, null);
  assert.deepEqual(json.processes[0]?.sockets, []);
  assert.deepEqual(json.saved, ['processes']);
  const bare = describeRecordJson('ef'.repeat(20), recordOf(buildFigure7(), []), { verified: true, actualHash: 'ef'.repeat(20) });
  assert.deepEqual(bare.processes, []);
  assert.deepEqual(bare.links, []);
  assert.equal(bare.hash, 'sha1');
});

test('formatUnreadableRecordText and describeUnreadableRecordJson report an integrity failure', () => {
  const options = { parseError: 'Cannot read evidence record: it is not UTF-8 JSON', verified: false, actualHash: 'cd'.repeat(32) };
  assert.equal(
    formatUnreadableRecordText(TOKEN, options),
    `Token       ${TOKEN}\nINTEGRITY FAILURE: the record file is not a readable record (Cannot read evidence record: it is not UTF-8 JSON); its hash is ${'cd'.repeat(32)}, not the token\n`,
  );
  assert.deepEqual(describeUnreadableRecordJson(TOKEN, options), {
    token: TOKEN,
    verdict: 'integrity-failure',
    hash: 'sha256',
    actualHash: 'cd'.repeat(32),
    error: 'Cannot read evidence record: it is not UTF-8 JSON',
  });
});

test('formatRecordText shows a shared pipe once, cut pid lists with their counts, cut command lines and omitted descriptors', () => {
  const fixture = buildSharedPipe(40);
  const base = recordOf(fixture);
  const [first, ...rest] = base.processes ?? [];
  assert.ok(first !== undefined);
  const record: EvidenceRecord = {
    ...base,
    processes: [{ ...first, cmdlineTruncated: { bytes: 1_048_576, sha256: 'cd'.repeat(32) }, fdsOmitted: 18_999 }, ...rest],
  };
  const text = formatRecordText(TOKEN, record, { verified: true });
  const channel = text.split('\n').find((line) => line.startsWith(`  pipe:[${fixture.pipe}]`));
  assert.ok(channel, text);
  assert.match(channel, /written by 40 processes \(100,101,.*,119 and 20 more\) -> read by 40 processes/);
  const worker = detailOf(text, 105);
  assert.ok(worker.some((line) => line.includes(`pipe:[${fixture.pipe}]`) && line.includes('and 31 more')), worker.join('\n'));
  const holder = detailOf(text, first.pid);
  assert.ok(holder.includes(`command cut: its first bytes of 1048576; SHA-256 of the whole ${'cd'.repeat(32)}`), holder.join('\n'));
  assert.ok(holder.includes('18999 more sockets and pipes not examined (analysis limit): missing below'));
  const json = describeRecordJson(TOKEN, record, { verified: true, actualHash: TOKEN });
  assert.equal(json.channels.length, 1);
  assert.equal(json.channels[0]?.from.length, 40);
  assert.equal(json.processes[0]?.fdsOmitted, 18_999);
  assert.deepEqual(json.processes[0]?.cmdlineTruncated, { bytes: 1_048_576, sha256: 'cd'.repeat(32) });
  assert.deepEqual(describeRecordJson(TOKEN, { ...record, channels: undefined } as never, { verified: true, actualHash: TOKEN }).channels, []);
});
