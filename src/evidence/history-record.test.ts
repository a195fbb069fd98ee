import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { HistoryConnection } from './history-entry.js';
import { AUDIT_UNSET, buildHistoryRecord, toUpstreamCandidates } from './history-record.js';
import { formatRecordBytes } from './record.js';
import { parseRecord } from './record-reader.js';

const connection: HistoryConnection = {
  seq: 12,
  socket: 'ffff888012345678',
  netns: 4026531840,
  local: { address: '198.51.100.2', port: 40000 },
  remote: { address: '192.0.2.30', port: 22 },
  connectedAt: '2026-12-06T10:00:00.000Z',
  establishedAt: '2026-12-06T10:00:00.001Z',
  closedAt: null,
  tid: 77,
  pid: 77,
  uid: 1000,
  gid: 1000,
  loginuid: AUDIT_UNSET,
  sessionid: AUDIT_UNSET,
  comm: 'curl',
  capturedAt: null,
  ancestry: [],
  upstream: [],
};
const host = { hostname: 'h2', bootTime: '2026-12-06T00:00:00.000Z', kernel: '6.1', os: null };

test('buildHistoryRecord of a process that exited before capture says so, and parses as a record', () => {
  const record = buildHistoryRecord({
    connection,
    request: { line: '40000,22:SV', requester: { address: '192.0.2.30', port: 50000 } },
    userName: (uid) => (uid === 1000 ? 'alice' : null),
    host,
    utmp: [],
    save: ['processes', 'cmdline', 'sockets', 'pipes', 'utmp', 'host'],
    type: 'SV',
  });
  assert.equal(record.source, 'history');
  assert.equal(record.connection.state, 'ESTABLISHED');
  assert.equal(record.connection.user, 'alice');
  assert.equal(record.history?.loginUser, null);
  assert.deepEqual(record.processes, []);
  assert.deepEqual(record.problems?.map((problem) => problem.code), ['not-captured']);
  assert.deepEqual(record.saved, ['processes', 'cmdline', 'utmp', 'host']);
  assert.deepEqual(parseRecord(formatRecordBytes(record)), JSON.parse(formatRecordBytes(record).toString()));
});

test('buildHistoryRecord keeps no process list when processes are not saved', () => {
  const record = buildHistoryRecord({
    connection,
    request: { line: '40000,22:SV', requester: { address: '192.0.2.30', port: 50000 } },
    userName: () => null,
    host,
    utmp: [],
    save: [],
    type: 'SV',
  });
  assert.equal(record.processes, undefined);
  assert.equal(record.host, undefined);
  assert.deepEqual(record.saved, []);
});

test('toUpstreamCandidates joins the holders of one inbound connection', () => {
  const local = { address: '198.51.100.2', port: 22 };
  assert.deepEqual(
    toUpstreamCandidates([
      { local, remote: { address: '192.0.2.10', port: 1 }, pid: 5 },
      { local, remote: { address: '192.0.2.10', port: 1 }, pid: 6 },
      { local, remote: { address: '192.0.2.11', port: 1 }, pid: 5 },
    ]).map((candidate) => [candidate.remote.address, candidate.pids]),
    [
      ['192.0.2.10', [5, 6]],
      ['192.0.2.11', [5]],
    ],
  );
});
