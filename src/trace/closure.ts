/**
 * The process/IPC closure of a connection (paper 3.2, 3.5 to 3.7): the processes that hold
 * the queried socket and their ancestors, every process reachable from them through pipes,
 * UNIX sockets and host-local TCP connections (with its ancestors, repeatedly), and the
 * connections of all of them that lead to a previous host. Pure: it only calls the
 * {@link HostView} interface, so the paper's figures are unit tests (figures.ts).
 */
import { MAX_CMDLINE_BYTES, type HostView, type OpenFd, type ProcessFacts, type ProcessInfo, type TcpSocket } from '../host/types.js';
import { ClosureHost, copyEndpoint, copyTcp, sameEndpoint } from './closure-host.js';
import {
  DEFAULT_CLOSURE_LIMITS,
  DEFAULT_UNFOLLOWED_UNIX_PATHS,
  MAX_LISTED_PIDS,
  MAX_PAIR_LINKS,
  type AnalysisProblem,
  type Closure,
  type ClosureChannel,
  type ClosureIpc,
  type ClosureLink,
  type ClosurePipe,
  type ClosureProcess,
  type ClosureSocket,
  type ResolveClosureOptions,
  type UpstreamCandidate,
} from './types.js';

/** Default {@link ResolveClosureOptions.maxProcesses}. */
export const DEFAULT_MAX_PROCESSES = DEFAULT_CLOSURE_LIMITS.maxProcesses;
/** Default {@link ResolveClosureOptions.maxIpcPerProcess}. */
export const DEFAULT_MAX_IPC_PER_PROCESS = 64;

/**
 * Resolves the closure of `options.socket` on `host`.
 *
 * Order: the holders of the queried socket (every one: paper 4.1 assumed a single holder,
 * which an attacker can exploit by letting a child in its own process group hold it too) and
 * their ancestors are `primary`, in discovery order. Then each process's pipes and sockets
 * are followed depth first, in descriptor order, as the paper walks figure 9: a process
 * found through IPC is added with its ancestors, and each of them is analysed before the
 * next peer of the descriptor that found it.
 *
 * What is followed: every pipe (to the holders of its other end: paper 3.6); every UNIX socket (holders of the same
 * socket and of its peer); every host-local TCP connection — remote address is this host's
 * (loopback or an own address, paper 4) — to the holders of the reversed 4-tuple. Not
 * followed: non-local TCP connections (they lead to other hosts: upstream candidates),
 * listeners (preforked servers share them; following would pull in every worker and all its
 * clients), the queried socket's peer (when the requester is local it is the requester),
 * and the IPC of roots, hubs and system sockets (see {@link ClosureIpc} and the options).
 *
 * Upstream candidates: non-local TCP connections of closure processes in state ESTABLISHED
 * or CLOSE_WAIT (the previous hop may have only half-closed, e.g. `nc -N`, and still be
 * there to answer) whose direction is `inbound` or `unknown`, never the queried connection.
 * Outbound connections are not candidates: the host at their other end accepted them, so a
 * daemon there answers an error for them (DESIGN.md duty 2), and the connection from the
 * previous hop into this host is what a traceback follows. Paper 4 sends requests to every
 * socket only because its Linux port could not tell direction; the listener check can.
 *
 * Processes that exit during the analysis are listed in `vanished` and skipped. Lookup
 * failures of the host (HostLookupError) propagate.
 *
 * Cost (issue 13): linear in the (process, descriptor) pairs read, and bounded. Each channel
 * (pipe end, socket pair) is searched for once; an object whose holders would need more than
 * {@link MAX_PAIR_LINKS} pairwise links becomes one {@link ClosureChannel}; per-descriptor pid
 * lists are cut at {@link MAX_LISTED_PIDS}; and processes, descriptors examined (per process
 * and in all) and links have bounds ({@link DEFAULT_CLOSURE_LIMITS}) that, when hit, set
 * `truncated` and say so in `problems` (`limit-processes`, `limit-descriptors`, `limit-links`).
 */
export function resolveClosure(host: HostView, options: ResolveClosureOptions): Closure {
  return new ClosureAnalysis(host, options).run();
}

