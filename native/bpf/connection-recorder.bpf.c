// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * The connection recorder's kernel half (issue 14; loaded by bpf_recorder.c, read by
 * src/host/connection-recorder.ts). One tp_btf program on sock:inet_sock_set_state:
 *
 *   CLOSE -> SYN_SENT   runs in the task calling connect(): keep who it is, per socket pointer
 *                       (the source port is still 0 here, so nothing is emitted yet)
 *   SYN_SENT -> ESTABLISHED   the 4-tuple is known: emit `open`
 *   any -> CLOSE        for a socket it attributed: emit `open` first if it never reached
 *                       ESTABLISHED (a failed connect), then `close`, and forget the socket
 *
 * Inbound sockets (SYN_RECV -> ESTABLISHED) have no attribution and are not reported (their
 * ESTABLISHED returns before the table lookup; their CLOSE cannot be told apart cheaply). What it
 * cannot report is counted, never dropped silently: a ring full, and a SYN_SENT socket it
 * has no attribution for (its connect was before the recorder started, or no table slot was
 * free).
 *
 * No lock is taken on the connecting side. Records go to rings of its own, one per CPU, in
 * memory the reader maps (`records`, `cursors`), not to a BPF ring buffer: a ring buffer
 * reservation takes a lock shared by every CPU with interrupts off, and measured on a
 * paravirtualised VM its two reservations a connection were a third of the program's time (a
 * connect-heavy client ran at 93-94 % of its rate without the recorder, about 95 % with these
 * rings; bench/README.md). The sockets being attributed are in a table of slots claimed with
 * atomic operations, not a BPF hash map (see `attributions`). A CPU's ring has one writer: the
 * kernel never runs this program twice at once on a CPU (a nested run is skipped and counted as
 * a recursion miss), and a tracepoint runs with preemption off. Each record takes a number from one counter shared by
 * all CPUs (`seq`), so that the reader (bpf_recorder.c) can merge the CPUs' rings back into
 * the order the records were made, and hold back a record until every earlier number has
 * arrived: a connection's `open` before its `close` even when two CPUs wrote them.
 *
 * Why tp_btf and not a plain tracepoint: it attaches through BTF, so it needs no tracefs, and
 * both load here. Its `sk` argument is a typed kernel pointer, so the socket's fields are read
 * with plain loads (the verifier makes them fault-safe) rather than a bpf_probe_read_kernel
 * call each: measured, about a tenth of the program's time a run. inet_sport stays a
 * BPF_CORE_READ: it lies beyond `struct sock`, where a typed load is refused. The kernel types are declared by hand below with preserve_access_index
 * (CO-RE): libbpf relocates every field offset against the running kernel's BTF at load time,
 * so one compiled object serves every kernel that has the fields, and no generated vmlinux.h
 * ties the build to the machine it ran on. Build: scripts/build-bpf.mjs (npm run build-bpf).
 */
#include "uapi-types.h"

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

/* include/net/tcp_states.h */
#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_CLOSE 7
#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6

/* The kernel types read below: only the fields used, matched by name at load time. */
typedef struct {
  __u32 val;
} kuid_t;

struct ns_common {
  unsigned int inum;
} __attribute__((preserve_access_index));

struct net {
  struct ns_common ns;
} __attribute__((preserve_access_index));

typedef struct {
  struct net *net;
} possible_net_t;

struct in6_addr {
  union {
    __u8 u6_addr8[16];
  } in6_u;
} __attribute__((preserve_access_index));

struct sock_common {
  __be32 skc_daddr;
  __be32 skc_rcv_saddr;
  __be16 skc_dport;
  __u16 skc_num;
  unsigned short skc_family;
  possible_net_t skc_net;
  struct in6_addr skc_v6_daddr;
  struct in6_addr skc_v6_rcv_saddr;
} __attribute__((preserve_access_index));

struct socket;

struct sock {
  struct sock_common __sk_common;
  __u16 sk_protocol;
  struct socket *sk_socket;
} __attribute__((preserve_access_index));

/* The kernel's struct inet_sock begins with struct sock; inet_sport survives inet_put_port,
 * which zeroes skc_num before the CLOSE transition is traced (measured: a refused connect and
 * a socket leaving TIME_WAIT both reach CLOSE with skc_num 0). */
