/**
 * Holds TCP connections for the benchmarks, in a process of its own (started with a raised
 * descriptor limit by `prlimit`): `listen` accepts and keeps every connection; `connect` opens
 * `count` connections to a listener and keeps them. Prints one JSON line once ready, then
 * holds everything until SIGTERM or until stdin closes, then resets every connection.
 *
 * Usage: node holder.js '{"role":"listen","host":"127.0.0.4"}'
 *        node holder.js '{"role":"connect","from":"127.0.0.3","host":"127.0.0.4","port":N,"count":20000}'
 */
import { connect, createServer, type Socket } from 'node:net';

type HolderConfig =
  | { readonly role: 'listen'; readonly host: string }
  | { readonly role: 'connect'; readonly from: string; readonly host: string; readonly port: number; readonly count: number };

const held: Socket[] = [];

function keep(socket: Socket): void {
  socket.on('error', () => socket.destroy());
  held.push(socket);
}

function open(config: { from: string; host: string; port: number }): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: config.host, port: config.port, localAddress: config.from });
    socket.once('connect', () => resolve(socket));
    socket.once('error', reject);
  });
}

/**
 * Closes everything with a reset (SO_LINGER 0) and exits: a plain close would leave one
 * TIME_WAIT socket per connection for 60 s, which later measurements would walk over.
 */
function resetAll(): void {
  for (const socket of held) socket.resetAndDestroy();
  setImmediate(() => process.exit(0));
}

async function main(): Promise<void> {
  const config = JSON.parse(process.argv[2] ?? '{}') as HolderConfig;
  process.on('SIGTERM', resetAll);
  process.stdin.on('end', resetAll);
  process.stdin.resume();
  if (config.role === 'listen') {
    const server = createServer(keep);
    // A long accept queue: the other side opens its connections in large batches.
    server.listen({ host: config.host, port: 0, backlog: 4096 }, () => {
      const address = server.address();
      process.stdout.write(`${JSON.stringify({ port: typeof address === 'object' && address !== null ? address.port : 0 })}\n`);
    });
    return;
  }
  const batch = 500;
  const localPorts: number[] = [];
  for (let done = 0; done < config.count; done += batch) {
    const sockets = await Promise.all(Array.from({ length: Math.min(batch, config.count - done) }, () => open(config)));
    for (const socket of sockets) {
      keep(socket);
      if (localPorts.length < 4) localPorts.push(socket.localPort ?? 0);
    }
  }
  process.stdout.write(`${JSON.stringify({ connected: held.length, localPorts })}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`holder: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
