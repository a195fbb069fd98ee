/**
 * The paper's complex process structure (section 3.6, figures 9 and 10), built from real
 * processes by a Python script: P1 accepts the previous host's connection and talks to P2 (its
 * own process group) over loopback TCP, P2 to P5 likewise; P3 (a third process group) forks
 * P4 and P5; P4 forks P6 and P7, P6 forks P9, P7 forks P10, P10 forks P11 and P12, P5 forks P8.
 * Pipes as in figure 10: A (P8 and P12 write, P4 reads), B (P5 writes, P8 reads), C (P9 writes,
 * P10 reads), D (P11 writes, P12 reads). P4 connects to the next host. P3, P6, P7 hold no
 * sockets or pipes. P1, P2 and P3 are re-parented to init, as in figure 10.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { killQuietly, startDetached, waitFor } from './structures.js';

const SCRIPT = String.raw`
import json, os, signal, socket, sys, time
cfg = json.loads(sys.argv[1])
HOLD = []  # sockets stay referenced forever: never garbage-collected, never closed twice

def note_pid():
    fd = os.open(os.path.join(cfg['statusDir'], 'pids'), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.write(fd, (str(os.getpid()) + '\n').encode())
    os.close(fd)

def keep_only(*keep):
    wanted = {0, 1, 2, *keep}
    for name in os.listdir('/proc/self/fd'):
        if int(name) not in wanted:
            try:
                os.close(int(name))
            except OSError:
                pass

def ready(label, **extra):
    path = os.path.join(cfg['statusDir'], label)
    with open(path + '.tmp', 'w') as f:
        json.dump(dict(pid=os.getpid(), **extra), f)
    os.rename(path + '.tmp', path)

def forever():
    while True:
        signal.pause()

def fork(child):
    if os.fork() == 0:
        try:
            note_pid()
            child()
        finally:
            os._exit(1)

def detach(child):
    # Double fork: the grandchild is re-parented to init, in a process group of its own.
    pid = os.fork()
    if pid == 0:
        if os.fork() == 0:
            try:
                os.setpgid(0, 0)
                note_pid()
                child()
            finally:
                os._exit(1)
        os._exit(0)
    os.waitpid(pid, 0)

def listener(host, port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen(8)
    HOLD.append(s)
    return s

def accept(s):
    conn, _ = s.accept()
    HOLD.append(conn)
    return conn

def connect(host, port):
    deadline = time.time() + 15
    while True:
        try:
            s = socket.create_connection((host, port))
            HOLD.append(s)
            return s
        except ConnectionRefusedError:
            if time.time() > deadline:
                raise
            time.sleep(0.02)

def p1():
    lst = listener(cfg['bind'], cfg['ports'][0])
    accept(lst)
    detach(p2)
    connect('127.0.0.1', cfg['ports'][1])
    ready('P1')
    forever()

def p2():
    keep_only()
    lst = listener('127.0.0.1', cfg['ports'][1])
    accept(lst)
    detach(p3)
    connect('127.0.0.1', cfg['ports'][2])
    ready('P2')
    forever()

def p3():
    keep_only()
    a_r, a_w = os.pipe()
    fork(lambda: p4(a_r, a_w))
    fork(lambda: p5(a_w))
    os.close(a_r)
    os.close(a_w)
    ready('P3')
    forever()

def p4(a_r, a_w):
    keep_only(a_r, a_w)
    c_r, c_w = os.pipe()
    fork(lambda: p6(c_w))
    fork(lambda: p7(c_r, a_w))
    os.close(c_r)
    os.close(c_w)
    os.close(a_w)
    s = connect(cfg['next'][0], cfg['next'][1])
    ready('P4', localPort=s.getsockname()[1], localAddress=s.getsockname()[0])
    forever()

def p5(a_w):
    keep_only(a_w)
    lst = listener('127.0.0.1', cfg['ports'][2])
    b_r, b_w = os.pipe()
    fork(lambda: p8(a_w, b_r))
    os.close(a_w)
    os.close(b_r)
    accept(lst)
    ready('P5')
    forever()

def leaf(label, *fds):
    def run():
        keep_only(*fds)
        ready(label)
        forever()
    return run

def p6(c_w):
    keep_only(c_w)
    fork(leaf('P9', c_w))
    os.close(c_w)
    ready('P6')
    forever()

def p7(c_r, a_w):
    keep_only(c_r, a_w)
    fork(lambda: p10(c_r, a_w))
    os.close(c_r)
    os.close(a_w)
    ready('P7')
    forever()

def p8(a_w, b_r):
    leaf('P8', a_w, b_r)()

def p10(c_r, a_w):
    keep_only(c_r, a_w)
    d_r, d_w = os.pipe()
    fork(leaf('P11', d_w))
    fork(leaf('P12', d_r, a_w))
    os.close(d_r)
    os.close(d_w)
    os.close(a_w)
    ready('P10')
    forever()

note_pid()
p1()
`;

/** The labels of figure 9. */
export const FIGURE9_LABELS = ['P1', 'P2', 'P3', 'P4', 'P5', 'P6', 'P7', 'P8', 'P9', 'P10', 'P11', 'P12'] as const;
export type Figure9Label = (typeof FIGURE9_LABELS)[number];

