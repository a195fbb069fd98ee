/**
 * A "previous host" (paper fig. 1, H_{i-1}) on this machine: a network namespace joined to
 * this one by a veth pair. Its address is not one of this host's own, so a connection from it
 * is what the closure reports as an upstream candidate. A client on 127.0.0.x would not do:
 * every 127/8 address is this host's own, so such a connection is host-local IPC, which the
 * closure follows into the client process instead (paper 3.2, 4). Needs root.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { promisify } from 'node:util';
import { readFirstLine } from './peers.js';

const run = promisify(execFile);

/** A namespace with one address, reachable from this host's `hostAddress`. */
export interface PreviousHost {
  /** The namespace's own address (the remote address of its connections here). */
  readonly address: string;
  /** This host's address on the link (where structures must accept the previous hop). */
  readonly hostAddress: string;
  /** Connects from the namespace to `hostAddress:port` and holds the connection until stopped. */
  connect(port: number): Promise<PreviousHopClient>;
  /** Stops every client and deletes the link and the namespace. Idempotent. */
  close(): Promise<void>;
}

/** One connection from the previous host, held by a Python process in the namespace. */
export interface PreviousHopClient {
  readonly child: ChildProcess;
  readonly localPort: number;
  stop(): Promise<void>;
}

let counter = 0;

/** Creates the namespace and the veth link, with a /30 of 198.51.100.0/24 derived from this pid. */
export async function createPreviousHost(): Promise<PreviousHost> {
  counter += 1;
  const tag = `${process.pid % 1_000_000}${counter}`;
  const netns = `stoptest${tag}`;
  const outer = `stp${tag}a`;
  const inner = `stp${tag}b`;
  // Test hosts get documentation addresses only (RFC 5737): a /30 of 198.51.100.0/24 derived
  // from this pid, so test files running side by side differ. 192.0.2.0/24 is the testnet's.
  const slot = (process.pid * 8 + counter) % 64;
  const base = slot * 4;
  const hostAddress = `198.51.100.${base + 1}`;
  const address = `198.51.100.${base + 2}`;
  const clients = new Set<PreviousHopClient>();
  const steps: string[][] = [
    ['netns', 'add', netns],
    ['link', 'add', outer, 'type', 'veth', 'peer', 'name', inner],
    ['link', 'set', inner, 'netns', netns],
    ['addr', 'add', `${hostAddress}/30`, 'dev', outer],
    ['link', 'set', outer, 'up'],
    ['-n', netns, 'addr', 'add', `${address}/30`, 'dev', inner],
    ['-n', netns, 'link', 'set', inner, 'up'],
    ['-n', netns, 'link', 'set', 'lo', 'up'],
  ];
  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    for (const client of clients) await client.stop();
    // Deleting one end of a veth pair deletes both.
    await run('ip', ['link', 'del', outer]).catch(() => undefined);
    await run('ip', ['netns', 'del', netns]).catch(() => undefined);
  };
  try {
    for (const args of steps) await run('ip', args, { timeout: 10_000 });
  } catch (error: unknown) {
    await close();
    throw error;
  }
  return {
    address,
    hostAddress,
    async connect(port: number) {
      const client = await startClient(netns, hostAddress, port);
      clients.add(client);
      return client;
    },
    close,
  };
}

async function startClient(netns: string, host: string, port: number): Promise<PreviousHopClient> {
  const script = [
    'import socket, sys, time',
    'deadline = time.time() + 10',
    'while True:',
    '    try:',
    `        s = socket.create_connection((${JSON.stringify(host)}, ${port}))`,
    '        break',
    '    except ConnectionRefusedError:',
    '        if time.time() > deadline: raise',
    '        time.sleep(0.02)',
    'print(s.getsockname()[1], flush=True)',
    'sys.stdin.read()',
  ].join('\n');
  const child = spawn('ip', ['netns', 'exec', netns, '/usr/bin/python3', '-c', script], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const localPort = Number(await readFirstLine(child, { what: 'previous-hop client', timeoutMs: 12_000 }));
  return {
    child,
    localPort,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, 'exit');
      child.stdin?.end();
      child.kill('SIGKILL');
      await exited;
    },
  };
}
