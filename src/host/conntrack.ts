import { ConntrackError, errnoCode } from '../errors.js';
import { formatIpBytes, parseIpBytes } from '../protocol/index.js';
import { loadNativeAddon, type NativeAddon, type RawConntrackEntry, type RawConntrackEvents } from './native-addon.js';
import type { Endpoint } from './types.js';

/** One direction of a translated flow. */
export interface FlowTuple {
  readonly source: Endpoint;
  readonly destination: Endpoint;
}

/**
 * A TCP flow the kernel tracks and may translate (netfilter NAT): `original` is the first
 * packet's view (for masquerade, the inside host's connection), `reply` the answers' view (for
 * masquerade, what the outside host sees: the gateway's address and translated port).
 */
export interface TrackedFlow {
  readonly original: FlowTuple;
  readonly reply: FlowTuple;
  /** Source translation (masquerade, SNAT) happened. */
  readonly sourceNat: boolean;
  /** Destination translation (DNAT, a port forward) happened. */
  readonly destinationNat: boolean;
  /** The TCP state conntrack tracks (`ESTABLISHED`, `TIME_WAIT`, ...). */
  readonly state: string;
  /** The conntrack zone (0 unless the ruleset sets one). */
  readonly zone: number;
  /** The kernel's id of the entry (unique while it lives; with `zone`, what `conntrack -L -o id` shows). */
  readonly id: number;
  /** Seconds before the kernel forgets the entry. */
  readonly timeoutSec: number;
}

/** The kernel's connection tracking table, asked one flow at a time. */
export interface ConntrackTable {
  /**
   * The flow whose reply direction runs from `from` to `to`: for a question from an outside
   * host about a masqueraded connection, `from` is the requester's end and `to` the gateway's
   * translated end. Undefined when the kernel tracks none. Throws {@link ConntrackError}.
   */
  findByReply(from: Endpoint, to: Endpoint): TrackedFlow | undefined;
}

/** enum tcp_conntrack (linux/netfilter/nf_conntrack_tcp.h). */
const TCP_CT_STATES = ['NONE', 'SYN_SENT', 'SYN_RECV', 'ESTABLISHED', 'FIN_WAIT', 'CLOSE_WAIT', 'LAST_ACK', 'TIME_WAIT', 'CLOSE', 'SYN_SENT2'];
/** enum ip_conntrack_status bits (linux/netfilter/nf_conntrack_common.h). */
const IPS_SRC_NAT = 1 << 4;
const IPS_DST_NAT = 1 << 5;

/** A raw ctnetlink entry as a {@link TrackedFlow}. */
export function toTrackedFlow(raw: RawConntrackEntry): TrackedFlow {
  const tuple = (t: RawConntrackEntry['orig']): FlowTuple => ({
    source: { address: formatIpBytes(t.src), port: t.srcPort },
    destination: { address: formatIpBytes(t.dst), port: t.dstPort },
  });
  return {
    original: tuple(raw.orig),
    reply: tuple(raw.reply),
    sourceNat: (raw.status & IPS_SRC_NAT) !== 0,
    destinationNat: (raw.status & IPS_DST_NAT) !== 0,
    state: TCP_CT_STATES[raw.tcpState] ?? `state ${raw.tcpState}`,
    zone: raw.zone,
    id: raw.id,
    timeoutSec: raw.timeout,
  };
}

/**
 * Why conntrack cannot be read, in one sentence an operator can act on (the errno names come
 * from the addon: native/conntrack.c).
 */
export function explainConntrackFailure(error: unknown): string {
  const code = errnoCode(error);
  switch (code) {
    case 'EPERM':
    case 'EACCES':
      return 'the kernel refused the conntrack request: stopd needs CAP_NET_ADMIN in its network namespace for --nat';
    case 'EPROTONOSUPPORT':
      return 'the kernel has no NETLINK_NETFILTER (build it with CONFIG_NETFILTER_NETLINK, or load nfnetlink)';
    case 'EOPNOTSUPP':
    case 'ENOTSUP':
      return 'the kernel has no ctnetlink (CONFIG_NF_CT_NETLINK, module nf_conntrack_netlink: modprobe nf_conntrack_netlink)';
    default:
      return error instanceof Error ? error.message : String(error);
  }
}

/**
 * The conntrack table of the daemon's network namespace, through the native addon (one
 * ctnetlink GET per lookup). Throws {@link ConntrackError} when the addon cannot do it.
 */
