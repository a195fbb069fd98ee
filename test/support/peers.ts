import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createServer, type Server, type Socket } from 'node:net';

/** A listener in this test process that keeps every accepted socket until closed. */
export interface TestListener {
  readonly server: Server;
  readonly port: number;
  readonly accepted: Socket[];
  /** Resolves with the next accepted socket (bounded wait). */
  nextAccepted(timeoutMs?: number): Promise<Socket>;
  close(): Promise<void>;
}

export async function listen(host: string, port = 0): Promise<TestListener> {
  /** Accepted sockets nobody has taken yet; `all` keeps every one for close(). */
  const accepted: Socket[] = [];
  const all: Socket[] = [];
  const waiters: ((socket: Socket) => void)[] = [];
  const server = createServer((socket) => {
    socket.on('error', () => socket.destroy());
    all.push(socket);
    const waiter = waiters.shift();
    if (waiter !== undefined) waiter(socket);
    else accepted.push(socket);
  });
  server.listen({ host, port, ipv6Only: host === '::1' });
  await once(server, 'listening');
  const address = server.address();
  if (address === null || typeof address !== 'object') throw new Error('listener has no address');
  return {
    server,
    port: address.port,
    accepted,
    nextAccepted(timeoutMs = 5000) {
      const ready = accepted.shift();
      if (ready !== undefined) return Promise.resolve(ready);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no connection accepted in time')), timeoutMs);
        waiters.push((socket) => {
          clearTimeout(timer);
          resolve(socket);
        });
      });
    },
    async close() {
      for (const socket of all) socket.destroy();
      server.close();
      await once(server, 'close');
    },
  };
}

/** A separate process holding one outbound TCP connection. */
export interface ClientProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly localPort: number;
  stop(): Promise<void>;
}

/**
 * Starts a Python process (optionally as another uid) that connects to `host:port`, prints its
 * local port, and holds the connection until stdin closes.
 */
export async function spawnClient(host: string, port: number, options: { uid?: number; gid?: number } = {}): Promise<ClientProcess> {
  const script = [
    'import socket, sys',
    `s = socket.create_connection((${JSON.stringify(host)}, ${port}))`,
    'print(s.getsockname()[1], flush=True)',
    'sys.stdin.read()',
  ].join('\n');
  const child = spawn('/usr/bin/python3', ['-c', script], {
    stdio: ['pipe', 'pipe', 'ignore'],
    ...(options.uid === undefined ? {} : { uid: options.uid, gid: options.gid ?? options.uid }),
  });
  const localPort = Number(await readFirstLine(child, { what: 'client process', timeoutMs: 5000 }));
  return {
    child,
    pid: child.pid ?? 0,
    localPort,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, 'exit');
      child.stdin?.end();
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/**
 * The first line a child prints on stdout (how test peers report their port), or a rejection
 * naming `what` when it exits first or takes longer than `timeoutMs`.
 */
export function readFirstLine(child: ChildProcess, options: { what: string; timeoutMs: number }): Promise<string> {
  child.stdout?.setEncoding('utf8');
  return new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`${options.what} did not connect in time`)), options.timeoutMs);
    child.stdout?.on('data', (chunk: string) => {
      out += chunk;
      if (out.includes('\n')) {
        clearTimeout(timer);
        resolve(out.split('\n')[0]?.trim() ?? '');
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${options.what} exited with ${code}`));
    });
  });
}
