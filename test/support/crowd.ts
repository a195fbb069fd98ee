/**
 * Hostile host states for SV requests (issue 13), built cheaply by one Python process: many
 * processes sharing one pipe with the holder of a connection, optionally with megabyte
 * command lines, or one process holding thousands of descriptors and the connection.
 */
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';

/** What {@link startCrowd} builds. */
export interface CrowdSpec {
  /**
   * `pipe`: `count` children (`sleep`) inherit both ends of one pipe from the holder;
   * `cmdline`: the same with `sh -c 'read x'` children whose command lines are `argBytes` long;
   * `fds`: no children, the holder itself keeps `count` descriptors (UNIX socket pairs).
   */
  readonly mode: 'pipe' | 'cmdline' | 'fds';
  readonly count: number;
  /** Where the holder connects (the "next host" the SV request asks about). */
  readonly connectTo: { readonly host: string; readonly port: number };
  /** For `cmdline`: bytes of each child's command line (in arguments under the kernel's 128 KiB each). */
  readonly argBytes?: number;
  /** How long building it may take; default 120 s. */
  readonly timeoutMs?: number;
}

/** A running crowd. */
export interface Crowd {
  /** The holder of the connection (the process group leader, a child of init). */
  readonly pid: number;
  /** The holder's local port of the connection. */
  readonly localPort: number;
  /** The children's pids. */
  readonly children: readonly number[];
  /** SIGKILLs the whole process group (the holder and every child). Idempotent. */
  kill(): void;
}

/**
 * The holder is daemonized (its parent is init, its stdio /dev/null) so that nothing links it
 * to the test process but the queried connection, whose peer the closure does not follow: the
 * crowd is the whole closure. It reports on a pipe its children do not inherit, and kills its
 * process group once the test process is gone (a crashed test leaves no crowd behind). The
 * holder leads a process group of its own (the session's leader is the parent it left), so
 * that `kill()` reaches the holder and every child by the pid it reports.
 */
const CROWD = String.raw`
import os, sys, socket, resource, time, signal
mode, count, host, port, arg_bytes, watch = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
report_r, report_w = os.pipe()
if os.fork() != 0:
    os.close(report_w)
    data = b''
    while not data.endswith(b'\n'):
        chunk = os.read(report_r, 65536)
        if not chunk:
            break
        data += chunk
    sys.stdout.write(data.decode())
    sys.stdout.flush()
    os._exit(0 if data.startswith(b'ready') else 1)
os.close(report_r)
os.setsid()
if os.fork() != 0:
    os._exit(0)
os.setpgid(0, 0)
try:
    null = os.open('/dev/null', os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    if mode == 'fds':
        need = count + 64
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if need > soft:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (need, max(hard, need)))
            except (ValueError, OSError):
                resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    r, w = os.pipe()
    os.set_inheritable(r, True)
    os.set_inheritable(w, True)
    pairs = [socket.socketpair() for _ in range(count // 2)] if mode == 'fds' else []
    conn = socket.create_connection((host, port))
    children = []
    if mode != 'fds':
        piece = 100000
        args = ['a' * (piece - 1)] * (arg_bytes // piece)
        for i in range(count):
            pid = os.fork()
            if pid == 0:
                try:
                    if mode == 'cmdline':
                        os.dup2(r, 0)
                        os.execv('/bin/sh', ['sh', '-c', 'read x', 'sh'] + args)
                    else:
                        os.execv('/bin/sleep', ['sleep', '1000000'])
                finally:
                    os._exit(127)
            children.append(pid)
        want = b'sh\n' if mode == 'cmdline' else b'sleep\n'
        for pid in children:
            while True:
                with open('/proc/%d/comm' % pid, 'rb') as f:
                    if f.read() == want:
                        break
                time.sleep(0.001)
    os.write(report_w, ('ready %d %d %s\n' % (os.getpid(), conn.getsockname()[1], ' '.join(map(str, children)))).encode())
except BaseException as error:
    os.write(report_w, ('failed %r\n' % (error,)).encode())
    os.killpg(0, signal.SIGKILL)
os.close(report_w)
while True:
    time.sleep(1)
    try:
        os.kill(watch, 0)
    except ProcessLookupError:
        os.killpg(0, signal.SIGKILL)
`;

/** Starts a crowd and resolves once every child has exec'd; rejects (and kills it) on failure or timeout. */
export function startCrowd(spec: CrowdSpec): Promise<Crowd> {
  const argv = [spec.mode, spec.count, spec.connectTo.host, spec.connectTo.port, spec.argBytes ?? 0, process.pid].map(String);
  const child = spawn('/usr/bin/python3', ['-c', CROWD, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
  let pid = 0;
  let killed = false;
  const kill = (): void => {
    if (killed || pid === 0) return;
    killed = true;
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // ESRCH: the group is gone already.
    }
  };
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => {
    stderr += chunk;
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      kill();
      reject(new Error(`The ${spec.mode} crowd of ${spec.count} was not ready within ${spec.timeoutMs ?? 120_000} ms: ${stderr}`));
    }, spec.timeoutMs ?? 120_000);
    const lines = createInterface({ input: child.stdout });
    lines.once('line', (line) => {
      clearTimeout(timer);
      const [word, holder, port, ...children] = line.trim().split(' ');
      if (word !== 'ready') {
        reject(new Error(`The crowd said ${JSON.stringify(line)}: ${stderr}`));
        return;
      }
      pid = Number(holder);
      resolve({ pid, localPort: Number(port), children: children.map(Number), kill });
    });
    child.once('exit', (code) => {
      if (code === 0) return;
      clearTimeout(timer);
      reject(new Error(`The crowd exited with ${code}: ${stderr}`));
    });
  });
}

/** Peak resident memory of a process (`VmHWM` of /proc/PID/status), in bytes. */
export async function readPeakMemory(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const match = /^VmHWM:\s+(\d+) kB$/m.exec(status);
  if (match?.[1] === undefined) throw new Error(`No VmHWM in /proc/${pid}/status`);
  return Number(match[1]) * 1024;
}
