import { createServer, type Server, type Socket } from 'node:net';
import { errnoCode, ListenError } from '../errors.js';
import type { Endpoint } from '../host/types.js';
import { formatRequesterGroup, LineSplitter, normaliseAddress } from '../protocol/index.js';
import { ConnectionSlots } from './connection-slots.js';
import type { Logger } from './logger.js';
import type { QueryOrigin } from './responder.js';

/**
 * Where to listen: an address (`[::]` listens dual stack; IPv4 clients arrive v4-mapped), or
 * an already listening socket passed by systemd socket activation (`LISTEN_FDS`).
 */
export type ListenAddress = { readonly host: string; readonly port: number } | { readonly fd: number };

/** Anything that turns one request line into one reply line. */
export interface LineHandler {
  answer(line: string, origin: QueryOrigin): Promise<string | undefined>;
}

export interface ServerOptions {
  readonly listen: readonly ListenAddress[];
  /**
   * Open connections at most. When full, a newcomer from a requester holding fewer slots
   * evicts the oldest idle connection of the heaviest requester; otherwise it is closed at
   * once, without a reply (RFC 1413 allows it).
   */
  readonly maxConnections: number;
  /** Open connections of one requester group (`formatRequesterGroup`) at most; more are closed at once. */
  readonly maxConnectionsPerRequester: number;
  /** A connection that sends nothing for this long is closed (RFC 1413: 60 to 180 s). */
  readonly idleTimeoutMs: number;
  /** Hard cap on one request line, in bytes. */
  readonly maxLineLength: number;
  /** Lines that may wait on one connection before it stops being read (backpressure). */
  readonly maxPendingLines?: number;
  readonly log: Logger;
}

/**
 * The STOP/IDENT TCP server: frames lines with a hard cap, answers the queries of one
 * connection in order (RFC 1413 allows several per connection), bounds connections and idle
 * time. `close()` stops accepting, lets queries in flight finish, and is idempotent.
 */
export class StopServer {
  readonly #handler: LineHandler;
  #options: ServerOptions;
  readonly #servers: Server[] = [];
  readonly #connections = new Set<Connection>();
  readonly #slots: ConnectionSlots<Connection>;
  /** Connections turned away or evicted since the last log line about them. */
  readonly #turnedAway = { 'requester-limit': 0, 'table-full': 0, evicted: 0 };
  #lastTurnedAwayLog = 0;
  #closing: Promise<void> | undefined;

  constructor(handler: LineHandler, options: ServerOptions) {
    this.#handler = handler;
    this.#options = options;
    this.#slots = new ConnectionSlots(slotLimitsOf(options), (connection) => connection.idle);
  }

