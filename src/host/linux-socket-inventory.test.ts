// The per-socket lookups of the Linux socket view (LinuxSocketTable.openInventory) on REAL
// sockets held by a child process: loopback TCP over IPv4 and IPv6, a listener, a connection
// still in SYN_SENT, a UNIX socketpair, a bound UNIX server with an accepted connection, and a
// UDP socket. Once through the addon's socketOf/unixLookup, and once through the whole-table
// fallback, which must give the same answers.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, mkdtempSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, test } from 'node:test';

import { createLinuxSocketTable, hasNetClassifierCgroup } from './linux-sockets.js';
import { loadNativeAddon, type NativeAddon } from './native-addon.js';
import type { FdSocket, SocketInventory } from './types.js';

const DEADLINE_MS = 5000;
const NOBODY = 65534;
const isRoot = process.getuid?.() === 0;

/**
 * The child: opens every kind of socket, prints one JSON line naming each socket's fd and
 * address, then serves commands on stdin (`reuse`: put the UDP socket on the spare TCP
 * socket's descriptor number, as a process that closes a socket and opens another may).
 */
const CHILD = String.raw`
import json, os, socket, sys
fds, addrs, held = {}, {}, {}
def keep(name, sock):
    held[name] = sock  # a socket object that is collected closes its descriptor
    fds[name] = sock.fileno()
    return sock
for tag, family, host in (('4', socket.AF_INET, '127.0.0.1'), ('6', socket.AF_INET6, '::1')):
    listener = keep('listener' + tag, socket.socket(family, socket.SOCK_STREAM))
    listener.bind((host, 0))
    listener.listen(8)
    client = keep('client' + tag, socket.socket(family, socket.SOCK_STREAM))
    client.connect(listener.getsockname()[:2])
    keep('accepted' + tag, listener.accept()[0])
# SYN_SENT: a listener with backlog 0 holds one unaccepted connection and drops further SYNs.
full = keep('full', socket.socket(socket.AF_INET, socket.SOCK_STREAM))
full.bind(('127.0.0.1', 0))
full.listen(0)
first = keep('first', socket.socket(socket.AF_INET, socket.SOCK_STREAM))
first.connect(full.getsockname())
pending = keep('pending', socket.socket(socket.AF_INET, socket.SOCK_STREAM))
pending.setblocking(False)
pending.connect_ex(full.getsockname())
pair = socket.socketpair()
keep('pairA', pair[0])
keep('pairB', pair[1])
server = keep('unixServer', socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
server.bind(sys.argv[1])
server.listen(1)
unix_client = keep('unixClient', socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
unix_client.connect(sys.argv[1])
keep('unixAccepted', server.accept()[0])
udp = keep('udp', socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
spare = keep('spare', socket.socket(socket.AF_INET, socket.SOCK_STREAM))
for name, sock in held.items():
    if sock.family != socket.AF_UNIX:
        addrs[name] = list(sock.getsockname())[:2]
print(json.dumps({'fds': fds, 'addrs': addrs}), flush=True)
for line in sys.stdin:
    if line.strip() == 'reuse':
        os.dup2(udp.fileno(), spare.fileno())
        print('done', flush=True)
`;

interface Holder {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly uid: number;
  readonly fds: Readonly<Record<string, number>>;
  readonly addrs: Readonly<Record<string, readonly [string, number]>>;
  /** Sends a command and waits for the child's answer line. */
  command(line: string): Promise<string>;
  /** Inode of one of the child's descriptors, from `/proc/PID/fd/N` -> `socket:[inode]`. */
  inodeOf(name: string): number;
}

/**
 * Starts the child, as nobody when we are root (the uid reported must be the socket owner's,
 * not ours), or with `ownNetns` as root in a network namespace of its own (loopback up), as
 * `ip netns exec` would start it.
 */