struct inet_sock {
  __be16 inet_sport;
} __attribute__((preserve_access_index));

struct task_struct {
  kuid_t loginuid;
  unsigned int sessionid;
  char comm[16];
} __attribute__((preserve_access_index));

/* Who connected, kept from SYN_SENT until CLOSE. */
struct attribution {
  __u64 connect_ns;
  __u64 established_ns; /* 0 until ESTABLISHED */
  __u16 local_port; /* as the `open` record named it */
  __u32 tid, pid, uid, gid, loginuid, sessionid;
  char comm[16];
};

/* One record; bpf_recorder.c hands these bytes to connection-recorder.ts, which decodes them
 * with the same layout (RECORD_BYTES there). */
struct record {
  __u8 kind; /* 1 open, 2 close */
  __u8 family; /* 4 or 6 */
  __u16 local_port, remote_port;
  __u8 pad[2];
  __u32 tid, pid, uid, gid, loginuid, sessionid;
  __u32 netns;
  __u32 seq; /* the record's number: every CPU's records, counted in the order they were made */
  __u64 socket;
  __u64 connect_ns, established_ns, close_ns;
  __u8 local[16], remote[16];
  char comm[16];
};
_Static_assert(sizeof(struct record) == 120, "RECORD_SIZE of bpf_recorder.c and RECORD_BYTES of connection-recorder.ts");

/* Indexes of `losses`. */
#define LOSS_RING_FULL 0
#define LOSS_UNATTRIBUTED 1

/*
 * The sockets being attributed: an open-addressed table in an array, each slot owned by a
 * socket pointer (0: free), claimed with a compare-and-swap and freed with an exchange. A BPF
 * hash map did this before; its insert and delete each take a bucket lock with interrupts off,
 * which measured a seventh of the program's time on a paravirtualised VM. A socket looks at
 * PROBES slots from its home slot; when all are taken by others its connection goes
 * unattributed, and is counted (rare below tens of thousands of open outbound connections:
 * the table has 131 072 slots).
 */
#define TABLE_SLOTS (1 << 17)
#define PROBES 8

struct slot {
  __u64 owner;
  struct attribution a;
};

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, TABLE_SLOTS);
  __type(key, __u32);
  __type(value, struct slot);
} attributions SEC(".maps");

/* The first slot a socket looks at (a Fibonacci hash of its pointer). */
static __always_inline __u32 home(__u64 sk) {
  return (__u32)((sk * 0x9E3779B97F4A7C15ULL) >> 47) & (TABLE_SLOTS - 1);
}

/* The slot `sk` owns, or NULL. */
static __always_inline struct slot *find(__u64 sk) {
  __u32 at = home(sk);
  for (int i = 0; i < PROBES; i++) {
    __u32 k = (at + i) & (TABLE_SLOTS - 1);
    struct slot *s = bpf_map_lookup_elem(&attributions, &k);
    if (s && s->owner == sk) return s;
  }
  return 0;
}

/* A slot for `sk`: the one it still owns (a socket whose close was never seen, its pointer
 * reused), or a free one claimed now; NULL when all its slots are others'. */
static __always_inline struct slot *claim(__u64 sk) {
  struct slot *mine = find(sk);
  if (mine) return mine;
  __u32 at = home(sk);
  for (int i = 0; i < PROBES; i++) {
    __u32 k = (at + i) & (TABLE_SLOTS - 1);
    struct slot *s = bpf_map_lookup_elem(&attributions, &k);
    if (s && s->owner == 0 && __sync_val_compare_and_swap(&s->owner, 0, sk) == 0) return s;
  }
  return 0;
}

/*
 * A CPU's ring: `head` counts the records this CPU wrote (the program's), `tail` those the reader
 * took (the reader's), each in a cache line of its own. Slot `n` of CPU `c` is
 * records[c * (mask + 1) + (n & mask)]; the ring is full when head - tail is mask + 1.
 */
struct cursor {
  __u64 head;
  __u64 mask; /* slots a CPU - 1 (a power of two - 1), written by the loader before it attaches */
  __u64 pad1[6];
  __u64 tail;
  __u64 pad2[7];
};
_Static_assert(sizeof(struct cursor) == 128, "struct cursor of bpf_recorder.c");

