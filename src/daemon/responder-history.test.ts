import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { FakeHost } from '../host/fake-host.js';
import type { Endpoint, ProcessFacts } from '../host/types.js';
import { AccountDirectory } from '../host/users.js';
import type { HistoryConnection, HistoryLookup } from '../evidence/history-entry.js';
import { Ledger, readLedger } from '../evidence/ledger.js';
import { formatRecordBytes } from '../evidence/record.js';
import { parseRecord, readRecord } from '../evidence/record-reader.js';
import { hashToken } from '../evidence/tokens.js';
import { parseReply, type RecursiveRequestType } from '../protocol/index.js';
import type { UpstreamCandidate } from '../trace/index.js';
import { EvidenceCollector, type AnalysisRunner } from './evidence-collector.js';
import { LoopTable } from './loop-table.js';
import type { ReplyPolicy } from './policy.js';
import { Responder, type QueryOrigin } from './responder.js';
import { Semaphore } from './semaphore.js';
import type { UpstreamDispatcher } from './upstream.js';

const dir = mkdtempSync(join(tmpdir(), 'stopd-responder-history-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const silent = { info: () => undefined, warn: () => undefined, error: () => undefined };
const passwd = join(dir, 'passwd');
writeFileSync(passwd, 'root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\nbob:x:1001:1001::/home/bob:/bin/sh\n');

/** The history journal's lookup, in memory: the newest entry of a tuple wins, as the journal's. */
class MemoryHistory implements HistoryLookup {
  readonly entries: HistoryConnection[] = [];
  add(entry: Partial<HistoryConnection> & Pick<HistoryConnection, 'local' | 'remote'>): HistoryConnection {
    const full: HistoryConnection = {
      seq: this.entries.length + 1,
      socket: 'ffff8880aa00',
      netns: 4026531840,
      connectedAt: '2026-12-06T10:00:00.000Z',
      establishedAt: '2026-12-06T10:00:00.010Z',
      closedAt: '2026-12-06T10:00:05.000Z',
      tid: 4242,
      pid: 4242,
      uid: 1000,
      gid: 1000,
      loginuid: 1000,
      sessionid: 7,
      comm: 'ssh',
      capturedAt: '2026-12-06T10:00:00.020Z',
      ancestry: [process(4242, 4200, 'ssh', ['ssh', 'h3.example']), process(4200, 4199, 'bash', ['-bash'], 4200)],
      upstream: [],
      ...entry,
    };
    this.entries.push(full);
    return full;
  }
  findConnection(local: Endpoint, remote: Endpoint): HistoryConnection | undefined {
    const same = (a: Endpoint, b: Endpoint): boolean => a.address === b.address && a.port === b.port;
    return this.entries.filter((entry) => same(entry.local, local) && same(entry.remote, remote)).at(-1);
  }
}

function process(pid: number, ppid: number, name: string, cmdline: string[], sid = 4200): ProcessFacts {
  return {
    pid,
    ppid,
    name,
    uid: { real: 1000, effective: 1000 },
    startTime: '2026-12-06T09:59:00.000Z',
    tty: '/dev/pts/1',
    priority: 20,
    nice: 0,
    pgid: pid,
    sid,
    cmdline,
  };
}

/** An analysis runner for tests that must not reach /proc: a history answer never analyses. */
const noAnalyses: AnalysisRunner = {
  prepare: () => Promise.reject(new Error('no live analysis expected')),
  summarise: () => Promise.reject(new Error('no live analysis expected')),
  capture: () => Promise.reject(new Error('no capture expected')),
  close: () => Promise.resolve(),
};

const LOCAL = '198.51.100.2';
const IDS = '203.0.113.9';
const H3 = '192.0.2.30';

async function makeResponder(
  name: string,
  options: { host?: FakeHost; history?: HistoryLookup; policy?: Partial<ReplyPolicy>; dispatched?: UpstreamCandidate[][] } = {},
) {
  const storeDir = join(dir, name);
  mkdirSync(join(storeDir, 'records'), { recursive: true });
  const ledgerPath = join(storeDir, 'ledger');
  const ledger = await Ledger.open(ledgerPath);
  const accounts = new AccountDirectory(passwd);
  const upstream = {
    dispatch: (_token: string, _request: { type: RecursiveRequestType; sid: bigint }, candidates: readonly UpstreamCandidate[]) => {
      options.dispatched?.push([...candidates]);
    },
  } as unknown as UpstreamDispatcher;
  const responder = new Responder({
    sockets: options.host ?? new FakeHost(),
    ledger,
    accounts,
    lookups: new Semaphore(4, { maxWaiting: 16 }),
    policy: { randomErrors: false, unknownError: false, ...options.policy },
    optIn: false,
    tokenHash: 'sha256',
    evidence: new EvidenceCollector({
      analyses: noAnalyses,
      recordsDir: join(storeDir, 'records'),
      save: ['processes', 'cmdline', 'sockets', 'pipes', 'host'],
      tokenHash: 'sha256',
      accounts,
    }),
    analyses: new Semaphore(1, { maxWaiting: 4 }),
    loops: new LoopTable({ windowMs: 120_000, maxWorkPerSid: 64 }),
    upstream,
    ...(options.history === undefined ? {} : { history: options.history }),
    log: silent,
  });
  const entries = async (): Promise<Record<string, unknown>[]> => {
    const out: Record<string, unknown>[] = [];
    for await (const line of readLedger(ledgerPath)) if (line.entry !== undefined) out.push(line.entry);
    return out;
  };
  return { responder, ledger, entries, recordsDir: join(storeDir, 'records') };
}

function origin(address = H3): QueryOrigin {
  return { requester: { address, port: 50000 }, requesterGroup: address, local: { address: LOCAL, port: 113 } };
}

function tokenOf(line: string | undefined): string {
  const reply = parseReply(line ?? '');
  assert.equal(reply.kind, 'token', `expected a token reply, got ${line}`);
  return reply.kind === 'token' ? reply.token : '';
}

test('Responder answers ID about a closed connection from history, and the token points to the journal entry', async () => {
  const history = new MemoryHistory();
  const entry = history.add({ local: { address: LOCAL, port: 40001 }, remote: { address: H3, port: 22 } });
  const { responder, ledger, entries } = await makeResponder('id', { history });
  const token = tokenOf(await responder.answer('40001 , 22', origin()));
  await ledger.close();
  const reply = (await entries()).find((e) => e.token === token);
  assert.equal(reply?.source, 'history');
  assert.equal(reply?.history, entry.seq);
  assert.equal(reply?.finding, 'outbound');
  assert.equal(reply?.uid, 1000);
  assert.equal(reply?.user, 'alice');
  assert.equal(reply?.comm, 'ssh');
  assert.equal(reply?.pid, 4242);
});

test('Responder without history still answers NO-USER for a connection that is gone', async () => {
  const { responder, ledger } = await makeResponder('no-history');
  assert.equal(await responder.answer('40001 , 22', origin()), '40001,22:ERROR:NO-USER');
  await ledger.close();
});

test('Responder answers NO-USER when the history holds only a connect that never got established', async () => {
  const history = new MemoryHistory();
  history.add({ local: { address: LOCAL, port: 40002 }, remote: { address: H3, port: 22 }, establishedAt: null });
  const { responder, ledger } = await makeResponder('failed-connect', { history });
  assert.equal(await responder.answer('40002 , 22', origin()), '40002,22:ERROR:NO-USER');
  await ledger.close();
});

test('Responder gives a CL_IP request about an unknown connection a token even with history', async () => {
  const history = new MemoryHistory();
  const { responder, ledger, entries } = await makeResponder('clip-unknown', { history });
  const token = tokenOf(await responder.answer(`40003,22:SV:${H3}`, origin(IDS)));
  await ledger.close();
  const reply = (await entries()).find((e) => e.token === token);
  assert.equal(reply?.finding, 'not-found');
  assert.equal(reply?.reason, 'cl-ip');
  assert.equal(reply?.record, undefined);
});

test('Responder saves an SV record from history that says source history, names the process, and hashes to its token', async () => {
  const history = new MemoryHistory();
  history.add({ local: { address: LOCAL, port: 40004 }, remote: { address: H3, port: 22 } });
  const { responder, ledger, entries, recordsDir } = await makeResponder('sv', { history });
  const token = tokenOf(await responder.answer(`40004,22:SV:${H3}`, origin(IDS)));
  await ledger.close();
  const stored = await readRecord(recordsDir, token);
  assert.equal(stored?.verified, true);
  const record = stored?.record;
  assert.equal(record?.source, 'history');
  assert.equal(record?.history?.closedAt, '2026-12-06T10:00:05.000Z');
  assert.equal(record?.history?.capturedAt, '2026-12-06T10:00:00.020Z');
  assert.equal(record?.history?.loginUser, 'alice');
  assert.equal(record?.connection.state, 'CLOSE');
  assert.deepEqual(record?.processes?.[0]?.cmdline, ['ssh', 'h3.example']);
  assert.equal(record?.processes?.[0]?.user, 'alice');
  assert.deepEqual(record?.links, [{ kind: 'parent', from: 4200, to: 4242, inodes: [] }]);
  // No descriptors are kept in history: the record does not claim to have saved them.
  assert.deepEqual(record?.saved, ['processes', 'cmdline', 'host']);
  assert.equal(hashToken(formatRecordBytes(parseRecord(stored?.bytes ?? Buffer.alloc(0))), 'sha256'), token);
  const reply = (await entries()).find((e) => e.token === token);
  assert.equal(reply?.record, token);
  assert.equal(reply?.source, 'history');
});

test('Responder recurses SV_REC and ID_REC from history to the stored upstream candidates', async () => {
  const history = new MemoryHistory();
  const upstream = [
    { local: { address: LOCAL, port: 22 }, remote: { address: '192.0.2.10', port: 51000 }, pid: 4200 },
    { local: { address: LOCAL, port: 22 }, remote: { address: '192.0.2.10', port: 51000 }, pid: 4199 },
  ];
  history.add({ local: { address: LOCAL, port: 40005 }, remote: { address: H3, port: 22 }, upstream });
  const dispatched: UpstreamCandidate[][] = [];
  const { responder, ledger, entries } = await makeResponder('rec', { history, dispatched });
  const svToken = tokenOf(await responder.answer(`40005,22:SV_REC:77:${H3}`, origin(IDS)));
  const idToken = tokenOf(await responder.answer(`40005,22:ID_REC:78:${H3}`, origin(IDS)));
  await ledger.close();
  assert.equal(dispatched.length, 2);
  for (const candidates of dispatched) {
    assert.deepEqual(candidates, [
      {
        local: { address: LOCAL, port: 22 },
        remote: { address: '192.0.2.10', port: 51000 },
        inode: 0,
        state: 'ESTABLISHED',
        direction: 'inbound',
        pids: [4200, 4199],
      },
    ]);
  }
  const all = await entries();
  assert.equal(all.find((e) => e.token === svToken)?.upstream, 1);
  assert.equal(all.find((e) => e.token === idToken)?.upstream, 1);
  assert.equal(all.find((e) => e.token === idToken)?.record, undefined);
});

test('Responder does not process a repeated SV_REC answered from history (loop control unchanged)', async () => {
  const history = new MemoryHistory();
  history.add({
    local: { address: LOCAL, port: 40006 },
    remote: { address: H3, port: 22 },
    upstream: [{ local: { address: LOCAL, port: 22 }, remote: { address: '192.0.2.10', port: 51001 }, pid: 4200 }],
  });
  const dispatched: UpstreamCandidate[][] = [];
  const { responder, ledger, entries } = await makeResponder('loop', { history, dispatched });
  tokenOf(await responder.answer(`40006,22:SV_REC:99:${H3}`, origin(IDS)));
  const repeat = tokenOf(await responder.answer(`40006,22:SV_REC:99:${H3}`, origin(IDS)));
  await ledger.close();
  assert.equal(dispatched.length, 1);
  const entry = (await entries()).find((e) => e.token === repeat);
  assert.equal(entry?.reason, 'repeat');
  assert.equal(entry?.processed, false);
});

test('Responder answers the newest history entry of a reused tuple', async () => {
  const history = new MemoryHistory();
  history.add({ local: { address: LOCAL, port: 40007 }, remote: { address: H3, port: 22 }, uid: 1001, comm: 'old' });
  const newest = history.add({ local: { address: LOCAL, port: 40007 }, remote: { address: H3, port: 22 }, uid: 1000, comm: 'new' });
  const { responder, ledger, entries } = await makeResponder('reuse', { history });
  const token = tokenOf(await responder.answer('40007 , 22', origin()));
  await ledger.close();
  const entry = (await entries()).find((e) => e.token === token);
  assert.equal(entry?.history, newest.seq);
  assert.equal(entry?.comm, 'new');
});

test('Responder answers a connection in TIME_WAIT from history', async () => {
  const host = new FakeHost({ localAddresses: [LOCAL] });
  host.addTcp({ local: { address: LOCAL, port: 40008 }, remote: { address: H3, port: 22 }, state: 'TIME_WAIT', uid: 0, inode: 0 });
  const history = new MemoryHistory();
  const entry = history.add({ local: { address: LOCAL, port: 40008 }, remote: { address: H3, port: 22 } });
  const { responder, ledger, entries } = await makeResponder('time-wait', { host, history });
  const token = tokenOf(await responder.answer('40008 , 22', origin()));
  await ledger.close();
  assert.equal((await entries()).find((e) => e.token === token)?.history, entry.seq);
});

test('Responder takes a live connection the recorder saw open as outbound, even with a listener on its port', async () => {
  const host = new FakeHost({ localAddresses: [LOCAL] });
  host.addProcess({ pid: 10, ppid: 1, name: 'client', uid: 1000 });
  host.addListener(10, { address: '0.0.0.0', port: 40009 });
  host.addTcp({ pid: 10, local: { address: LOCAL, port: 40009 }, remote: { address: H3, port: 22 } });
  const without = await makeResponder('direction-inferred', { host });
  assert.equal(await without.responder.answer('40009 , 22', origin()), '40009,22:ERROR:NO-USER');
  await without.ledger.close();
  const history = new MemoryHistory();
  history.add({ local: { address: LOCAL, port: 40009 }, remote: { address: H3, port: 22 }, closedAt: null });
  const withHistory = await makeResponder('direction-fact', { host, history });
  const token = tokenOf(await withHistory.responder.answer('40009 , 22', origin()));
  await withHistory.ledger.close();
  const entry = (await withHistory.entries()).find((e) => e.token === token);
  assert.equal(entry?.source, 'live');
  assert.equal(entry?.finding, 'outbound');
});

test('Responder answers history errors by the reply policy: --unknown-error hides NO-USER', async () => {
  const { responder, ledger } = await makeResponder('policy', { history: new MemoryHistory(), policy: { unknownError: true } });
  assert.equal(await responder.answer('40010 , 22', origin()), '40010,22:ERROR:UNKNOWN-ERROR');
  await ledger.close();
  assert.ok(readFileSync(join(dir, 'policy', 'ledger')).length > 0);
});