async function startHolder(socketPath: string, options: { readonly ownNetns?: boolean } = {}): Promise<Holder> {
  const asNobody = isRoot && options.ownNetns !== true;
  const uid = asNobody ? NOBODY : (process.getuid?.() ?? 0);
  const [command, ...args] =
    options.ownNetns === true
      ? ['unshare', '--net', 'sh', '-c', 'ip link set lo up && exec /usr/bin/python3 -c "$0" "$1"', CHILD, socketPath]
      : ['/usr/bin/python3', '-c', CHILD, socketPath];
  const child = spawn(command ?? 'false', args, {
    stdio: ['pipe', 'pipe', 'inherit'],
    cwd: '/',
    ...(asNobody ? { uid: NOBODY, gid: NOBODY } : {}),
  });
  const lines = createInterface({ input: child.stdout ?? assert.fail('no stdout') })[Symbol.asyncIterator]();
  const nextLine = async (what: string): Promise<string> => {
    const timeout = AbortSignal.timeout(DEADLINE_MS);
    const exited = once(child, 'exit', { signal: timeout }).then(() => assert.fail(`holder exited before ${what}`));
    const line = await Promise.race([lines.next(), exited]);
    if (line.done === true) assert.fail(`holder closed stdout before ${what}`);
    return line.value;
  };
  const report = JSON.parse(await nextLine('reporting its sockets')) as Pick<Holder, 'fds' | 'addrs'>;
  const pid = child.pid ?? assert.fail('no pid');
  return {
    child,
    pid,
    uid,
    ...report,
    async command(line) {
      child.stdin?.write(`${line}\n`);
      return nextLine(`answering ${line}`);
    },
    inodeOf(name) {
      const fd = report.fds[name] ?? assert.fail(`no socket ${name}`);
      const match = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      return Number(match?.[1] ?? assert.fail(`fd ${fd} of ${pid} is no socket`));
    },
  };
}

async function stopHolder(holder: Holder): Promise<void> {
  if (holder.child.exitCode !== null || holder.child.signalCode !== null) return;
  const exited = once(holder.child, 'exit');
  holder.child.stdin?.end();
  await exited;
}

/** The real binding without the per-socket functions: an addon built before them. */
function withoutPerSocket(binding: NativeAddon): NativeAddon {
  return {
    tcpLookup: binding.tcpLookup.bind(binding),
    tcpDump: binding.tcpDump.bind(binding),
    unixDump: binding.unixDump.bind(binding),
  };
}

/**
 * The addon with a socketOf that fails with `code` for every process but this one: our own
 * descriptors (the start-up probe) are always ours to borrow.
 */
function failingForOthers(binding: NativeAddon, code: string, message: string): NativeAddon {
  return {
    ...withoutPerSocket(binding),
    socketOf: (pid, fd, inode) => {
      if (pid === process.pid) return binding.socketOf?.(pid, fd, inode) ?? null;
      throw Object.assign(new Error(message), { code });
    },
    ...(binding.unixLookup === undefined ? {} : { unixLookup: binding.unixLookup.bind(binding) }),
  };
}

/** Whether this kernel and process can borrow descriptors at all (else the fast path is not under test). */
function perSocketSkipReason(): string | undefined {
  const { binding } = loadNativeAddon();
  if (binding?.socketOf === undefined) return 'the addon is not built with socketOf';
  if (hasNetClassifierCgroup(readFileSync('/proc/self/cgroup', 'utf8'))) return 'cgroup v1 net_cls/net_prio is mounted here';
  try {
    binding.socketOf(process.pid, 0x7fffffff, 1);
  } catch (err) {
    return `pidfd_getfd is refused here: ${err instanceof Error ? err.message : String(err)}`;
  }
  return undefined;
}

void test('hasNetClassifierCgroup finds net_cls and net_prio hierarchies of cgroup v1 only', () => {
  assert.equal(hasNetClassifierCgroup('0::/system.slice/stopd.service\n'), false);
  assert.equal(hasNetClassifierCgroup('4:memory:/x\n1:cpu,cpuacct:/\n0::/\n'), false);
  assert.equal(hasNetClassifierCgroup('7:net_cls,net_prio:/\n0::/\n'), true);
  assert.equal(hasNetClassifierCgroup('3:net_prio:/\n'), true);
  assert.equal(hasNetClassifierCgroup('2:name=net_cls_like:/\n'), false);
  assert.equal(hasNetClassifierCgroup(''), false);
});