interface StackFrame {
  readonly pid: number;
  readonly steps: Generator<number, void, undefined>;
}

class ClosureAnalysis {
  readonly #host: HostView;
  /** The host's answers for this analysis, each question asked once. */
  readonly #lookups: ClosureHost;
  readonly #queried: TcpSocket;
  readonly #maxProcesses: number;
  readonly #maxIpc: number;
  readonly #maxFdsPerProcess: number;
  readonly #maxLinks: number;
  readonly #maxDescriptors: number;
  /** Descriptors that may still be examined in this analysis. */
  #descriptorsLeft: number;

  readonly #infos = new Map<number, ProcessInfo>();
  /** Processes read but not (yet) in the closure, so each is read once. */
  readonly #peeked = new Map<number, ProcessInfo | undefined>();
  readonly #roles = new Map<number, 'primary' | 'resolved'>();
  readonly #ipc = new Map<number, ClosureIpc>();
  readonly #order: number[] = [];
  readonly #vanished = new Set<number>();
  readonly #queriedHolders = new Set<number>();
  #truncated = false;
  /** The descriptors examined of each process (its first ones, within the bounds). */
  readonly #examined = new Map<number, readonly OpenFd[]>();
  /** Processes whose descriptors were not all examined: pid -> how many were left out. */
  readonly #omitted = new Map<number, number>();
  #linksCut = false;

  readonly #resolvedChannels = new Set<string>();
  #holderIndex: Map<string, ObjectHolders> | undefined;

