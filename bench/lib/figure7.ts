/**
 * The paper's simple process structure (section 3.5, figures 7 and 8), from real processes:
 * an "sshd" listening on `bind:port`; when the previous host connects, it forks an "sshd"
 * child holding the accepted connection, which forks a shell, which runs a "telnet" that
 * connects to the next host and holds the connection. Six processes with init, no IPC, one
 * inbound and one outbound connection: what the paper calls the most frequent case.
 * Names are set with prctl(PR_SET_NAME) so records read like figure 8.
 */
import { startDetached, type DetachedProcess } from '../../test/support/structures.js';

const SCRIPT = String.raw`
import ctypes, os, signal, socket, sys
bind, port, next_host, next_port = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
libc = ctypes.CDLL(None)
def name(text):
    libc.prctl(15, text.encode(), 0, 0, 0)  # PR_SET_NAME
name('sshd')
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind((bind, port))
listener.listen(8)
conn, _ = listener.accept()
if os.fork() == 0:
    listener.close()
    if os.fork() == 0:
        conn.close()
        telnet = ("import ctypes, signal, socket; ctypes.CDLL(None).prctl(15, b'telnet', 0, 0, 0); "
                  "s = socket.create_connection(('%s', %s)); signal.pause()" % (next_host, next_port))
        os.execvp('sh', ['sh', '-c', '/usr/bin/python3 -c "$0"; exit 0', telnet])
    while True:
        signal.pause()
conn.close()
while True:
    signal.pause()
`;

/**
 * Starts the structure detached (parent init, no descriptor shared with the bench). The
 * previous host must then connect to `bind:port`; "telnet" connects to `next`.
 */
export function startFigure7(options: { bind: string; port: number; next: { host: string; port: number } }): Promise<DetachedProcess> {
  return startDetached(['/usr/bin/python3', '-c', SCRIPT, options.bind, String(options.port), options.next.host, String(options.next.port)]);
}
