/**
 * A hostile upstream "STOP daemon" for recursion tests (issue 13, item 5): a small Python
 * peer run inside a test host, listening on a port (113 by default), that reads one request
 * line and then misbehaves as the request's SID says. It reports on its stdout, one line per
 * event, `<sid> <event>`: `asked <request line>` when a request arrived, and `closed` when the
 * asking daemon closed (or reset) the connection, so a test can tell that stopd gave up on
 * its own and did not wait for the peer.
 */
import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { TestHost } from './testnet.js';

/** The misbehaviours, each chosen by a request's SID. */
export const HOSTILE_CASES = {
  /** One byte every 300 ms, for a minute: only a whole-exchange deadline stops it. */
  drip: 101n,
  /** 100 KB without a newline, then silence. */
  flood: 102n,
  /** A well-framed `USERID:OTHER:` reply whose token holds terminal escapes, BEL and a C1 CSI. */
  controlToken: 103n,
  /** A 10 000-character token on one line. */
  longToken: 104n,
  /** Accepts, reads the request, never answers. */
  silent: 105n,
  /** A valid token reply, then the connection is held open for a minute. */
  answerAndHold: 106n,
  /** A valid reply for another port pair (client port + 1). */
  wrongPorts: 107n,
  /** A 600-character token: within the line cap, beyond the 512 characters of the protocol. */
  overlongToken: 108n,
} as const;

/** The token the well-behaved replies carry (cases answerAndHold and wrongPorts). */
export const FAKE_UPSTREAM_TOKEN = 'fa'.repeat(32);

const SCRIPT = String.raw`
import socket, sys, threading, time

TOKEN = sys.argv[2]

def say(sid, event):
    sys.stdout.write('%s %s\n' % (sid, event))
    sys.stdout.flush()

def wait_closed(conn, sid, limit):
    conn.settimeout(limit)
    try:
        while conn.recv(4096):
            pass
        say(sid, 'closed')
    except socket.timeout:
        say(sid, 'still-open')
    except OSError:
        say(sid, 'closed')

def serve(conn):
    sid = '?'
    try:
        data = b''
        while b'\n' not in data and len(data) < 1000:
            chunk = conn.recv(1000)
            if not chunk:
                return
            data += chunk
        line = data.split(b'\n')[0].decode('latin1').strip()
        ports, _, rest = line.partition(':')
        cl, _, sv = ports.partition(',')
        cl, sv = int(cl), int(sv)
        sid = rest.split(':')[1]
        say(sid, 'asked ' + line)
        pair = ('%d,%d' % (cl, sv)).encode()
        if sid == '101':
            try:
                for _ in range(200):
                    conn.sendall(pair[:1])
                    time.sleep(0.3)
                say(sid, 'still-open')
            except OSError:
                say(sid, 'closed')
            return
        if sid == '102':
            try:
                conn.sendall(b'A' * 100000)
            except OSError:
                say(sid, 'closed')
                return
        elif sid == '103':
            conn.sendall(pair + b':USERID:OTHER:ok\x1b]0;owned\x07\x1b[2J\x9b31m\x7fend\r\n')
        elif sid == '104':
            conn.sendall(pair + b':USERID:OTHER:' + b'x' * 10000 + b'\r\n')
        elif sid == '106':
            conn.sendall(pair + b':USERID:OTHER:' + TOKEN.encode() + b'\r\n')
        elif sid == '107':
            conn.sendall(('%d,%d' % (cl + 1, sv)).encode() + b':USERID:OTHER:' + TOKEN.encode() + b'\r\n')
        elif sid == '108':
            conn.sendall(pair + b':USERID:OTHER:' + b'y' * 600 + b'\r\n')
        wait_closed(conn, sid, 60)
    except Exception as error:
        say(sid, 'error ' + repr(error))
    finally:
        conn.close()

server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(('0.0.0.0', int(sys.argv[1])))
server.listen(16)
while True:
    conn, _ = server.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
`;

/** A running fake upstream. */
export interface FakeUpstream {
  readonly child: ChildProcess;
  /** Every `<sid> <event>` line so far. */
  events(): readonly string[];
}

/** Starts the fake upstream inside `host` on `port` and waits until it listens. */
export async function startFakeUpstream(host: TestHost, options: { port?: number } = {}): Promise<FakeUpstream> {
  const port = options.port ?? 113;
  const child = host.spawn(['/usr/bin/python3', '-c', SCRIPT, String(port), FAKE_UPSTREAM_TOKEN], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines: string[] = [];
  if (child.stdout !== null) createInterface({ input: child.stdout }).on('line', (line) => lines.push(line));
  await host.waitForListener(port);
  return { child, events: () => lines };
}