export function createConntrackTable(options: { addon?: NativeAddon } = {}): ConntrackTable {
  let addon = options.addon;
  if (addon === undefined) {
    const loaded = loadNativeAddon();
    if (loaded.binding === undefined) throw new ConntrackError(`Cannot read conntrack: the native addon did not load: ${loaded.error.message}`);
    addon = loaded.binding;
  }
  const lookup = addon.conntrackLookup?.bind(addon);
  if (lookup === undefined) throw new ConntrackError('Cannot read conntrack: the native addon predates conntrackLookup; rebuild it (node scripts/build-addon.mjs)');
  return {
    findByReply(from, to) {
      const source = parseIpBytes(from.address);
      const destination = parseIpBytes(to.address);
      if (source === undefined || destination === undefined || source.family !== destination.family) {
        throw new ConntrackError(`Cannot look up ${from.address} -> ${to.address} in conntrack: not two addresses of one family`);
      }
      let raw: RawConntrackEntry | null;
      try {
        raw = lookup(source.family, 'reply', Buffer.from(source.bytes), from.port, Buffer.from(destination.bytes), to.port);
      } catch (error) {
        throw new ConntrackError(`Cannot look up a connection in conntrack: ${explainConntrackFailure(error)}`, { cause: error });
      }
      return raw === null ? undefined : toTrackedFlow(raw);
    },
  };
}

/**
 * Checks at start that conntrack can be read (one lookup of a flow that cannot exist), so that
 * `stopd --nat` without the capability or the kernel support fails at once with the reason
 * instead of at the first question. Throws {@link ConntrackError}.
 */
export function checkConntrack(table: ConntrackTable): void {
  try {
    table.findByReply({ address: '0.0.0.0', port: 0 }, { address: '0.0.0.0', port: 0 });
  } catch (error) {
    throw new ConntrackError(`Cannot use --nat: ${explainConntrackFailure(error instanceof ConntrackError ? error.cause : error)}`, { cause: error });
  }
}

/** One flow event: a translated flow began, or conntrack forgot it. */
export interface FlowEvent {
  readonly kind: 'new' | 'destroy';
  readonly flow: TrackedFlow;
}

/** A subscription to the kernel's conntrack events (new and destroyed TCP flows). */
export interface ConntrackEvents {
  /** The events waiting, without blocking; `lost` when the kernel dropped some (its buffer overflowed). */
  read(): { readonly events: readonly FlowEvent[]; readonly lost: boolean };
  /** Idempotent. */
  close(): void;
}

/**
 * Subscribes to conntrack events in the daemon's network namespace (native/conntrack.c), with a
 * kernel receive buffer of `bufferBytes` (default 8 MiB: a few seconds of a busy gateway's
 * flows between two reads). Throws {@link ConntrackError}.
 */
export function openConntrackEvents(options: { addon?: NativeAddon; bufferBytes?: number } = {}): ConntrackEvents {
  let addon = options.addon;
  if (addon === undefined) {
    const loaded = loadNativeAddon();
    if (loaded.binding === undefined) throw new ConntrackError(`Cannot subscribe to conntrack events: the native addon did not load: ${loaded.error.message}`);
    addon = loaded.binding;
  }
  const open = addon.conntrackEventsOpen?.bind(addon);
  const read = addon.conntrackEventsRead?.bind(addon);
  const close = addon.conntrackEventsClose?.bind(addon);
  if (open === undefined || read === undefined || close === undefined) {
    throw new ConntrackError('Cannot subscribe to conntrack events: the native addon predates them; rebuild it (node scripts/build-addon.mjs)');
  }
  let handle: RawConntrackEvents | undefined;
  try {
    handle = open(options.bufferBytes ?? 8 * 1024 * 1024);
  } catch (error) {
    throw new ConntrackError(`Cannot subscribe to conntrack events: ${explainConntrackFailure(error)}`, { cause: error });
  }
  return {
    read() {
      if (handle === undefined) return { events: [], lost: false };
      let raw: ReturnType<NonNullable<NativeAddon['conntrackEventsRead']>>;
      try {
        raw = read(handle);
      } catch (error) {
        throw new ConntrackError(`Cannot read conntrack events: ${explainConntrackFailure(error)}`, { cause: error });
      }
      return { events: raw.events.map((e) => ({ kind: e.kind, flow: toTrackedFlow(e.entry) })), lost: raw.lost };
    },
    close() {
      if (handle !== undefined) close(handle);
      handle = undefined;
    },
  };
}