/* Both sized by the loader before loading (one cursor per possible CPU, mask + 1 records per
 * CPU) and mapped into its memory: BPF_F_MMAPABLE. */
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(map_flags, BPF_F_MMAPABLE);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct cursor);
} cursors SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(map_flags, BPF_F_MMAPABLE);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct record);
} records SEC(".maps");

/* The reader polls its rings on a timer, and is woken through this BPF ring buffer when a
 * CPU's ring gets half full between two polls (a burst): once per ring and poll at most, so
 * its lock is taken rarely. The record is the CPU's number. */
struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, 4096);
} wakeups SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 2);
  __type(key, __u32);
  __type(value, __u64);
} losses SEC(".maps");

/* The next record's number (struct record.seq). */
__u64 next_seq = 0;

/* The clock, read once per scheduler tick per CPU (see now_ns). */
struct tick_clock {
  __u64 jiffies, ns;
};

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct tick_clock);
} tick_clocks SEC(".maps");

/*
 * CLOCK_MONOTONIC to the scheduler tick: the time of this CPU's first event in the current
 * jiffy, so it runs behind by less than one tick (4 ms at HZ=250). Profiled, one clock read was
 * a quarter of the program's time on a paravirtualised clock (three reads a connection), while
 * a jiffies read and a per-CPU slot cost next to nothing; at tens of thousands of connections a
 * second nearly every event reuses its CPU's reading. The slot needs no lock: the kernel never
 * nests two runs of one program on a CPU (a nested run is skipped and counted as a recursion
 * miss). Two CPUs' readings of one jiffy may differ, so callers keep a socket's times in order.
 */
static __always_inline __u64 now_ns(void) {
  __u32 zero = 0;
  struct tick_clock *clock = bpf_map_lookup_elem(&tick_clocks, &zero);
  if (!clock) return bpf_ktime_get_ns();
  __u64 jiffies = bpf_jiffies64();
  if (clock->jiffies != jiffies) {
    clock->jiffies = jiffies;
    clock->ns = bpf_ktime_get_ns();
  }
  return clock->ns;
}

static __always_inline __u64 not_before(__u64 ns, __u64 earlier) {
  return ns < earlier ? earlier : ns;
}

static __always_inline void count_loss(__u32 reason) {
  __u64 *n = bpf_map_lookup_elem(&losses, &reason);
  if (n) __sync_fetch_and_add(n, 1);
}

static __always_inline void remember(__u64 key) {
  struct attribution a = {};
  /* A typed pointer (Linux 5.11): its fields are plain loads, not a helper call each. */
  struct task_struct *task = bpf_get_current_task_btf();
  __u64 pid_tgid = bpf_get_current_pid_tgid();
  __u64 uid_gid = bpf_get_current_uid_gid();

  a.connect_ns = now_ns();
  a.tid = (__u32)pid_tgid;
  a.pid = pid_tgid >> 32;
  a.uid = (__u32)uid_gid;
  a.gid = uid_gid >> 32;
  a.loginuid = 0xffffffff;
  a.sessionid = 0xffffffff;
  /* Both exist only with CONFIG_AUDIT; without it they stay "unset". */
  if (bpf_core_field_exists(task->loginuid)) a.loginuid = task->loginuid.val;
  if (bpf_core_field_exists(task->sessionid)) a.sessionid = task->sessionid;
  __builtin_memcpy(a.comm, task->comm, sizeof a.comm);
  /* No slot leaves the socket unattributed: counted when it reaches ESTABLISHED. */
  struct slot *s = claim(key);
  if (s) __builtin_memcpy(&s->a, &a, sizeof a);
}

