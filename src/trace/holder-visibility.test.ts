import assert from 'node:assert/strict';
import { test } from 'node:test';
import { resolveClosure } from './closure.js';
import { buildFigure7 } from './figures.js';
import { checkHolderVisibility, type HolderVisibilityFacts } from './holder-visibility.js';

const SOCKET = { inode: 4242, uid: 1000 };
const NOBODY: HolderVisibilityFacts = { socket: SOCKET, holders: [], readHolders: [], denied: [], pidNamespace: 'initial' };

/** The facts the daemon gathers, from a fixture host and its closure. */
function factsOf(fixture: ReturnType<typeof buildFigure7>, pidNamespace: HolderVisibilityFacts['pidNamespace']): HolderVisibilityFacts {
  const closure = resolveClosure(fixture.host, { socket: fixture.socket });
  const holders = fixture.host.findHolders(fixture.socket.inode, fixture.socket.uid);
  const read = new Set(closure.processes.map((process) => process.pid));
  return { socket: fixture.socket, holders, readHolders: holders.filter((pid) => read.has(pid)), denied: [], pidNamespace };
}

test('checkHolderVisibility finds nothing to say when a holder was read', () => {
  assert.equal(checkHolderVisibility(factsOf(buildFigure7(), 'nested')), undefined);
});

test('checkHolderVisibility says vanished when the only holder exited between the scan and the read', () => {
  const fixture = buildFigure7();
  fixture.host.vanishProcess(fixture.pids.telnet);
  const problem = checkHolderVisibility(factsOf(fixture, 'initial'));
  assert.equal(problem?.code, 'no-visible-holder');
  assert.equal(problem?.reason, 'vanished');
  assert.match(problem?.message ?? '', /its holder \(pid 8339\) exited between the socket lookup and the process scan/);
});

test('checkHolderVisibility says other-pid-namespace when nobody holds the socket and stopd sees a nested PID namespace', () => {
  const fixture = buildFigure7();
  fixture.host.closeFd(fixture.pids.telnet, fixture.socket.inode);
  const problem = checkHolderVisibility(factsOf(fixture, 'nested'));
  assert.equal(problem?.reason, 'other-pid-namespace');
  assert.match(problem?.message ?? '', /^No process visible to stopd holds the queried socket \(socket:\[\d+\], owner uid 1000\): stopd runs in a PID namespace/);
});

test('checkHolderVisibility names denied pids too in a nested PID namespace', () => {
  const problem = checkHolderVisibility({ ...NOBODY, pidNamespace: 'nested', denied: [7, 8] });
  assert.equal(problem?.reason, 'other-pid-namespace');
  assert.match(problem?.message ?? '', /; the descriptors of 2 processes \(pids 7, 8\) could not be read, and one of them may hold it$/);
});

test('checkHolderVisibility says denied when stopd sees every process but could not read some', () => {
  const problem = checkHolderVisibility({ ...NOBODY, denied: [7] });
  assert.equal(problem?.reason, 'denied');
  assert.match(problem?.message ?? '', /the descriptors of 1 process \(pid 7\) could not be read/);
});

test('checkHolderVisibility lists at most ten pids', () => {
  const problem = checkHolderVisibility({ ...NOBODY, denied: Array.from({ length: 25 }, (_, i) => i + 1) });
  assert.match(problem?.message ?? '', /pids 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 and 15 more\)/);
});

test('checkHolderVisibility says closed for a socket without an inode', () => {
  assert.equal(checkHolderVisibility({ ...NOBODY, socket: { inode: 0, uid: 0 }, pidNamespace: 'nested' })?.reason, 'closed');
});

test('checkHolderVisibility says unknown when stopd sees every process and read them all', () => {
  const problem = checkHolderVisibility(NOBODY);
  assert.equal(problem?.reason, 'unknown');
  assert.match(problem?.message ?? '', /in flight in a UNIX socket message/);
  assert.equal(checkHolderVisibility({ ...NOBODY, pidNamespace: 'unknown' })?.reason, 'unknown');
});