  /** Binds every listen address; resolves with the bound endpoints (port 0 becomes the real port). */
  async listen(): Promise<Endpoint[]> {
    const bound: Endpoint[] = [];
    for (const address of this.#options.listen) {
      // allowHalfOpen: a client may send its query and shut down its side (nc does); it still gets the reply.
      const server = createServer({ allowHalfOpen: true }, (socket) => this.#accept(socket));
      await new Promise<void>((resolve, reject) => {
        const fail = (error: Error): void => reject(describeListenError(address, error));
        server.once('error', fail);
        const done = (): void => {
          server.off('error', fail);
          resolve();
        };
        // ipv6Only false: `[::]` serves IPv4 too (DESIGN: default listen [::]:113 dual stack).
        if ('fd' in address) server.listen({ fd: address.fd }, done);
        else server.listen({ host: address.host, port: address.port, ipv6Only: false }, done);
      });
      server.on('error', (error) => this.#options.log.error(`Listener failed: ${error.message}`));
      this.#servers.push(server);
      const info = server.address();
      if (info !== null && typeof info === 'object') bound.push({ address: info.address, port: info.port });
    }
    return bound;
  }

  /** Changes the limits for connections accepted from now on (SIGHUP reload). */
  configure(next: Pick<ServerOptions, 'maxConnections' | 'maxConnectionsPerRequester' | 'idleTimeoutMs' | 'maxLineLength'>): void {
    this.#options = {
      ...this.#options,
      maxConnections: next.maxConnections,
      maxConnectionsPerRequester: next.maxConnectionsPerRequester,
      idleTimeoutMs: next.idleTimeoutMs,
      maxLineLength: next.maxLineLength,
    };
    this.#slots.configure(slotLimitsOf(this.#options));
  }

  /** Number of open client connections. */
  get connectionCount(): number {
    return this.#connections.size;
  }

  /**
   * Serves one already connected socket (inetd mode: the connection is on stdin); resolves
   * when it is closed.
   */
  serve(socket: Socket): Promise<void> {
    return new Promise((resolve) => {
      socket.once('close', () => resolve());
      this.#accept(socket);
    });
  }

  #accept(socket: Socket): void {
    if (this.#closing !== undefined) {
      socket.destroy();
      return;
    }
    const address = socket.remoteAddress === undefined ? '' : normaliseAddress(socket.remoteAddress);
    const group = formatRequesterGroup(address) ?? address;
    const decision = this.#slots.decide(group);
    if (decision.kind === 'refuse') {
      socket.destroy();
      this.#noteTurnedAway(decision.reason);
      return;
    }
    if (decision.kind === 'evict') {
      // Idle by construction: it has no request waiting for its reply (ConnectionSlots).
      this.#slots.remove(decision.victimGroup, decision.victim);
      decision.victim.destroy();
      this.#noteTurnedAway('evicted');
    }
    const connection = new Connection(socket, this.#handler, {
      options: this.#options,
      requesterGroup: group,
      onClose: () => {
        this.#connections.delete(connection);
        this.#slots.remove(group, connection);
      },
    });
    this.#connections.add(connection);
    this.#slots.add(group, connection);
  }

  /**
   * Counts a connection refused or evicted, and says so in the log at most once a minute:
   * under a connection flood a line per connection would flood the log instead.
   */
  #noteTurnedAway(reason: 'requester-limit' | 'table-full' | 'evicted'): void {
    this.#turnedAway[reason] += 1;
    const now = Date.now();
    if (now - this.#lastTurnedAwayLog < 60_000) return;
    this.#lastTurnedAwayLog = now;
    const { 'requester-limit': overShare, 'table-full': full, evicted } = this.#turnedAway;
    this.#options.log.warn(
      `Connection slots: ${overShare} refused (requester over --max-connections-per-requester), ${full} refused (table full, nothing idle to evict), ` +
        `${evicted} idle connections evicted for other requesters, since the last such line`,
    );
    this.#turnedAway['requester-limit'] = 0;
    this.#turnedAway['table-full'] = 0;
    this.#turnedAway.evicted = 0;
  }

  /** Stops accepting, answers what was already received, then closes. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      const stopped = this.#servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve())));
      await Promise.all([...this.#connections].map((connection) => connection.drain()));
      await Promise.all(stopped);
    })();
    return this.#closing;
  }
}

/** Why an address could not be bound, in one sentence that says what to do about it. */
function describeListenError(address: ListenAddress, error: Error): ListenError {
  if ('fd' in address) {
    return new ListenError(`Cannot listen on the socket passed as descriptor ${address.fd} (socket activation): ${error.message}`, { cause: error });
  }
  const where = address.host.includes(':') ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
  const code = errnoCode(error);
  let reason: string;
  if (code === 'EADDRINUSE') reason = 'the address is already in use (another stopd or IDENT daemon?); stop that program or choose another --listen';
  else if (code === 'EADDRNOTAVAIL') reason = 'no interface of this host has that address; choose one of its addresses, or [::] for all, with --listen';
  else if (code === 'EACCES' || code === 'EPERM') reason = 'ports below 1024 need root, CAP_NET_BIND_SERVICE or systemd socket activation';
  else if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') reason = `${address.host} is not a known host name; give an address with --listen`;
  else reason = error.message;
  return new ListenError(`Cannot listen on ${where}: ${reason}`, { cause: error });
}