static __always_inline void emit(struct sock *sk, struct attribution *a, __u8 kind, __u64 now) {
  __u32 cpu = bpf_get_smp_processor_id();
  struct cursor *c = bpf_map_lookup_elem(&cursors, &cpu);
  if (!c) {
    count_loss(LOSS_RING_FULL);
    return;
  }
  __u64 head = c->head;
  __u64 mask = c->mask;
  /* Full (or not set up yet): the reader has not taken the slot this record would overwrite. */
  if (mask == 0 || head - c->tail > mask) {
    count_loss(LOSS_RING_FULL);
    return;
  }
  __u32 slot = cpu * (__u32)(mask + 1) + (__u32)(head & mask);
  struct record *r = bpf_map_lookup_elem(&records, &slot);
  if (!r) {
    count_loss(LOSS_RING_FULL);
    return;
  }
  /* Taken only once the record is sure to be written: the reader waits for every number. */
  r->seq = (__u32)__sync_fetch_and_add(&next_seq, 1);
  __u16 family = sk->__sk_common.skc_family;
  r->kind = kind;
  r->family = family == AF_INET6 ? 6 : 4;
  /* The close record names the port its open record named (read once, at the open). */
  if (kind == 1) a->local_port = __builtin_bswap16(BPF_CORE_READ((struct inet_sock *)sk, inet_sport));
  r->local_port = a->local_port;
  r->remote_port = __builtin_bswap16(sk->__sk_common.skc_dport);
  r->pad[0] = r->pad[1] = 0;
  r->tid = a->tid;
  r->pid = a->pid;
  r->uid = a->uid;
  r->gid = a->gid;
  r->loginuid = a->loginuid;
  r->sessionid = a->sessionid;
  r->netns = sk->__sk_common.skc_net.net->ns.inum;
  r->socket = (__u64)sk;
  r->connect_ns = a->connect_ns;
  r->established_ns = a->established_ns;
  r->close_ns = kind == 2 ? now : 0;
  __builtin_memset(r->local, 0, sizeof r->local);
  __builtin_memset(r->remote, 0, sizeof r->remote);
  if (family == AF_INET6) {
    BPF_CORE_READ_INTO(&r->local, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
    BPF_CORE_READ_INTO(&r->remote, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
  } else {
    *(__be32 *)r->local = sk->__sk_common.skc_rcv_saddr;
    *(__be32 *)r->remote = sk->__sk_common.skc_daddr;
  }
  __builtin_memcpy(r->comm, a->comm, sizeof r->comm);
  /* Publish: an exchange is fully ordered, so a reader that sees the new head sees the record's
   * bytes (a plain store would do on x86, not on arm64). */
  __sync_lock_test_and_set(&c->head, head + 1);
  /* The ring fills by one record at a time and empties at once, so this is met once a poll. */
  if (head + 1 - c->tail == (mask + 1) / 2) bpf_ringbuf_output(&wakeups, &cpu, sizeof cpu, 0);
}

SEC("tp_btf/inet_sock_set_state")
int record_state(__u64 *ctx) {
  struct sock *sk = (struct sock *)ctx[0];
  int oldstate = (int)ctx[1];
  int newstate = (int)ctx[2];

  /* Cheapest test first: most transitions (FIN_WAIT, TIME_WAIT, LISTEN...) concern no one. */
  if (newstate != TCP_SYN_SENT && newstate != TCP_ESTABLISHED && newstate != TCP_CLOSE) return 0;
  /* Next cheapest: the accepting end of an inbound connection reaches ESTABLISHED from
   * SYN_RECV before accept() gave it a struct socket, and is never attributed, so it is spared
   * the table lookup (one of the three runs per inbound connection). A simultaneous open
   * (SYN_SENT -> SYN_RECV -> ESTABLISHED) keeps its socket, so it is still looked up. */
  if (newstate == TCP_ESTABLISHED && oldstate != TCP_SYN_SENT && !sk->sk_socket) return 0;
  if (sk->sk_protocol != IPPROTO_TCP) return 0;
  /* The pointer as a number (the verifier lets a typed pointer be compared, not hashed). */
  __u64 key = 0;
  bpf_probe_read_kernel(&key, sizeof key, &ctx[0]);
  if (newstate == TCP_SYN_SENT) {
    remember(key);
    return 0;
  }

  struct slot *s = find(key);
  if (!s) {
    if (oldstate == TCP_SYN_SENT) count_loss(LOSS_UNATTRIBUTED);
    return 0;
  }
  struct attribution *a = &s->a;
  __u64 now = not_before(now_ns(), a->established_ns ? a->established_ns : a->connect_ns);
  if (newstate == TCP_ESTABLISHED) {
    a->established_ns = now;
    emit(sk, a, 1, now);
    return 0;
  }
  /* CLOSE: a connect that never reached ESTABLISHED is announced here, with its 4-tuple. */
  if (a->established_ns == 0) emit(sk, a, 1, now);
  emit(sk, a, 2, now);
  __sync_lock_test_and_set(&s->owner, 0);
  return 0;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