/** A running figure 9 structure. */
export interface Figure9 {
  /** P1's pid: it listens on `ports[0]` until the previous host connects. */
  readonly p1: number;
  /** Waits (bounded) until every process is set up; then returns the pids and P4's outbound local endpoint. */
  ready(timeoutMs?: number): Promise<{ pids: Map<Figure9Label, number>; p4Local: { address: string; port: number } }>;
  /** SIGKILLs every process the structure started (by pid and process group). */
  kill(): void;
}

/**
 * Starts the structure: P1 listens on `bind:ports[0]`, P2 on 127.0.0.1:ports[1], P5 on
 * 127.0.0.1:ports[2] (the paper's 8010, 8011, 8012); P4 connects to `next`.
 */
export async function startFigure9(options: {
  bind: string;
  ports: readonly [number, number, number];
  next: { host: string; port: number };
}): Promise<Figure9> {
  const statusDir = mkdtempSync(join(tmpdir(), 'stop-fig9-'));
  const config = JSON.stringify({ bind: options.bind, ports: options.ports, next: [options.next.host, options.next.port], statusDir });
  const launched = await startDetached(['/usr/bin/python3', '-c', SCRIPT, config]);
  const readStatus = (label: string): { pid: number; localPort?: number; localAddress?: string } | undefined => {
    try {
      return JSON.parse(readFileSync(join(statusDir, label), 'utf8')) as { pid: number; localPort?: number; localAddress?: string };
    } catch {
      return undefined;
    }
  };
  return {
    p1: launched.pid,
    async ready(timeoutMs = 20_000) {
      const pids = await waitFor(
        'all figure 9 processes to be set up',
        () => {
          const found = new Map<Figure9Label, number>();
          for (const label of FIGURE9_LABELS) {
            const status = readStatus(label);
            if (status === undefined) return undefined;
            found.set(label, status.pid);
          }
          return found;
        },
        { timeoutMs },
      );
      const p4 = readStatus('P4');
      return { pids, p4Local: { address: p4?.localAddress ?? '', port: p4?.localPort ?? 0 } };
    },
    kill() {
      let pids: number[] = [];
      try {
        pids = readFileSync(join(statusDir, 'pids'), 'utf8')
          .split('\n')
          .filter((line) => line.length > 0)
          .map(Number);
      } catch {
        // Nothing was started beyond P1.
      }
      launched.kill();
      for (const pid of pids) {
        killQuietly(-pid);
        killQuietly(pid);
      }
      rmSync(statusDir, { recursive: true, force: true });
    },
  };
}