  constructor(host: HostView, options: ResolveClosureOptions) {
    this.#host = host;
    this.#queried = copyTcp(options.socket);
    this.#maxProcesses = positiveInteger('maxProcesses', options.maxProcesses ?? DEFAULT_MAX_PROCESSES);
    this.#maxIpc = positiveInteger('maxIpcPerProcess', options.maxIpcPerProcess ?? DEFAULT_MAX_IPC_PER_PROCESS);
    this.#maxFdsPerProcess = positiveInteger('maxFdsPerProcess', options.maxFdsPerProcess ?? DEFAULT_CLOSURE_LIMITS.maxFdsPerProcess);
    this.#maxDescriptors = positiveInteger('maxDescriptors', options.maxDescriptors ?? DEFAULT_CLOSURE_LIMITS.maxDescriptors);
    this.#descriptorsLeft = this.#maxDescriptors;
    this.#maxLinks = positiveInteger('maxLinks', options.maxLinks ?? DEFAULT_CLOSURE_LIMITS.maxLinks);
    this.#lookups = new ClosureHost(host, {
      queried: this.#queried,
      unfollowedUnixPaths: options.unfollowedUnixPaths ?? DEFAULT_UNFOLLOWED_UNIX_PATHS,
      ...(options.ephemeralPorts === undefined ? {} : { ephemeralPorts: options.ephemeralPorts }),
    });
  }

  run(): Closure {
    const socket = this.#queried;
    // inode 0: a TIME_WAIT or orphaned socket that no process holds any more.
    const holders = socket.inode > 0 ? this.#lookups.holdersOf(socket.inode, socket.uid) : [];
    for (const pid of holders) {
      this.#addWithAncestors(pid, 'primary');
      if (this.#infos.has(pid)) this.#queriedHolders.add(pid);
    }
    for (const pid of [...this.#order]) {
      if (this.#truncated) break;
      this.#follow(pid);
    }
    for (const pid of this.#order) if (!this.#ipc.has(pid)) this.#ipc.set(pid, 'truncated');

    const processes = this.#order.map((pid) => this.#describe(pid));
    const { links, channels } = this.#links();
    return {
      queried: copyTcp(socket),
      processes,
      links,
      channels,
      upstream: this.#upstream(processes),
      vanished: [...this.#vanished],
      truncated: this.#truncated || this.#omitted.size > 0 || this.#linksCut,
      problems: this.#problems(),
    };
  }

  #problems(): AnalysisProblem[] {
    const problems: AnalysisProblem[] = [];
    if (this.#truncated) {
      problems.push({ code: 'limit-processes', message: `The analysis stopped at ${this.#maxProcesses} processes; processes are missing from this record` });
    }
    if (this.#omitted.size > 0) {
      let most: [number, number] = [0, 0];
      for (const entry of this.#omitted) if (entry[1] > most[1]) most = entry;
      const [pid, count] = most;
      const total = count + (this.#examined.get(pid)?.length ?? 0);
      problems.push({
        code: 'limit-descriptors',
        message:
          `The sockets and pipes of ${this.#omitted.size} process${this.#omitted.size === 1 ? ' were' : 'es were'} not all examined ` +
          `(at most ${this.#maxFdsPerProcess} per process and ${this.#maxDescriptors} in all; pid ${pid} holds ${total}, ` +
          `${total - count} examined); the others are missing from this record`,
      });
    }
    let cut = 0;
    for (const pid of this.#order) if (this.#infos.get(pid)?.cmdlineTruncated !== undefined) cut += 1;
    if (cut > 0) {
      problems.push({
        code: 'limit-cmdline',
        message: `The command lines of ${cut} process${cut === 1 ? ' are' : 'es are'} cut to their first ${MAX_CMDLINE_BYTES} bytes; the length and SHA-256 of each whole one are kept`,
      });
    }
    if (this.#linksCut) {
      problems.push({ code: 'limit-links', message: `The analysis stopped at ${this.#maxLinks} links; links are missing from this record` });
    }
    return problems;
  }

  /**
   * The descriptors of `pid` the analysis looks at: all of them, or within the bounds its
   * first ones, and always the queried socket (what the record is about). Decided once per
   * process, so following and describing it see the same list.
   */
  #fdsOf(pid: number): readonly OpenFd[] {
    const known = this.#examined.get(pid);
    if (known !== undefined) return known;
    const all = this.#infos.get(pid)?.fds ?? [];
    const limit = Math.min(this.#maxFdsPerProcess, this.#descriptorsLeft);
    let fds = all;
    if (all.length > limit) {
      fds = all.slice(0, limit);
      const queried = all.find((fd) => fd.kind === 'socket' && fd.inode === this.#queried.inode);
      if (queried !== undefined && !fds.includes(queried)) fds = [...fds.slice(0, Math.max(0, limit - 1)), queried];
      this.#omitted.set(pid, all.length - fds.length);
    }
    this.#descriptorsLeft = Math.max(0, this.#descriptorsLeft - fds.length);
    this.#examined.set(pid, fds);
    return fds;
  }

  /** Adds `pid` and its not yet known ancestors; returns the pids added, in order. */
  #addWithAncestors(pid: number, role: 'primary' | 'resolved'): number[] {
    const added: number[] = [];
    let current = pid;
    for (;;) {
      if (this.#infos.has(current) || this.#vanished.has(current)) break;
      if (this.#order.length >= this.#maxProcesses) {
        this.#truncated = true;
        break;
      }
      const info = this.#peek(current);
      if (info === undefined) {
        this.#vanished.add(current);
        break;
      }
      this.#infos.set(current, info);
      this.#roles.set(current, role);
      this.#order.push(current);
      added.push(current);
      // Linux has no /proc/0: the chain ends at the process whose ppid is 0 (paper fig. 8's
      // `swapper [0]` is not invented).
      if (info.ppid <= 0 || info.ppid === current) break;
      current = info.ppid;
    }
    return added;
  }

  /**
   * Follows the IPC of `start` depth first. Recursion is kept on an explicit stack of
   * generators so a chain of thousands of pipes cannot overflow the call stack.
   */
  #follow(start: number): void {
    if (this.#ipc.has(start)) return;
    const stack: StackFrame[] = [];
    const push = (pid: number): void => {
      if (this.#ipc.has(pid)) return;
      const reason = this.#notFollowedReason(pid);
      if (reason !== undefined) this.#ipc.set(pid, reason);
      else stack.push({ pid, steps: this.#steps(pid) });
    };
    push(start);
    while (stack.length > 0 && !this.#truncated) {
      const top = stack[stack.length - 1];
      if (top === undefined) break;
      const step = top.steps.next();
      if (step.done === true) {
        stack.pop();
        this.#ipc.set(top.pid, 'followed');
      } else {
        push(step.value);
      }
    }
  }

  /** Yields each process newly added through the descriptors of `pid`, to be followed before the next. */
  *#steps(pid: number): Generator<number, void, undefined> {
    const info = this.#infos.get(pid);
    if (info === undefined) return;
    for (const fd of this.#fdsOf(pid)) {
      for (const peer of this.#connected(info, fd)) {
        yield* this.#addWithAncestors(peer, 'resolved');
        if (this.#truncated) return;
      }
    }
  }

  #notFollowedReason(pid: number): ClosureIpc | undefined {
    if (this.#queriedHolders.has(pid)) return undefined;
    const info = this.#infos.get(pid);
    if (info === undefined) return 'truncated';
    if (info.ppid <= 0) return 'root';
    // Thousands of descriptors make a hub whatever they are: counted, not resolved (issue 13).
    if (info.fds.length > this.#maxFdsPerProcess) return 'hub';
    let count = 0;
    for (const fd of this.#fdsOf(pid)) if (this.#isFollowable(pid, fd)) count += 1;
    return count > this.#maxIpc ? 'hub' : undefined;
  }

  #isFollowable(pid: number, fd: OpenFd): boolean {
    if (fd.kind === 'pipe') return true;
    if (fd.inode === this.#queried.inode) return false;
    const tcp = this.#lookups.tcp(pid, fd);
    if (tcp !== undefined) return this.#lookups.isLocalConnection(tcp);
    const unix = this.#lookups.unix(pid, fd);
    return unix !== undefined && !this.#lookups.isUnfollowedUnix(unix);
  }

  /**
   * The processes at the other ends of (and sharing) one descriptor, none when it is not
   * followed or its channel was resolved already: each pipe, UNIX socket pair and local TCP
   * connection is searched for once, as the paper does ("the pipe that P8 and P5 have opened
   * is searched for"), and every holder it found is being added by whoever resolved it.
   * Lazy: once a bound stops the analysis, the remaining holders are not read.
   */
  *#connected(info: ProcessInfo, fd: OpenFd): Generator<number, void, undefined> {
    if (!this.#isFollowable(info.pid, fd)) return;
    const uid = info.uid.effective;
    if (fd.kind === 'pipe') {
      // Paper 3.6: a pipe resolves to the processes at its *other* end (OpenBSD's remote pipe
      // structure). Linux gives both ends one inode, so the end comes from each fd's mode.
      // Holders of the same end only (co-writers of one log pipe) are not linked through it.
      if (!this.#claim(`pipe:${fd.inode}:${fd.end}`)) return;
      const wanted = fd.end === 'write' ? 'read' : fd.end === 'read' ? 'write' : undefined;
      for (const pid of this.#lookups.holdersOf(fd.inode, uid)) {
        if (pid !== info.pid && (wanted === undefined || this.#holdsPipeEnd(pid, fd.inode, wanted))) yield pid;
        if (this.#truncated) return;
      }
      return;
    }
    const tcp = this.#lookups.tcp(info.pid, fd);
    if (tcp !== undefined) {
      if (!this.#claim(`socket:${tcp.inode}`)) return;
      yield* this.#lookups.holdersOf(tcp.inode, tcp.uid);
      const other = this.#lookups.reverse(tcp);
      if (other === undefined) return;
      this.#claim(`socket:${other.inode}`);
      yield* this.#lookups.holdersOf(other.inode, other.uid);
      return;
    }
    const unix = this.#lookups.unix(info.pid, fd);
    if (unix === undefined || !this.#claim(`socket:${unix.inode}`)) return;
    yield* this.#lookups.holdersOf(unix.inode, uid);
    if (unix.peer <= 0) return;
    this.#claim(`socket:${unix.peer}`);
    yield* this.#lookups.holdersOf(unix.peer, uid);
  }

  /**
   * Whether `pid` holds `inode` at end `end` (or opened read-write); a vanished process does.
   * Processes read only for this count against the process bound too (twice maxProcesses):
   * a pipe shared by 20 000 writers must not cost 20 000 reads when none is added.
   */
  #holdsPipeEnd(pid: number, inode: number, end: 'read' | 'write'): boolean {
    if (!this.#infos.has(pid) && !this.#peeked.has(pid) && this.#host.pipeEndOf !== undefined) {
      // One cheap question instead of reading the process: most co-readers never join.
      const held = this.#host.pipeEndOf(pid, inode);
      // None: it closed the pipe or exited since findHolders (let #addWithAncestors see which).
      return held === undefined ? this.#peek(pid) === undefined : held === end || held === 'both';
    }
    if (!this.#infos.has(pid) && !this.#peeked.has(pid) && this.#peeked.size >= 2 * this.#maxProcesses) {
      this.#truncated = true;
      return false;
    }
    const info = this.#peek(pid);
    if (info === undefined) return true; // let #addWithAncestors record it as vanished
    return info.fds.some((fd) => fd.kind === 'pipe' && fd.inode === inode && (fd.end === end || fd.end === 'both'));
  }

  /** A process as read once for this analysis (closure member or only looked at). */
  #peek(pid: number): ProcessInfo | undefined {
    const known = this.#infos.get(pid);
    if (known !== undefined) return known;
    if (!this.#peeked.has(pid)) this.#peeked.set(pid, this.#host.getProcess(pid));
    return this.#peeked.get(pid);
  }

  /** Marks a channel end as resolved; false when it already was. */
  #claim(key: string): boolean {
    if (this.#resolvedChannels.has(key)) return false;
    this.#resolvedChannels.add(key);
    return true;
  }

  /**
   * Closure processes holding a socket or pipe inode, in closure order, each once (indexed
   * once the closure is complete, from the examined descriptors). Shared: never modify it.
   */
  #closureHolders(kind: 'socket' | 'pipe', inode: number): ObjectHolders {
    if (this.#holderIndex === undefined) {
      const index = new Map<string, { pids: number[]; writers: number[]; readers: number[] }>();
      for (const pid of this.#order) {
        for (const fd of this.#fdsOf(pid)) {
          const key = `${fd.kind}:${fd.inode}`;
          let entry = index.get(key);
          if (entry === undefined) {
            entry = { pids: [], writers: [], readers: [] };
            index.set(key, entry);
          }
          if (entry.pids.at(-1) !== pid) entry.pids.push(pid);
          if (fd.kind !== 'pipe') continue;
          if (fd.end !== 'read' && entry.writers.at(-1) !== pid) entry.writers.push(pid);
          if (fd.end !== 'write' && entry.readers.at(-1) !== pid) entry.readers.push(pid);
        }
      }
      this.#holderIndex = index;
    }
    return this.#holderIndex.get(`${kind}:${inode}`) ?? NO_HOLDERS;
  }

  #describe(pid: number): ClosureProcess {
    const info = this.#infos.get(pid);
    if (info === undefined) throw new Error(`Closure lost process ${pid}`);
    const sockets: ClosureSocket[] = [];
    const pipes: ClosurePipe[] = [];
    for (const fd of this.#fdsOf(pid)) {
      if (fd.kind === 'pipe') {
        const others = listPids(this.#closureHolders('pipe', fd.inode).pids, pid);
        pipes.push({ fd: fd.fd, inode: fd.inode, end: fd.end, otherPids: others.pids, ...countField('otherCount', others) });
        continue;
      }
      const shared = listPids(this.#closureHolders('socket', fd.inode).pids, pid);
      const sharedFields = { sharedWith: shared.pids, ...countField('sharedCount', shared) };
      const tcp = this.#lookups.tcp(pid, fd);
      if (tcp !== undefined) {
        const other = this.#lookups.knownReverse(tcp);
        const peers = listPids(other ? this.#closureHolders('socket', other.inode).pids : [], undefined);
        sockets.push({
          kind: 'tcp',
          fd: fd.fd,
          inode: tcp.inode,
          state: tcp.state,
          local: copyEndpoint(tcp.local),
          remote: copyEndpoint(tcp.remote),
          direction: this.#lookups.direction(tcp),
          queried: tcp.inode === this.#queried.inode,
          peerPids: peers.pids,
          ...countField('peerCount', peers),
          ...sharedFields,
        });
        continue;
      }
      const unix = this.#lookups.unix(pid, fd);
      if (unix !== undefined) {
        const peers = listPids(unix.peer > 0 ? this.#closureHolders('socket', unix.peer).pids : [], undefined);
        sockets.push({
          kind: 'unix',
          fd: fd.fd,
          inode: unix.inode,
          path: unix.path,
          type: unix.type,
          peer: unix.peer,
          peerPids: peers.pids,
          ...countField('peerCount', peers),
          ...sharedFields,
        });
        continue;
      }
      sockets.push({ kind: 'other', fd: fd.fd, inode: fd.inode });
    }
    const omitted = this.#omitted.get(pid);
    return {
      ...copyProcessFacts(info),
      role: this.#roles.get(pid) ?? 'resolved',
      ipc: this.#ipc.get(pid) ?? 'truncated',
      sockets,
      pipes,
      ...(omitted === undefined ? {} : { fdsOmitted: omitted }),
    };
  }

  /**
   * Parent links, and for each IPC object among closure processes either its pairwise links
   * (few holders) or one channel (many): linear in the examined descriptors, whatever the
   * number of holders of one object.
   */
  #links(): { links: ClosureLink[]; channels: ClosureChannel[] } {
    const links: ClosureLink[] = [];
    const channels: ClosureChannel[] = [];
    const seen = new Set<string>();
    const room = (): boolean => {
      if (links.length + channels.length < this.#maxLinks) return true;
      this.#linksCut = true;
      return false;
    };
    const add = (link: ClosureLink): void => {
      if (link.from === link.to) return;
      const key = `${link.kind}:${link.from}:${link.to}:${link.inodes.join(',')}`;
      if (seen.has(key) || !room()) return;
      seen.add(key);
      links.push(link);
    };
    /** Every process of `from` to every one of `to`: pairwise when few, else one channel. */
    const connect = (kind: ClosureLink['kind'] & ClosureChannel['kind'], inodes: number[], from: readonly number[], to: readonly number[]): void => {
      if (from.length * to.length <= MAX_PAIR_LINKS) {
        for (const source of from) for (const target of to) add({ kind, from: source, to: target, inodes });
      } else if (room()) {
        channels.push({ kind, inodes, from: [...from], to: [...to] });
      }
    };
    for (const pid of this.#order) {
      const ppid = this.#infos.get(pid)?.ppid;
      if (ppid !== undefined && this.#infos.has(ppid)) add({ kind: 'parent', from: ppid, to: pid, inodes: [] });
    }
    const done = new Set<string>();
    for (const pid of this.#order) {
      for (const fd of this.#fdsOf(pid)) {
        const key = `${fd.kind}:${fd.inode}`;
        if (done.has(key)) continue;
        done.add(key);
        if (fd.kind === 'pipe') {
          // Writer-to-reader links (an O_RDWR end is both).
          const { writers, readers } = this.#closureHolders('pipe', fd.inode);
          connect('pipe', [fd.inode], writers, readers);
          continue;
        }
        const holders = this.#closureHolders('socket', fd.inode).pids;
        if (holders.length - 1 > MAX_PAIR_LINKS) {
          if (room()) channels.push({ kind: 'shared', inodes: [fd.inode], from: [...holders], to: [] });
        } else {
          const first = holders[0];
          if (first !== undefined) connect('shared', [fd.inode], [first], holders.slice(1));
        }
        const tcp = this.#lookups.tcp(pid, fd);
        const reversed = tcp === undefined ? undefined : this.#lookups.knownReverse(tcp);
        if (tcp !== undefined && reversed) {
          done.add(`socket:${reversed.inode}`);
          // Point from the connecting side to the accepting side.
          const accepting = this.#lookups.direction(tcp) === 'inbound' || this.#lookups.direction(reversed) === 'outbound';
          const [client, server] = accepting ? [reversed, tcp] : [tcp, reversed];
          connect(
            'tcp',
            [client.inode, server.inode],
            this.#closureHolders('socket', client.inode).pids,
            this.#closureHolders('socket', server.inode).pids,
          );
          continue;
        }
        const unix = tcp === undefined ? this.#lookups.unix(pid, fd) : undefined;
        if (unix !== undefined && unix.peer > 0) {
          done.add(`socket:${unix.peer}`);
          connect('unix', [unix.inode, unix.peer], holders, this.#closureHolders('socket', unix.peer).pids);
        }
      }
    }
    return { links, channels };
  }

  #upstream(processes: readonly ClosureProcess[]): UpstreamCandidate[] {
    const byInode = new Map<number, { candidate: UpstreamCandidate; pids: number[]; seen: Set<number> }>();
    const queried = this.#queried;
    for (const process of processes) {
      for (const socket of process.sockets) {
        if (socket.kind !== 'tcp' || socket.queried) continue;
        if (socket.state !== 'ESTABLISHED' && socket.state !== 'CLOSE_WAIT') continue;
        if (socket.direction !== 'inbound' && socket.direction !== 'unknown') continue;
        if (this.#host.isLocalAddress(socket.remote.address)) continue;
        // The queried connection is never its own upstream, whatever inode it shows now.
        if (sameEndpoint(socket.local, queried.local) && sameEndpoint(socket.remote, queried.remote)) continue;
        const entry = byInode.get(socket.inode);
        if (entry !== undefined) {
          if (!entry.seen.has(process.pid)) {
            entry.seen.add(process.pid);
            entry.pids.push(process.pid);
          }
          continue;
        }
        const pids = [process.pid];
        byInode.set(socket.inode, {
          pids,
          seen: new Set(pids),
          candidate: {
            local: copyEndpoint(socket.local),
            remote: copyEndpoint(socket.remote),
            inode: socket.inode,
            state: socket.state,
            direction: socket.direction,
            pids,
          },
        });
      }
    }
    return [...byInode.values()].map((entry) => entry.candidate);
  }
}

/** The closure processes holding one object: all, and for pipes the writers and readers. */
interface ObjectHolders {
  readonly pids: readonly number[];
  readonly writers: readonly number[];
  readonly readers: readonly number[];
}

const NO_HOLDERS: ObjectHolders = { pids: [], writers: [], readers: [] };

/** The first {@link MAX_LISTED_PIDS} of `pids` other than `self`, and how many there are. */
function listPids(pids: readonly number[], self: number | undefined): { pids: number[]; count: number } {
  const listed: number[] = [];
  let count = 0;
  for (const pid of pids) {
    if (pid === self) continue;
    count += 1;
    if (listed.length < MAX_LISTED_PIDS) listed.push(pid);
  }
  return { pids: listed, count };
}

/** `{ [name]: count }` when the list was cut, else nothing: records of small closures keep their shape. */
function countField<K extends string>(name: K, list: { pids: readonly number[]; count: number }): Partial<Record<K, number>> {
  return list.count > list.pids.length ? ({ [name]: list.count } as Record<K, number>) : {};
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new RangeError(`Cannot resolve closure: ${name} must be a positive integer, got ${value}`);
  }
  return value;
}

/** A process's facts (everything but its descriptors) as plain copied data, for records and the history. */
export function copyProcessFacts(info: ProcessFacts): ProcessFacts {
  return {
    pid: info.pid,
    ppid: info.ppid,
    name: info.name,
    uid: { real: info.uid.real, effective: info.uid.effective },
    startTime: info.startTime,
    tty: info.tty,
    priority: info.priority,
    nice: info.nice,
    pgid: info.pgid,
    sid: info.sid,
    cmdline: [...info.cmdline],
    ...(info.cmdlineTruncated === undefined ? {} : { cmdlineTruncated: { bytes: info.cmdlineTruncated.bytes, sha256: info.cmdlineTruncated.sha256 } }),
  };
}