const skipFast = perSocketSkipReason();

void describe('LinuxSocketTable.openInventory on sockets of a child process', () => {
  const loaded = loadNativeAddon();
  const binding = loaded.binding ?? assert.fail(`addon not built: ${String(loaded.error)}`);
  let dir: string;
  let socketPath: string;
  let holder: Holder;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'stopd-inventory-'));
    chmodSync(dir, 0o777); // the child may run as nobody
    socketPath = join(dir, 'server.sock');
    holder = await startHolder(socketPath);
  });

  after(async () => {
    await stopHolder(holder);
    rmSync(dir, { recursive: true, force: true });
  });

  /** The expected answer for a TCP socket of the child. */
  function tcp(name: string, state: string, local: readonly [string, number], remote: readonly [string, number]): FdSocket {
    return {
      kind: 'tcp',
      socket: {
        state: state as 'ESTABLISHED',
        uid: holder.uid,
        inode: holder.inodeOf(name),
        local: { address: local[0], port: local[1] },
        remote: { address: remote[0], port: remote[1] },
      },
    };
  }

  function ask(inventory: SocketInventory, name: string): FdSocket | undefined {
    return inventory.socketOf(holder.pid, holder.fds[name] ?? -1, holder.inodeOf(name));
  }

  const addr = (name: string): readonly [string, number] => holder.addrs[name] ?? assert.fail(`no address for ${name}`);

  void test('socketOf gives the 4-tuple, state, owner and inode of loopback TCP sockets (IPv4 and IPv6)', { skip: skipFast }, () => {
    const logs: string[] = [];
    const inventory = createLinuxSocketTable({ log: (msg) => logs.push(msg) }).openInventory();
    assert.deepEqual(logs, [], 'no fallback expected on this host');
    for (const tag of ['4', '6']) {
      assert.deepEqual(ask(inventory, `client${tag}`), tcp(`client${tag}`, 'ESTABLISHED', addr(`client${tag}`), addr(`listener${tag}`)));
      assert.deepEqual(ask(inventory, `accepted${tag}`), tcp(`accepted${tag}`, 'ESTABLISHED', addr(`listener${tag}`), addr(`client${tag}`)));
    }
    assert.equal(addr('client6')[0], '::1');
  });

  void test('socketOf shows a listener with an all-zero remote end', { skip: skipFast }, () => {
    const inventory = createLinuxSocketTable({ log: () => undefined }).openInventory();
    assert.deepEqual(ask(inventory, 'listener4'), tcp('listener4', 'LISTEN', addr('listener4'), ['0.0.0.0', 0]));
    assert.deepEqual(ask(inventory, 'listener6'), tcp('listener6', 'LISTEN', addr('listener6'), ['::', 0]));
  });

  void test('socketOf gives a SYN_SENT socket the address it dials, which getpeername does not know', { skip: skipFast }, () => {
    const raw = binding.socketOf?.(holder.pid, holder.fds.pending ?? -1, holder.inodeOf('pending'));
    assert.equal(raw?.domain === 'tcp' ? raw.state : undefined, 2, 'the pending connection is in SYN_SENT');
    const inventory = createLinuxSocketTable({ log: () => undefined }).openInventory();
    assert.deepEqual(ask(inventory, 'pending'), tcp('pending', 'SYN_SENT', addr('pending'), addr('full')));
  });

  void test('socketOf says unix for UNIX sockets, and findUnix gives peers and the bound path', { skip: skipFast }, () => {
    const inventory = createLinuxSocketTable({ log: () => undefined }).openInventory();
    const [pairA, pairB] = [holder.inodeOf('pairA'), holder.inodeOf('pairB')];
    assert.deepEqual(ask(inventory, 'pairA'), { kind: 'unix', socket: { inode: pairA, path: null, peer: pairB, type: 'stream' } });
    assert.deepEqual(inventory.findUnix(pairB), { inode: pairB, path: null, peer: pairA, type: 'stream' });

    const [server, client, accepted] = ['unixServer', 'unixClient', 'unixAccepted'].map((name) => holder.inodeOf(name));
    assert.deepEqual(ask(inventory, 'unixServer'), { kind: 'unix', socket: { inode: server, path: socketPath, peer: 0, type: 'stream' } });
    assert.deepEqual(ask(inventory, 'unixClient'), { kind: 'unix', socket: { inode: client, path: null, peer: accepted, type: 'stream' } });
    // The accepted socket carries the server's bound path (unix_diag, like /proc/net/unix).
    assert.deepEqual(inventory.findUnix(accepted ?? 0), { inode: accepted, path: socketPath, peer: client, type: 'stream' });
  });

  void test('socketOf is undefined for a UDP socket, a foreign inode, a closed descriptor and an unknown UNIX inode', { skip: skipFast }, () => {
    const inventory = createLinuxSocketTable({ log: () => undefined }).openInventory();
    assert.equal(ask(inventory, 'udp'), undefined);
    // The descriptor is another socket than the one /proc named (its number was reused).
    assert.equal(inventory.socketOf(holder.pid, holder.fds.client4 ?? -1, holder.inodeOf('accepted4')), undefined);
    assert.equal(inventory.socketOf(holder.pid, 1000, holder.inodeOf('client4')), undefined);
    assert.equal(inventory.findUnix(holder.inodeOf('client4')), undefined, 'a TCP inode is no UNIX socket');
  });

  void test('socketOf is undefined once the descriptor number holds another socket', { skip: skipFast }, async () => {
    const inventory = createLinuxSocketTable({ log: () => undefined }).openInventory();
    const before = holder.inodeOf('spare');
    assert.deepEqual(ask(inventory, 'spare'), tcp('spare', 'CLOSE', ['0.0.0.0', 0], ['0.0.0.0', 0]));
    assert.equal(await holder.command('reuse'), 'done');
    assert.notEqual(holder.inodeOf('spare'), before);
    assert.equal(inventory.socketOf(holder.pid, holder.fds.spare ?? -1, before), undefined);
  });

  void test('the whole-table fallback gives the same answers as socketOf, reading each table once', { skip: skipFast }, () => {
    const fast = createLinuxSocketTable({ log: () => undefined }).openInventory();
    let dumps = 0;
    const slowBinding = withoutPerSocket(binding);
    const counted: NativeAddon = {
      ...slowBinding,
      tcpDump: (family) => {
        dumps += 1;
        return slowBinding.tcpDump(family);
      },
      unixDump: () => {
        dumps += 1;
        return slowBinding.unixDump();
      },
    };
    const logs: string[] = [];
    const slow = createLinuxSocketTable({ log: (msg) => logs.push(msg), addon: { binding: counted } }).openInventory();
    assert.deepEqual(logs, [], 'an addon without the functions falls back silently');
    // Not the spare descriptor: a socket that was never bound is in no table (a dump shows hashed sockets only).
    const names = Object.keys(holder.fds).filter((name) => name !== 'spare');
    for (const name of names) {
      assert.deepEqual(ask(slow, name), ask(fast, name), name);
    }
    const peer = holder.inodeOf('pairB');
    assert.deepEqual(slow.findUnix(peer), fast.findUnix(peer));
    assert.equal(dumps, 3, 'tcpDump(4), tcpDump(6) and unixDump, once each');
  });

  void test('socketOf answers from the tables when ptrace access is refused (EPERM)', { skip: skipFast }, () => {
    const refused = failingForOthers(binding, 'EPERM', 'Cannot duplicate descriptor: Operation not permitted');
    const logs: string[] = [];
    const slow = createLinuxSocketTable({ log: (msg) => logs.push(msg), addon: { binding: refused } }).openInventory();
    const fast = createLinuxSocketTable({ log: () => undefined }).openInventory();
    assert.deepEqual(logs, [], 'per-process refusals are not logged');
    for (const name of ['client4', 'accepted6', 'listener4', 'pairA', 'unixAccepted', 'udp']) {
      assert.deepEqual(ask(slow, name), ask(fast, name), name);
    }
  });

  void test('socketOf refused at start (ENOSYS) is logged once and never asked again', () => {
    let calls = 0;
    const old: NativeAddon = {
      ...withoutPerSocket(binding),
      socketOf: () => {
        calls += 1;
        throw Object.assign(new Error('Cannot duplicate descriptor: Function not implemented'), { code: 'ENOSYS' });
      },
    };
    const logs: string[] = [];
    const table = createLinuxSocketTable({ log: (msg) => logs.push(msg), addon: { binding: old } });
    assert.equal(table.backend, 'netlink');
    assert.equal(logs.length, 1);
    assert.match(logs[0] ?? '', /^per-socket lookups unavailable \(Cannot duplicate descriptor: Function not implemented\); SV analysis reads whole socket tables/);
    const inventory = table.openInventory();
    assert.deepEqual(ask(inventory, 'client4'), tcp('client4', 'ESTABLISHED', addr('client4'), addr('listener4')));
    assert.equal(ask(inventory, 'udp'), undefined);
    assert.equal(calls, 1, 'only the start-up probe');
    assert.equal(logs.length, 1);
  });

  void test('socketOf failing otherwise is a HostLookupError', { skip: skipFast }, () => {
    const broken = failingForOthers(binding, 'EMFILE', 'Cannot duplicate descriptor 3 of process 9: Too many open files');
    const inventory = createLinuxSocketTable({ log: () => undefined, addon: { binding: broken } }).openInventory();
    assert.throws(() => ask(inventory, 'client4'), {
      name: 'HostLookupError',
      message: 'Cannot look up a socket descriptor: Cannot duplicate descriptor 3 of process 9: Too many open files',
    });
  });

  void test('socketOf is undefined for sockets of another network namespace, which the tables do not list either', {
    skip: skipFast ?? (isRoot ? false : 'needs root: makes a network namespace'),
  }, async () => {
    const fast = createLinuxSocketTable({ log: () => undefined }).openInventory();
    const slow = createLinuxSocketTable({ log: () => undefined, addon: { binding: withoutPerSocket(binding) } }).openInventory();
    const foreign = await startHolder(join(dir, 'foreign.sock'), { ownNetns: true });
    try {
      assert.notEqual(readlinkSync(`/proc/${foreign.pid}/ns/net`), readlinkSync('/proc/self/ns/net'));
      for (const name of ['client4', 'accepted4', 'listener6', 'pairA', 'unixServer']) {
        const fd = foreign.fds[name] ?? assert.fail(`no socket ${name}`);
        const raw = binding.socketOf?.(foreign.pid, fd, foreign.inodeOf(name));
        assert.equal(raw?.domain, 'other', name);
        assert.equal(fast.socketOf(foreign.pid, fd, foreign.inodeOf(name)), undefined, name);
        assert.equal(slow.socketOf(foreign.pid, fd, foreign.inodeOf(name)), undefined, name);
      }
    } finally {
      await stopHolder(foreign);
    }
  });

  void test('socketOf is undefined for a process that has exited', { skip: skipFast }, async () => {
    const inventory = createLinuxSocketTable({ log: () => undefined }).openInventory();
    const gone = await startHolder(join(dir, 'gone.sock'));
    const fd = gone.fds.client4 ?? -1;
    const inode = gone.inodeOf('client4');
    assert.equal(inventory.socketOf(gone.pid, fd, inode)?.kind, 'tcp');
    await stopHolder(gone);
    assert.equal(inventory.socketOf(gone.pid, fd, inode), undefined);
  });
});
