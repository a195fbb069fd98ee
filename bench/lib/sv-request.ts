/**
 * One SV request timed as a requester sees it: from its connect to the token line.
 */
import { connect } from 'node:net';
import type { BenchStopd } from './processes.js';

/**
 * Sends `local,remote:SV` to `stopd` from 127.0.0.2 (the listener side of the bench's loopback
 * connections) and resolves with the milliseconds from the request to its reply line; rejects
 * when the reply is no token or none comes within `timeoutMs` (default 120 s).
 */
export function timeSvRequest(stopd: BenchStopd, local: number, remote: number, options: { timeoutMs?: number } = {}): Promise<number> {
  const timeoutMs = options.timeoutMs ?? 120_000;
  return new Promise((resolve, reject) => {
    const socket = connect({ host: stopd.host, port: stopd.port, localAddress: '127.0.0.2' });
    let started = 0;
    let data = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`No SV reply within ${timeoutMs / 1000} s: ${JSON.stringify(data)}`));
    }, timeoutMs);
    socket.setEncoding('latin1');
    socket.on('connect', () => {
      started = performance.now();
      socket.write(`${local},${remote}:SV\r\n`);
    });
    socket.on('data', (chunk: string) => {
      data += chunk;
      if (!data.includes('\n')) return;
      const ms = performance.now() - started;
      clearTimeout(timer);
      socket.destroy();
      if (!/:USERID:OTHER:[0-9a-f]{64}\r?\n/.test(data)) reject(new Error(`SV reply is no token: ${JSON.stringify(data)}`));
      else resolve(ms);
    });
    socket.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}