/** One client connection: its framing, its in-order queue of queries. */
class Connection {
  readonly #socket: Socket;
  readonly #handler: LineHandler;
  #options: ServerOptions;
  readonly #splitter: LineSplitter;
  readonly #origin: QueryOrigin | undefined;
  #queue: Promise<void> = Promise.resolve();
  /** Complete request lines received and not yet answered. */
  #pending = 0;
  #done: Promise<void>;

  constructor(
    socket: Socket,
    handler: LineHandler,
    setup: { options: ServerOptions; requesterGroup: string; onClose: () => void },
  ) {
    const { options, requesterGroup, onClose } = setup;
    this.#socket = socket;
    this.#handler = handler;
    this.#options = options;
    this.#splitter = new LineSplitter({ maxLineLength: options.maxLineLength });
    const { remoteAddress, remotePort, localAddress, localPort } = socket;
    this.#origin =
      remoteAddress === undefined || remotePort === undefined || localAddress === undefined || localPort === undefined
        ? undefined
        : {
            requester: { address: normaliseAddress(remoteAddress), port: remotePort },
            requesterGroup,
            local: { address: normaliseAddress(localAddress), port: localPort },
          };
    this.#done = new Promise((resolve) => socket.once('close', () => resolve()));
    void this.#done.then(onClose);
    socket.setNoDelay(true);
    socket.setTimeout(options.idleTimeoutMs, () => socket.destroy());
    socket.on('error', () => socket.destroy()); // a reset peer is not our failure
    socket.on('data', (chunk: Buffer) => this.#receive(chunk));
    socket.on('end', () => this.#finish());
    if (this.#origin === undefined) socket.destroy(); // already gone
  }

  /** No request waits for its reply: the connection may be evicted to make room. */
  get idle(): boolean {
    return this.#pending === 0;
  }

  /** Closes at once (eviction of an idle connection: nothing is owed to the client). */
  destroy(): void {
    this.#socket.destroy();
  }

  #receive(chunk: Buffer): void {
    for (const event of this.#splitter.push(chunk)) {
      if (event.kind === 'line') {
        this.#enqueue(event.line);
      } else {
        // A line longer than the cap: RFC 1413 lets a client give up after 1000 characters;
        // we close without replying, which the client reads as UNKNOWN-ERROR.
        this.#options.log.warn(`Closing connection from ${this.#origin?.requester.address}: request line over ${this.#options.maxLineLength} bytes`);
        this.#socket.destroy();
        return;
      }
    }
  }

  #enqueue(line: string): void {
    const origin = this.#origin;
    if (origin === undefined) return;
    this.#pending += 1;
    if (this.#pending >= (this.#options.maxPendingLines ?? 16)) this.#socket.pause();
    this.#queue = this.#queue.then(async () => {
      try {
        const reply = await this.#handler.answer(line, origin);
        if (reply === undefined) this.#socket.end();
        else if (!this.#socket.destroyed) this.#socket.write(reply + '\r\n');
      } catch (error) {
        this.#options.log.error(`Unexpected failure answering ${JSON.stringify(line)}: ${String(error)}`);
        this.#socket.destroy();
      } finally {
        this.#pending -= 1;
        if (this.#pending < (this.#options.maxPendingLines ?? 16) && !this.#socket.destroyed) this.#socket.resume();
      }
    });
  }

  #finish(): void {
    // The client half-closed: answer what it sent, then close our side.
    void this.#queue.then(() => this.#socket.end());
  }

  /** Answers queued queries, then ends the connection. */
  async drain(): Promise<void> {
    this.#socket.pause();
    await this.#queue;
    this.#socket.end();
    const timer = setTimeout(() => this.#socket.destroy(), 1000);
    await this.#done;
    clearTimeout(timer);
  }
}

function slotLimitsOf(options: ServerOptions): { maxConnections: number; maxPerRequester: number } {
  return { maxConnections: options.maxConnections, maxPerRequester: options.maxConnectionsPerRequester };
}
