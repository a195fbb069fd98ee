import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FakeHost } from '../host/fake-host.js';
import { captureConnection } from './history-capture.js';

const H1 = '192.0.2.10';
const H2 = '198.51.100.2';
const H3 = '192.0.2.30';

/** H2 of the closed chain: sshd accepted H1's login, whose bash runs ssh to H3. */
function buildRelayHost(): FakeHost {
  const host = new FakeHost({ localAddresses: [H2, '127.0.0.1'] });
  host.addProcess({ pid: 1, ppid: 0, name: 'init' });
  host.addProcess({ pid: 100, ppid: 1, name: 'sshd', sid: 100 });
  host.addListener(100, { address: '0.0.0.0', port: 22 });
  host.addProcess({ pid: 200, ppid: 100, name: 'sshd', sid: 200, uid: 1000 });
  host.addTcp({ pid: 200, local: { address: H2, port: 22 }, remote: { address: H1, port: 51000 } });
  host.addProcess({ pid: 300, ppid: 200, name: 'bash', sid: 300, uid: 1000, cmdline: ['-bash'] });
  host.addPipe(300, 200);
  host.addProcess({ pid: 400, ppid: 300, name: 'ssh', sid: 300, uid: 1000, cmdline: ['ssh', H3] });
  host.addPipe(400, 300);
  host.addTcp({ pid: 400, local: { address: H2, port: 40000 }, remote: { address: H3, port: 22 } });
  return host;
}

test('captureConnection reads the ancestry up to the session leader and the upstream of the live closure', () => {
  const host = buildRelayHost();
  const captured = captureConnection(host, { pid: 400, local: { address: H2, port: 40000 }, remote: { address: H3, port: 22 } });
  assert.deepEqual(
    captured.ancestry.map((process) => [process.pid, process.name]),
    [
      [400, 'ssh'],
      [300, 'bash'],
    ],
  );
  assert.deepEqual(captured.ancestry[0]?.cmdline, ['ssh', H3]);
  assert.equal('fds' in (captured.ancestry[0] ?? {}), false);
  assert.deepEqual(captured.upstream, [{ local: { address: H2, port: 22 }, remote: { address: H1, port: 51000 }, pid: 200 }]);
});

test('captureConnection falls back to the inbound connections of the ancestry once the socket is gone', () => {
  const host = new FakeHost({ localAddresses: [H2] });
  host.addProcess({ pid: 1, ppid: 0, name: 'init' });
  host.addProcess({ pid: 50, ppid: 1, name: 'relay', sid: 50 });
  host.addListener(50, { address: '0.0.0.0', port: 2222 });
  host.addTcp({ pid: 50, local: { address: H2, port: 2222 }, remote: { address: H1, port: 52000 } });
  host.addProcess({ pid: 60, ppid: 50, name: 'nc', sid: 50 });
  const captured = captureConnection(host, { pid: 60, local: { address: H2, port: 40001 }, remote: { address: H3, port: 22 } });
  assert.deepEqual(
    captured.ancestry.map((process) => process.pid),
    [60, 50],
  );
  assert.deepEqual(captured.upstream, [{ local: { address: H2, port: 2222 }, remote: { address: H1, port: 52000 }, pid: 50 }]);
});

test('captureConnection of a process that already exited, with its socket gone, is empty', () => {
  const host = buildRelayHost();
  assert.deepEqual(captureConnection(host, { pid: 9999, local: { address: H2, port: 49998 }, remote: { address: H3, port: 22 } }), {
    ancestry: [],
    upstream: [],
  });
});

test('captureConnection stops at init when there is no session leader on the way', () => {
  const host = new FakeHost();
  host.addProcess({ pid: 1, ppid: 0, name: 'init', sid: 1 });
  host.addProcess({ pid: 2, ppid: 1, name: 'daemon', sid: 1 });
  host.addProcess({ pid: 3, ppid: 2, name: 'worker', sid: 1 });
  const captured = captureConnection(host, { pid: 3, local: { address: H2, port: 1 }, remote: { address: H3, port: 2 } });
  assert.deepEqual(
    captured.ancestry.map((process) => process.pid),
    [3, 2, 1],
  );
});

test('captureConnection finds the process by the socket holder when the kernel pid is of another PID namespace', () => {
  const host = buildRelayHost();
  const captured = captureConnection(host, {
    pid: 123456,
    pidVisible: false,
    local: { address: H2, port: 40000 },
    remote: { address: H3, port: 22 },
  });
  assert.deepEqual(
    captured.ancestry.map((process) => process.pid),
    [400, 300],
  );
  assert.equal(captured.upstream.length, 1);
});

test('captureConnection without a visible pid and without the socket is empty', () => {
  const host = buildRelayHost();
  const captured = captureConnection(host, { pid: 400, pidVisible: false, local: { address: H2, port: 49999 }, remote: { address: H3, port: 22 } });
  assert.deepEqual(captured, { ancestry: [], upstream: [] });
});
