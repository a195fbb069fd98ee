/*
 * stopd_native: the small netlink sock_diag addon behind src/host/linux-sockets.ts.
 *
 * Why native: Node has no netlink sockets, and the alternative (/proc/net/tcp) walks the whole
 * TCP table on every read, tens of milliseconds on a busy host. SOCK_DIAG_BY_FAMILY without
 * NLM_F_DUMP asks the kernel for one socket by its 4-tuple, a hash lookup (inet_diag.c,
 * inet_diag_find_one_icsk), so an IDENT/STOP lookup costs the same at any table size.
 *
 * Exports (all synchronous; errors are thrown as JS Errors with the errno text and a `code`):
 *   tcpLookup(family, localAddr, localPort, remoteAddr, remotePort) -> TcpEntry | null
 *   tcpDump(family) -> TcpEntry[]
 *   unixDump() -> UnixEntry[]
 *   scanFds(procRoot, { namedPipes }) -> FdScan (see the fd scan section below)
 *   fdIndexCreate(procRoot, { namedPipes, maxKeptFiles, listIntervalMs, rescanIntervalMs, separateTable,
 *                             skipSelf }) -> index handle
 *   fdIndexRefresh(index) -> { full, tracked, kept, rescanned: Int32Array }
 *   fdIndexHolders(index, inode) -> Int32Array of (pid, fd, kind) triples
 *   fdIndexFds(index, pid) -> Float64Array in the FdScan `entries` layout, or null
 *   fdIndexDenied(index) -> { denied: Int32Array, failed: Int32Array }
 *   fdIndexClose(index)
 *   (the incremental fd index section says why and how the index stays exact)
 * TcpEntry  = { family, state, uid, inode, localAddr: Buffer, localPort, remoteAddr: Buffer, remotePort }
 * UnixEntry = { inode, type, state, path: string | null, peer }
 *
 * Each netlink call opens its own NETLINK_SOCK_DIAG socket and closes it before returning: a
 * socket() + close() is a few microseconds, and no state survives between calls, so an
 * interrupted or failed call can never leave stale replies for the next one. The one state
 * that does survive is the fd index, and only in the handle the caller holds (an external
 * released by fdIndexClose or by the garbage collector), never in a static.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>

#include <node_api.h>

#include "napi_common.h"
#include "socket_fd.h"

/* Large enough for any datagram the kernel builds for a dump (netlink_dump caps its skb at
 * 32 KiB); a truncated datagram is still detected via MSG_TRUNC and reported as an error. */
#define RECV_BUF_SIZE 65536

/* Upper bound on one recvmsg(); past it the call fails with EAGAIN instead of hanging. */
#define RECV_TIMEOUT_SEC 5

void throw_napi_failure(napi_env env) {
  bool pending = false;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending) return;
  const napi_extended_error_info *info = NULL;
  napi_get_last_error_info(env, &info);
  const char *msg = info != NULL && info->error_message != NULL ? info->error_message : "N-API call failed";
  napi_throw_error(env, "ERR_STOPD_NATIVE", msg);
}

void throw_errno(napi_env env, const char *what, int err) {
  char text[128];
  char msg[320];
  const char *name = NULL;
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  name = strerrorname_np(err);
#endif
  /* GNU strerror_r: thread-safe and returns the text (which may not be `text` itself). */
  const char *why = strerror_r(err, text, sizeof text);
  snprintf(msg, sizeof msg, "%s: %s", what, why);
  napi_throw_error(env, name != NULL ? name : "ERR_STOPD_NATIVE", msg);
}

/* ---------- netlink plumbing (no N-API below this line until the bindings) ---------- */

struct nl_conn {
  int fd;
  uint32_t seq;
  unsigned char *buf;
};

static uint32_t next_seq = 1;

static void nl_close(struct nl_conn *c);

/* Returns 0 or a positive errno. */
static int nl_open(struct nl_conn *c) {
  c->fd = -1;
  c->seq = 0;
  c->buf = malloc(RECV_BUF_SIZE);
  if (c->buf == NULL) return ENOMEM;
  c->fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (c->fd < 0) {
    int err = errno != 0 ? errno : EIO;
    free(c->buf);
    c->buf = NULL;
    return err;
  }
  /* The kernel answers sock_diag synchronously, so a reply never takes long; the timeout is
   * only a guard so that a kernel oddity cannot block the daemon's event loop forever. */
  struct timeval timeout = {.tv_sec = RECV_TIMEOUT_SEC, .tv_usec = 0};
  if (setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout) != 0) {
    int err = errno != 0 ? errno : EIO;
    nl_close(c);
    return err;
  }
  /* A process-wide counter: replies are matched by seq, so one caller can never read another
   * request's answer even if the kernel were to reuse a port id. Wrapping is harmless. */
  c->seq = __atomic_fetch_add(&next_seq, 1, __ATOMIC_RELAXED);
  return 0;
}

static void nl_close(struct nl_conn *c) {
  if (c->fd >= 0) close(c->fd);
  c->fd = -1;
  free(c->buf);
  c->buf = NULL;
}

/* Sends one request to the kernel (port id 0). Returns 0 or a positive errno. */
static int nl_send(struct nl_conn *c, struct nlmsghdr *req) {
  struct sockaddr_nl kernel;
  memset(&kernel, 0, sizeof kernel);
  kernel.nl_family = AF_NETLINK;
  req->nlmsg_seq = c->seq;
  req->nlmsg_pid = 0;
  for (;;) {
    ssize_t n = sendto(c->fd, req, req->nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof kernel);
    if (n >= 0) return (size_t)n == req->nlmsg_len ? 0 : EMSGSIZE;
    if (errno != EINTR) return errno;
  }
}

/* Receives one datagram into c->buf. Returns its length, or a negative errno. */
static ssize_t nl_recv(struct nl_conn *c) {
  struct sockaddr_nl from;
  struct iovec iov = {.iov_base = c->buf, .iov_len = RECV_BUF_SIZE};
  struct msghdr msg;
  for (;;) {
    memset(&msg, 0, sizeof msg);
    msg.msg_name = &from;
    msg.msg_namelen = sizeof from;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    ssize_t n = recvmsg(c->fd, &msg, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (msg.msg_flags & MSG_TRUNC) return -EMSGSIZE;
    /* Only the kernel (port id 0) answers sock_diag; anything else is not ours. */
    if (msg.msg_namelen != sizeof from || from.nl_pid != 0) continue;
    return n;
  }
}

/* The errno carried by an NLMSG_ERROR message (positive), 0 for an ACK, EBADMSG if short. */
static int nl_error_of(const struct nlmsghdr *h) {
  if (h->nlmsg_len < NLMSG_LENGTH(sizeof(struct nlmsgerr))) return EBADMSG;
  const struct nlmsgerr *e = NLMSG_DATA(h);
  return e->error < 0 ? -e->error : e->error;
}

/* Called once per matching data message; returns 0 to go on or a positive errno to stop. */
typedef int (*nl_visit_fn)(const struct nlmsghdr *h, void *ctx);

/*
 * Sends `req` and feeds every reply message with our seq to `visit`, until NLMSG_DONE (dump)
 * or the first data message (exact lookup). Returns 0, or a positive errno (ENOENT: the
 * kernel has no such socket).
 */
static int nl_transact(struct nl_conn *c, struct nlmsghdr *req, nl_visit_fn visit, void *ctx) {
  int dump = (req->nlmsg_flags & NLM_F_DUMP) == NLM_F_DUMP;
  int err = nl_send(c, req);
  if (err != 0) return err;
  for (;;) {
    ssize_t n = nl_recv(c);
    if (n < 0) return (int)-n;
    int len = (int)n; /* signed on purpose: NLMSG_NEXT may step past the end, NLMSG_OK then fails */
    for (struct nlmsghdr *h = (struct nlmsghdr *)c->buf; NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
      if (h->nlmsg_seq != c->seq) continue; /* stale or foreign: skip */
      if (h->nlmsg_type == NLMSG_DONE) return 0;
      if (h->nlmsg_type == NLMSG_ERROR) {
        int e = nl_error_of(h);
        if (e != 0) return e;
        if (!dump) return 0; /* a bare ACK */
        continue;
      }
      if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY) continue;
      err = visit(h, ctx);
      if (err != 0) return err;
      if (!dump) return 0;
    }
  }
}

/* ---------- inet (TCP) ---------- */

struct tcp_entry {
  uint8_t family; /* AF_INET or AF_INET6, as the kernel reports the socket */
  uint8_t state;
  uint32_t uid;
  uint32_t inode;
  uint8_t local[16];
  uint8_t remote[16];
  uint16_t local_port;
  uint16_t remote_port;
};

/* Decodes one inet_diag_msg; returns 0, or EBADMSG when the message is malformed. */
static int parse_tcp(const struct nlmsghdr *h, struct tcp_entry *out) {
  if (h->nlmsg_len < NLMSG_LENGTH(sizeof(struct inet_diag_msg))) return EBADMSG;
  const struct inet_diag_msg *m = NLMSG_DATA(h);
  if (m->idiag_family != AF_INET && m->idiag_family != AF_INET6) return EBADMSG;
  memset(out, 0, sizeof *out);
  out->family = m->idiag_family;
  out->state = m->idiag_state;
  out->uid = m->idiag_uid;
  out->inode = m->idiag_inode;
  size_t alen = m->idiag_family == AF_INET ? 4 : 16;
  memcpy(out->local, m->id.idiag_src, alen);
  memcpy(out->remote, m->id.idiag_dst, alen);
  out->local_port = ntohs(m->id.idiag_sport);
  out->remote_port = ntohs(m->id.idiag_dport);
  return 0;
}

struct tcp_request {
  struct nlmsghdr nlh;
  struct inet_diag_req_v2 r;
};

static void init_tcp_request(struct tcp_request *req, int family, int dump) {
  memset(req, 0, sizeof *req);
  req->nlh.nlmsg_len = sizeof *req;
  req->nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  req->nlh.nlmsg_flags = NLM_F_REQUEST | (dump ? NLM_F_DUMP : 0);
  req->r.sdiag_family = (uint8_t)family;
  req->r.sdiag_protocol = IPPROTO_TCP;
  /* States 1 (ESTABLISHED) .. 11 (CLOSING), without 3 (SYN_RECV), 6 (TIME_WAIT) and
   * 12 (NEW_SYN_RECV): those are kernel-only sockets (inode 0) that no process holds, and a
   * busy host has thousands of TIME_WAIT ones, which would only cost time in every SV dump.
   * Not ~0: since Linux 6.7 bit 13 (TCP_BOUND_INACTIVE) makes a dump also list bound sockets
   * that are neither listening nor connected. An exact lookup ignores the mask. */
  req->r.idiag_states = 0x1FFEU & ~((1U << 3) | (1U << 6) | (1U << 12));
  req->r.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
  req->r.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
}

struct lookup_ctx {
  struct tcp_entry entry;
  int found;
};

static int visit_lookup(const struct nlmsghdr *h, void *ctx) {
  struct lookup_ctx *l = ctx;
  int err = parse_tcp(h, &l->entry);
  if (err == 0) l->found = 1;
  return err;
}

/* Opens a sock_diag socket, runs one request through `visit`, closes it. Returns 0 or an
 * errno; on failure *opened says whether the socket could be opened at all. */
/*
 * One netlink socket per thread, kept between requests: opening, configuring and closing a
 * socket (and its receive buffer) cost more than the lookup itself, which an ID request makes
 * twice. Each transaction takes a fresh seq, so a reply left over from an earlier one is
 * skipped; after any failure but "no such socket" the socket is dropped and the next call
 * opens a new one, so nothing half-read is ever carried over.
 */
static __thread struct nl_conn kept_conn = {.fd = -1, .seq = 0, .buf = NULL};

/* The kept socket belongs to its thread: a worker thread that loads the addon (the daemon's
 * analysis thread) closes it when its environment is torn down, or every restart of that
 * thread would leak a netlink socket and its buffer. Registered once per environment at load. */
static void close_kept_conn(void *arg) {
  (void)arg;
  nl_close(&kept_conn);
}

static int nl_once(struct nlmsghdr *req, nl_visit_fn visit, void *ctx, bool *opened) {
  if (kept_conn.fd < 0) {
    int err = nl_open(&kept_conn);
    *opened = err == 0;
    if (err != 0) return err;
  } else {
    *opened = true;
    kept_conn.seq = __atomic_fetch_add(&next_seq, 1, __ATOMIC_RELAXED);
  }
  int err = nl_transact(&kept_conn, req, visit, ctx);
  if (err != 0 && err != ENOENT) nl_close(&kept_conn);
  return err;
}

struct dump_ctx {
  struct tcp_entry *items;
  size_t count;
  size_t cap;
};

static int visit_dump(const struct nlmsghdr *h, void *ctx) {
  struct dump_ctx *d = ctx;
  if (d->count == d->cap) {
    size_t cap = d->cap == 0 ? 256 : d->cap * 2;
    struct tcp_entry *items = realloc(d->items, cap * sizeof *items);
    if (items == NULL) return ENOMEM;
    d->items = items;
    d->cap = cap;
  }
  int err = parse_tcp(h, &d->items[d->count]);
  if (err == 0) d->count++;
  return err;
}

/* ---------- unix ---------- */

struct unix_entry {
  uint32_t inode;
  uint32_t peer;
  uint8_t type;
  uint8_t state;
  uint8_t has_name;
  uint16_t name_len;
  char name[sizeof(((struct sockaddr_un *)0)->sun_path) + 1];
};

struct unix_ctx {
  struct unix_entry *items;
  size_t count;
  size_t cap;
};

/* Decodes one unix_diag_msg and its UNIX_DIAG_NAME / UNIX_DIAG_PEER attributes. */
static int parse_unix(const struct nlmsghdr *h, struct unix_entry *out) {
  if (h->nlmsg_len < NLMSG_LENGTH(sizeof(struct unix_diag_msg))) return EBADMSG;
  const struct unix_diag_msg *m = NLMSG_DATA(h);
  memset(out, 0, sizeof *out);
  out->inode = m->udiag_ino;
  out->type = m->udiag_type;
  out->state = m->udiag_state;
  size_t off = NLMSG_LENGTH(NLMSG_ALIGN(sizeof *m));
  while (off + sizeof(struct nlattr) <= h->nlmsg_len) {
    const struct nlattr *a = (const struct nlattr *)((const unsigned char *)h + off);
    if (a->nla_len < sizeof *a || a->nla_len > h->nlmsg_len - off) return EBADMSG;
    const unsigned char *payload = (const unsigned char *)a + NLA_HDRLEN;
    size_t plen = a->nla_len - NLA_HDRLEN;
    switch (a->nla_type & NLA_TYPE_MASK) {
      case UNIX_DIAG_NAME: {
        if (plen > sizeof out->name - 1) return EBADMSG;
        size_t n = plen;
        if (n > 0 && payload[0] != 0) n = strnlen((const char *)payload, n); /* path: drop the NUL */
        memcpy(out->name, payload, n);
        /* Abstract names (leading NUL) are binary and often NUL-padded: print every NUL as '@',
         * exactly as /proc/net/unix does, so both backends report the same name. */
        if (n > 0 && out->name[0] == 0)
          for (size_t k = 0; k < n; k++)
            if (out->name[k] == 0) out->name[k] = '@';
        out->name_len = (uint16_t)n;
        out->has_name = 1;
        break;
      }
      case UNIX_DIAG_PEER:
        if (plen < sizeof(uint32_t)) return EBADMSG;
        memcpy(&out->peer, payload, sizeof(uint32_t));
        break;
      default:
        break;
    }
    off += NLA_ALIGN(a->nla_len);
  }
  return 0;
}

static int visit_unix(const struct nlmsghdr *h, void *ctx) {
  struct unix_ctx *u = ctx;
  if (u->count == u->cap) {
    size_t cap = u->cap == 0 ? 256 : u->cap * 2;
    struct unix_entry *items = realloc(u->items, cap * sizeof *items);
    if (items == NULL) return ENOMEM;
    u->items = items;
    u->cap = cap;
  }
  int err = parse_unix(h, &u->items[u->count]);
  if (err == 0) u->count++;
  return err;
}

/* ---------- N-API bindings ---------- */

bool get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) {
    throw_napi_failure(env);
    return false;
  }
  if (argc < want) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_COUNT", "Wrong number of arguments");
    return false;
  }
  return true;
}

/* Reads a 4 (IPv4) or 16 (IPv6) byte Buffer into `out`. Returns false with an exception pending. */
static bool get_addr(napi_env env, napi_value v, size_t want, uint8_t *out) {
  bool is_buffer = false;
  if (napi_is_buffer(env, v, &is_buffer) != napi_ok || !is_buffer) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "Address must be a Buffer");
    return false;
  }
  void *data = NULL;
  size_t len = 0;
  if (napi_get_buffer_info(env, v, &data, &len) != napi_ok) {
    throw_napi_failure(env);
    return false;
  }
  if (len != want) {
    napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", "Address length does not match the family");
    return false;
  }
  memcpy(out, data, want);
  return true;
}

static bool get_port(napi_env env, napi_value v, uint16_t *out) {
  int32_t port = -1;
  if (napi_get_value_int32(env, v, &port) != napi_ok || port < 0 || port > 65535) {
    napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", "Port must be an integer from 0 to 65535");
    return false;
  }
  *out = (uint16_t)port;
  return true;
}

static bool get_family(napi_env env, napi_value v, int *out) {
  int32_t f = 0;
  if (napi_get_value_int32(env, v, &f) != napi_ok || (f != 4 && f != 6)) {
    napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", "Family must be 4 or 6");
    return false;
  }
  *out = f == 4 ? AF_INET : AF_INET6;
  return true;
}

static napi_status set_u32(napi_env env, napi_value obj, const char *key, uint32_t value) {
  napi_value v;
  napi_status s = napi_create_uint32(env, value, &v);
  return s == napi_ok ? napi_set_named_property(env, obj, key, v) : s;
}

napi_status set_buffer(napi_env env, napi_value obj, const char *key, const uint8_t *bytes, size_t len) {
  napi_value v;
  void *data = NULL;
  napi_status s = napi_create_buffer_copy(env, len, bytes, &data, &v);
  return s == napi_ok ? napi_set_named_property(env, obj, key, v) : s;
}

static napi_value make_tcp(napi_env env, const struct tcp_entry *e) {
  napi_value obj;
  size_t alen = e->family == AF_INET ? 4 : 16;
  CHECK_NAPI(env, napi_create_object(env, &obj));
  CHECK_NAPI(env, set_u32(env, obj, "family", e->family == AF_INET ? 4 : 6));
  CHECK_NAPI(env, set_u32(env, obj, "state", e->state));
  CHECK_NAPI(env, set_u32(env, obj, "uid", e->uid));
  CHECK_NAPI(env, set_u32(env, obj, "inode", e->inode));
  CHECK_NAPI(env, set_buffer(env, obj, "localAddr", e->local, alen));
  CHECK_NAPI(env, set_u32(env, obj, "localPort", e->local_port));
  CHECK_NAPI(env, set_buffer(env, obj, "remoteAddr", e->remote, alen));
  CHECK_NAPI(env, set_u32(env, obj, "remotePort", e->remote_port));
  return obj;
}

/* tcpLookup(family: 4|6, localAddr: Buffer, localPort, remoteAddr: Buffer, remotePort) */
static napi_value tcp_lookup(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  if (!get_args(env, info, 5, argv)) return NULL;
  int family;
  if (!get_family(env, argv[0], &family)) return NULL;
  size_t alen = family == AF_INET ? 4 : 16;
  uint8_t local[16] = {0}, remote[16] = {0};
  uint16_t lport, rport;
  if (!get_addr(env, argv[1], alen, local) || !get_port(env, argv[2], &lport) ||
      !get_addr(env, argv[3], alen, remote) || !get_port(env, argv[4], &rport))
    return NULL;

  struct tcp_request req;
  init_tcp_request(&req, family, 0);
  /* inet_diag: idiag_src/idiag_sport are the socket's own (local) end, idiag_dst the peer. */
  memcpy(req.r.id.idiag_src, local, alen);
  memcpy(req.r.id.idiag_dst, remote, alen);
  req.r.id.idiag_sport = htons(lport);
  req.r.id.idiag_dport = htons(rport);

  struct lookup_ctx ctx;
  memset(&ctx, 0, sizeof ctx);
  bool opened;
  int err = nl_once(&req.nlh, visit_lookup, &ctx, &opened);
  if (!opened) {
    throw_errno(env, "Cannot open a NETLINK_SOCK_DIAG socket", err);
    return NULL;
  }
  napi_value result;
  if (err == ENOENT || (err == 0 && !ctx.found)) {
    CHECK_NAPI(env, napi_get_null(env, &result));
    return result;
  }
  if (err != 0) {
    throw_errno(env, "Cannot look up the TCP socket via sock_diag", err);
    return NULL;
  }
  return make_tcp(env, &ctx.entry);
}

typedef napi_value (*make_fn)(napi_env env, const void *item);

/* A JS array of `count` items of `size` bytes made by `make`; frees nothing, throws on failure. */
static napi_value make_array(napi_env env, const void *items, size_t count, size_t size, make_fn make) {
  napi_value arr = NULL;
  bool ok = napi_create_array_with_length(env, count, &arr) == napi_ok;
  for (size_t i = 0; ok && i < count; i++) {
    napi_value item = make(env, (const char *)items + i * size);
    ok = item != NULL && napi_set_element(env, arr, (uint32_t)i, item) == napi_ok;
  }
  if (!ok) {
    throw_napi_failure(env);
    return NULL;
  }
  return arr;
}

static napi_value make_tcp_item(napi_env env, const void *item) { return make_tcp(env, item); }

/* tcpDump(family: 4|6) */
static napi_value tcp_dump(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  int family;
  if (!get_family(env, argv[0], &family)) return NULL;

  struct tcp_request req;
  init_tcp_request(&req, family, 1);
  struct dump_ctx ctx = {0};
  bool opened;
  int err = nl_once(&req.nlh, visit_dump, &ctx, &opened);
  if (err != 0) {
    free(ctx.items);
    throw_errno(env, opened ? "Cannot dump the TCP sockets via sock_diag" : "Cannot open a NETLINK_SOCK_DIAG socket", err);
    return NULL;
  }
  napi_value arr = make_array(env, ctx.items, ctx.count, sizeof ctx.items[0], make_tcp_item);
  free(ctx.items);
  return arr;
}

static napi_value make_unix(napi_env env, const struct unix_entry *e) {
  napi_value obj, path;
  CHECK_NAPI(env, napi_create_object(env, &obj));
  CHECK_NAPI(env, set_u32(env, obj, "inode", e->inode));
  CHECK_NAPI(env, set_u32(env, obj, "type", e->type));
  CHECK_NAPI(env, set_u32(env, obj, "state", e->state));
  if (e->has_name)
    CHECK_NAPI(env, napi_create_string_utf8(env, e->name, e->name_len, &path));
  else
    CHECK_NAPI(env, napi_get_null(env, &path));
  CHECK_NAPI(env, napi_set_named_property(env, obj, "path", path));
  CHECK_NAPI(env, set_u32(env, obj, "peer", e->peer));
  return obj;
}

static napi_value make_unix_item(napi_env env, const void *item) { return make_unix(env, item); }

/* A UNIX_DIAG request with names and peers: a dump of every socket, or (dump false) the one
 * with inode `inode` (unix_diag_get_exact; the cookie is not checked). */
struct unix_request {
  struct nlmsghdr nlh;
  struct unix_diag_req r;
};

static void init_unix_request(struct unix_request *req, bool dump, uint32_t inode) {
  memset(req, 0, sizeof *req);
  req->nlh.nlmsg_len = sizeof *req;
  req->nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  req->nlh.nlmsg_flags = NLM_F_REQUEST | (dump ? NLM_F_DUMP : 0);
  req->r.sdiag_family = AF_UNIX;
  req->r.udiag_show = UDIAG_SHOW_NAME | UDIAG_SHOW_PEER;
  if (dump) {
    req->r.udiag_states = ~0U;
  } else {
    req->r.udiag_ino = inode;
    req->r.udiag_cookie[0] = INET_DIAG_NOCOOKIE;
    req->r.udiag_cookie[1] = INET_DIAG_NOCOOKIE;
  }
}

/* unixDump() */
static napi_value unix_dump(napi_env env, napi_callback_info info) {
  (void)info;
  struct unix_request req;
  init_unix_request(&req, true, 0);
  struct unix_ctx ctx = {0};
  bool opened;
  int err = nl_once(&req.nlh, visit_unix, &ctx, &opened);
  if (err != 0) {
    free(ctx.items);
    throw_errno(env, opened ? "Cannot dump the UNIX sockets via sock_diag" : "Cannot open a NETLINK_SOCK_DIAG socket", err);
    return NULL;
  }
  napi_value arr = make_array(env, ctx.items, ctx.count, sizeof ctx.items[0], make_unix_item);
  free(ctx.items);
  return arr;
}

/* unixLookup(inode) -> one unixDump() entry, or null when there is no such UNIX socket */
static napi_value unix_lookup(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  double value = 0;
  if (napi_get_value_double(env, argv[0], &value) != napi_ok || !(value >= 1 && value <= UINT32_MAX) || value != (double)(uint32_t)value) {
    napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", "inode must be an integer from 1 to 4294967295");
    return NULL;
  }
  struct unix_request req;
  init_unix_request(&req, false, (uint32_t)value);
  struct unix_ctx ctx = {0};
  bool opened;
  int err = nl_once(&req.nlh, visit_unix, &ctx, &opened);
  napi_value result = NULL;
  if (err == ENOENT || (err == 0 && ctx.count == 0)) {
    free(ctx.items);
    CHECK_NAPI(env, napi_get_null(env, &result));
    return result;
  }
  if (err != 0) {
    free(ctx.items);
    throw_errno(env, opened ? "Cannot look up the UNIX socket via sock_diag" : "Cannot open a NETLINK_SOCK_DIAG socket", err);
    return NULL;
  }
  result = make_unix(env, &ctx.items[0]);
  free(ctx.items);
  return result;
}

/* ---------- /proc fd scan ---------- */

/*
 * Why native: resolving an SV request indexes every socket and pipe descriptor on the host
 * (DESIGN.md, Host view). From JavaScript that is one readdir per process plus a readlink per
 * descriptor and an lstat per pipe, each a separate fs binding call with its own path string
 * and Stats object; here it is readlinkat/fstatat relative to one open directory, the same
 * system calls the kernel's own tools make.
 */

/* Link text long enough for "socket:[N]" and "pipe:[N]" with any 64-bit N. Longer links are
 * paths (or other anon inodes): readlinkat truncates them, which is harmless because a path is
 * recognised by its first byte and resolved by fstatat through the link, never by its text. */
#define LINK_BUF_SIZE 64

enum fd_kind { FD_SOCKET = 0, FD_PIPE = 1 };
enum pipe_end { END_READ = 0, END_WRITE = 1, END_BOTH = 2 };

/* Values per entry in the `entries` Float64Array: pid, fd, kind, inode, end. */
#define ENTRY_WIDTH 5

/* One socket or pipe descriptor of a process. */
struct fd_entry {
  double inode; /* a FIFO's inode number can pass 2^32; a double is exact up to 2^53 */
  int32_t fd;
  uint8_t kind; /* enum fd_kind */
  uint8_t end;  /* enum pipe_end; END_READ for sockets */
};

struct fd_vec {
  struct fd_entry *items;
  size_t count;
  size_t cap;
};

struct f64_vec {
  double *items;
  size_t count;
  size_t cap;
};

struct i32_vec {
  int32_t *items;
  size_t count;
  size_t cap;
};

/* A set of descriptor numbers (of this process). */
struct fd_set_bits {
  uint64_t *words;
  size_t count; /* words */
};

static bool bits_has(const struct fd_set_bits *b, long long fd) {
  size_t word = (size_t)fd / 64;
  return word < b->count && (b->words[word] >> (fd % 64) & 1) != 0;
}

static int bits_add(struct fd_set_bits *b, int fd) {
  size_t word = (size_t)fd / 64;
  if (word >= b->count) {
    size_t count = b->count == 0 ? 64 : b->count;
    while (count <= word) count *= 2;
    uint64_t *words = realloc(b->words, count * sizeof *words);
    if (words == NULL) return ENOMEM;
    memset(words + b->count, 0, (count - b->count) * sizeof *words);
    b->words = words;
    b->count = count;
  }
  b->words[word] |= (uint64_t)1 << (fd % 64);
  return 0;
}

static void bits_remove(struct fd_set_bits *b, int fd) {
  size_t word = (size_t)fd / 64;
  if (word < b->count) b->words[word] &= ~((uint64_t)1 << (fd % 64));
}

static int fd_push(struct fd_vec *v, struct fd_entry entry) {
  if (v->count == v->cap) {
    if (v->cap > SIZE_MAX / 2 / sizeof *v->items) return ENOMEM;
    size_t cap = v->cap == 0 ? 64 : v->cap * 2;
    struct fd_entry *items = realloc(v->items, cap * sizeof *items);
    if (items == NULL) return ENOMEM;
    v->items = items;
    v->cap = cap;
  }
  v->items[v->count++] = entry;
  return 0;
}

/* Makes room for `more` items; returns 0 or ENOMEM (also on size overflow). */
static int f64_reserve(struct f64_vec *v, size_t more) {
  if (more <= v->cap - v->count) return 0;
  size_t cap = v->cap == 0 ? 1024 : v->cap;
  while (cap - v->count < more) {
    if (cap > SIZE_MAX / 2 / sizeof *v->items) return ENOMEM;
    cap *= 2;
  }
  double *items = realloc(v->items, cap * sizeof *items);
  if (items == NULL) return ENOMEM;
  v->items = items;
  v->cap = cap;
  return 0;
}

static int i32_push(struct i32_vec *v, int32_t value) {
  if (v->count == v->cap) {
    if (v->cap > SIZE_MAX / 2 / sizeof *v->items) return ENOMEM;
    size_t cap = v->cap == 0 ? 256 : v->cap * 2;
    int32_t *items = realloc(v->items, cap * sizeof *items);
    if (items == NULL) return ENOMEM;
    v->items = items;
    v->cap = cap;
  }
  v->items[v->count++] = value;
  return 0;
}

/* Appends the descriptors of one process to `out` in the `entries` layout (ENTRY_WIDTH each). */
static int append_entries(struct f64_vec *out, int32_t pid, const struct fd_entry *fds, size_t count) {
  if (count > SIZE_MAX / ENTRY_WIDTH || f64_reserve(out, count * ENTRY_WIDTH) != 0) return ENOMEM;
  double *slot = out->items + out->count;
  for (size_t i = 0; i < count; i++, slot += ENTRY_WIDTH) {
    slot[0] = pid;
    slot[1] = fds[i].fd;
    slot[2] = fds[i].kind;
    slot[3] = fds[i].inode;
    slot[4] = fds[i].end;
  }
  out->count += count * ENTRY_WIDTH;
  return 0;
}

/* Parses a canonical decimal name (no sign, no leading zero) up to `max`; returns -1 otherwise. */
static long long parse_decimal(const char *s, long long max) {
  if (s[0] < '1' || s[0] > '9') return s[0] == '0' && s[1] == 0 ? 0 : -1;
  long long n = 0;
  for (const char *p = s; *p != 0; p++) {
    if (*p < '0' || *p > '9') return -1;
    n = n * 10 + (*p - '0');
    if (n > max) return -1;
  }
  return n;
}

/* N from "<prefix>N]" (the link text after "socket:[" or "pipe:["); -1 if malformed. */
static double parse_bracketed(const char *s) {
  double n = 0;
  const char *p = s;
  for (; *p >= '0' && *p <= '9'; p++) {
    n = n * 10 + (*p - '0');
    if (n > 9007199254740992.0) return -1; /* past 2^53 a double is no longer exact */
  }
  if (p == s || p[0] != ']' || p[1] != 0) return -1;
  return n;
}

/* Which end of a pipe the descriptor is: procfs shows the open mode in the link's owner bits. */
static enum pipe_end end_of(mode_t mode) {
  int readable = (mode & S_IRUSR) != 0;
  int writable = (mode & S_IWUSR) != 0;
  if (readable && writable) return END_BOTH;
  return writable ? END_WRITE : END_READ;
}

static int is_gone(int err) { return err == ENOENT || err == ESRCH; }
static int is_denied(int err) { return err == EACCES || err == EPERM; }

/* What happened to one process. */
enum pid_outcome { PID_OK, PID_GONE, PID_DENIED, PID_FAILED, PID_NOMEM };

/*
 * Appends the socket and pipe descriptors of one process to `out`, in the order the kernel
 * lists them (ascending fd for procfs). On any outcome but PID_OK the caller rolls `out` back
 * to where it was, so a process is either complete or absent. Shared by the full scan
 * (scanFds) and the incremental index (fdIndexRefresh), which passes `skip`: descriptors of
 * this very process that it knows are not sockets or pipes (its kept schedstat files, which
 * would otherwise make reading our own table cost a readlink each). `*seen` (when not NULL)
 * gets the number of descriptors read, of any kind: what reading the table cost.
 */
static enum pid_outcome scan_pid(int proc_fd, const char *pid_name, int named_pipes, const struct fd_set_bits *skip,
                                 struct fd_vec *out, uint32_t *seen) {
  char rel[32];
  int n = snprintf(rel, sizeof rel, "%s/fd", pid_name);
  if (n < 0 || (size_t)n >= sizeof rel) return PID_FAILED;
  int dfd = openat(proc_fd, rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) {
    int err = errno;
    return is_gone(err) ? PID_GONE : is_denied(err) ? PID_DENIED : PID_FAILED;
  }
  /* fdopendir takes ownership of dfd on success; dirfd() gives it back for the *at calls. */
  DIR *dir = fdopendir(dfd);
  if (dir == NULL) {
    int err = errno;
    close(dfd);
    return err == ENOMEM ? PID_NOMEM : PID_FAILED;
  }
  enum pid_outcome outcome = PID_OK;
  char link[LINK_BUF_SIZE];
  for (;;) {
    errno = 0;
    struct dirent *e = readdir(dir);
    if (e == NULL) {
      int err = errno;
      /* The process exited while its directory was read: the kernel ends the listing early
       * or reports ENOENT; either way it is gone, which the caller learns below. */
      if (err != 0) outcome = is_gone(err) ? PID_GONE : is_denied(err) ? PID_DENIED : PID_FAILED;
      break;
    }
    long long fd = parse_decimal(e->d_name, INT32_MAX);
    if (fd < 0) continue; /* "." and ".." */
    if (skip != NULL && bits_has(skip, fd)) continue;
    if (seen != NULL && *seen < UINT32_MAX) (*seen)++;
    ssize_t len = readlinkat(dfd, e->d_name, link, sizeof link - 1);
    if (len < 0) {
      int err = errno;
      if (is_gone(err)) continue; /* closed between readdir and readlink */
      /* The kernel checks access per descriptor (ptrace_may_access), not on opendir. */
      outcome = is_denied(err) ? PID_DENIED : PID_FAILED;
      break;
    }
    link[len] = 0;
    struct fd_entry entry = {.fd = (int32_t)fd, .end = END_READ};
    struct stat st;
    if (strncmp(link, "socket:[", 8) == 0) {
      entry.inode = parse_bracketed(link + 8);
      if (entry.inode < 0) continue;
      entry.kind = FD_SOCKET;
    } else if (strncmp(link, "pipe:[", 6) == 0) {
      entry.inode = parse_bracketed(link + 6);
      if (entry.inode < 0) continue;
      entry.kind = FD_PIPE;
      if (fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        int err = errno;
        if (is_gone(err)) continue;
        outcome = is_denied(err) ? PID_DENIED : PID_FAILED;
        break;
      }
      entry.end = end_of(st.st_mode);
    } else if (named_pipes && link[0] == '/') {
      /* stat() through the /proc link reaches the open file itself, even when its path was
       * renamed, deleted or lives in another mount namespace. It can block on a dead network
       * mount, which is why the caller can turn named pipes off. */
      if (fstatat(dfd, e->d_name, &st, 0) != 0) {
        int err = errno;
        if (is_gone(err)) continue;
        outcome = is_denied(err) ? PID_DENIED : PID_FAILED;
        break;
      }
      if (!S_ISFIFO(st.st_mode)) continue;
      entry.kind = FD_PIPE;
      entry.inode = (double)st.st_ino;
      if (fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        int err = errno;
        if (is_gone(err)) continue;
        outcome = is_denied(err) ? PID_DENIED : PID_FAILED;
        break;
      }
      entry.end = end_of(st.st_mode);
    } else {
      continue; /* anon_inode:, regular files, devices, ... */
    }
    if (fd_push(out, entry) != 0) {
      outcome = PID_NOMEM;
      break;
    }
  }
  closedir(dir); /* also closes dfd */
  return outcome;
}

struct fd_scan {
  struct i32_vec pids;
  struct f64_vec entries;
  struct i32_vec denied;
  struct i32_vec failed;
};

static void fd_scan_free(struct fd_scan *s) {
  free(s->pids.items);
  free(s->entries.items);
  free(s->denied.items);
  free(s->failed.items);
  memset(s, 0, sizeof *s);
}

/* Scans every process under `root`. Returns 0, or a positive errno when the root itself cannot
 * be listed or memory runs out; per-process failures are recorded in the scan instead. */
static int run_fd_scan(const char *root, int named_pipes, struct fd_scan *s) {
  DIR *proc = opendir(root);
  if (proc == NULL) return errno != 0 ? errno : EIO;
  int proc_fd = dirfd(proc);
  struct fd_vec fds = {0}; /* one process at a time, reused */
  int err = 0;
  for (;;) {
    errno = 0;
    struct dirent *e = readdir(proc);
    if (e == NULL) {
      err = errno;
      break;
    }
    long long pid = parse_decimal(e->d_name, INT32_MAX);
    if (pid <= 0) continue; /* not a process (self, sys, ...) */
    fds.count = 0;
    switch (scan_pid(proc_fd, e->d_name, named_pipes, NULL, &fds, NULL)) {
      case PID_OK:
        err = append_entries(&s->entries, (int32_t)pid, fds.items, fds.count);
        if (err == 0) err = i32_push(&s->pids, (int32_t)pid);
        break;
      case PID_GONE:
        break;
      case PID_DENIED:
        err = i32_push(&s->denied, (int32_t)pid);
        break;
      case PID_FAILED:
        err = i32_push(&s->failed, (int32_t)pid);
        break;
      case PID_NOMEM:
        err = ENOMEM;
        break;
    }
    if (err != 0) break;
  }
  free(fds.items);
  closedir(proc);
  return err;
}

/* ---------- incremental fd index ---------- */

/*
 * scanFds reads every /proc/PID/fd at every call: with a thousand idle processes that is tens
 * of milliseconds per SV request, nearly all of it re-reading descriptor tables that have not
 * changed. The index keeps each process's socket and pipe descriptors between refreshes and
 * re-reads only the processes that may have changed since.
 *
 * Why it is exact. A descriptor table is changed only by the threads that share it: open,
 * close, dup2, recvmsg with SCM_RIGHTS all run in the process, and so does a seccomp
 * supervisor's SECCOMP_IOCTL_NOTIF_ADDFD, which wakes the target and lets it install the
 * descriptor itself (kernel/seccomp.c, seccomp_do_user_notification, since ADDFD exists in
 * 5.9). To run, a task must be switched in, and every switch-in is counted in its
 * sched_info.pcount, the third number of /proc/PID/schedstat (kernel/sched/stats.h,
 * sched_info_arrive). So a (re)scan of a process reads, in this order:
 *   1. /proc/PID/schedstat: sum_exec_runtime, run_delay, pcount; the file stays open;
 *   2. /proc/PID/wchan: a symbol only if the task is blocked AND off its run queue, which the
 *      kernel checks under the task's pi_lock (kernel/sched/core.c, get_wchan); "0" otherwise;
 *   3. /proc/PID/stat: state (field 3) and num_threads (field 20);
 *      and when num_threads is more than 1 (keep_threads):
 *      a. /proc/PID/task is listed: the set T;
 *      b. for each thread of T but the leader, in turn, 1 and 2 on /proc/PID/task/TID: its
 *         schedstat is read and kept open, then its wchan (and state) checked;
 *      c. /proc/PID/task is listed again, and must be T;
 *   4. the descriptors (scan_pid).
 * A single-threaded process: if the task was blocked at 2 and alone in its thread group at 3,
 * nothing can change the table after 2 without a switch-in, and a switch-in changes pcount; so
 * as long as a pread() of the kept schedstat returns the values of 1, the descriptors of 4 are
 * still the table. (Reading 1 first is what makes the comparison safe: anything that ran after
 * 1 shows; a task running at 1 and blocked at 2 was switched out meanwhile, which charges its
 * sum_exec_runtime.) A thread created later is created by clone, which the leader must run.
 *
 * A multi-threaded process: every thread shares the table, so every thread is held to the same
 * rule, each with its own kept file, and the process is trusted only if each was blocked when
 * checked (after its own schedstat was read) and the listings of a and c agree. Why that is
 * enough: a change to the table after 4 is made by a thread that runs after 4. Call the tasks
 * whose files were kept the kept ones. At c every live thread of the group is a kept one, or
 * else a kept one exited between its check and c (two tasks never hold one TID at once, so a
 * TID of c that is not the task kept for it means that task is gone) -- and a kept task that
 * exits after its check fails every later pread() with ESRCH, which means a rescan. A thread
 * created after a and gone before c made its changes before 4, which reads them. A thread
 * created after c is created by clone(CLONE_THREAD), which only a thread of the group can call,
 * and that thread runs to do it: following the creators back, some kept thread ran after c,
 * hence after its check, and a thread that runs is switched in, so its pcount moves. So while
 * every kept file reads as it did, no thread has run since it was checked, none exited, none
 * was created, and the descriptors of 4 are still the table. The second listing must come
 * before 4, not after: listed after 4, a thread created just after a (by a thread not yet read
 * at b) could change the table after 4 and exit before the listing, invisible to both.
 * io_uring's io-wq and SQPOLL workers are threads of the group since Linux 5.12 (in
 * /proc/PID/task), so they are held to the rule like any other.
 *
 * Otherwise the process is volatile and rescanned at every refresh:
 *   - wchan "0" for any of its threads: running, runnable, or between the two. The state field
 *     alone is not enough: a task marks itself S before it calls schedule() and may go on
 *     running if its wait condition is already met, and a task that runs without a break is
 *     charged in schedstat only at the next tick, so "S" and unchanged numbers can belong to a
 *     task on a CPU;
 *   - a thread list that changed between a and c, a thread whose files could not be read, or
 *     more threads than kept files remain (see Cost): none of its threads' files stays open;
 *   - stopd itself, a process whose schedstat, wchan or stat could not be read, and one whose
 *     descriptors were refused or failed (the caller retries those itself).
 *     (With skipSelf, as the daemon opens it, the index leaves stopd out altogether: stopd is
 *     never part of a closure, see src/host/linux-processes.ts, and its own table, busy with
 *     every request, would otherwise be read again at every refresh.)
 * A zombie alone in its group is trusted whatever wchan says: do_exit has already dropped its
 * table (exit_files runs before exit_notify) and it never runs again. A zombie leader whose
 * other threads still run is not trusted.
 *
 * Kernel threads (PF_KTHREAD in the flags of stat, field 9) hold no descriptors: they share
 * the initial task's empty table (kthreadd is started with CLONE_FILES from it), and a kernel
 * thread that becomes a user process does so by exec (kernel_execve; the usermode helpers of
 * kernels before 5.17), which clears PF_KTHREAD. Many run all the time (kworkers, ksoftirqd),
 * which would make them volatile, so one seen as a kernel thread at its last scan is read
 * again only when it exits (ESRCH on its kept schedstat), when its stat no longer shows the
 * flag, and at its periodic rescan; otherwise a refresh costs it a pread, plus a read of its
 * stat when it ran. (A usermode helper of a kernel before 5.17 gets its pipe as descriptor 0
 * just before its exec: a refresh in between sees it still holding nothing.)
 *
 * Gone processes: a kept schedstat file belongs to the struct pid, not to the number, so once
 * the process is reaped every read fails with ESRCH, even if the number was reused.
 *
 * New processes: the last field of /proc/loadavg is the last pid allocated in the reader's pid
 * namespace. Unchanged since the last refresh: nothing was created. Grown by at most
 * INDEX_MAX_WINDOW without wrapping: only the pids in between are probed (many are threads).
 * Otherwise, at the first refresh, and when the last full listing is older than the list
 * interval (10 s by default, a safety net), /proc is listed in full. A probe uses pidfd_open(2),
 * which accepts thread-group leaders only; EINVAL means a thread, or a fork still in progress
 * (copy_process allocates the pid before it attaches the task), and /proc/PID tells the two
 * apart: a fork in progress is probed again at later refreshes until it shows up or is gone.
 * In the initial pid namespace the index also compares its count of processes with the
 * kernel's (the link count of /proc is a constant plus nr_processes(), fs/proc/root.c) and
 * lists /proc when they differ, so even a pid counter that wrapped all the way around between
 * two refreshes cannot hide a process there.
 *
 * Known blind spots; outside them the index answers exactly what a full scan would:
 *   - processes sharing one descriptor table without being threads (clone with CLONE_FILES but
 *     not CLONE_THREAD, as LinuxThreads did): a change made by one is seen in it, but in the
 *     others only once they run or are rescanned for another reason;
 *   - before Linux 5.12 io_uring's workers were kernel threads outside the thread group that
 *     installed descriptors (IORING_OP_OPENAT, ACCEPT) into a process that may be asleep;
 *   - outside the initial pid namespace (where the count check catches both), processes that
 *     took no pid from the counter (clone3 with set_tid, as CRIU restores), and a counter that
 *     wrapped around pid_max between two refreshes and stopped within INDEX_MAX_WINDOW of where
 *     it was: those processes are found at the next full listing, within the list interval;
 *   - a fork that stays in progress while more than INDEX_MAX_WINDOW other pids are allocated
 *     around a full listing: likewise;
 *   - (shared with the full scan) a process whose main thread has exited while others run:
 *     /proc/PID/fd reads the leader's table, which is gone.
 * As a second safety net every process is read again at least once per rescan interval (60 s
 * by default), changed or not, which bounds how long the first two can last (the list interval
 * bounds the next two); and the holders a
 * query returns are re-checked by readlink at query time (stillHolds in
 * src/host/linux-processes.ts), so a descriptor closed since the refresh is never reported.
 *
 * Cost: one pread() of a kept schedstat per thread of a trusted process per refresh (one per
 * process for the others). Judging a multi-threaded process reads about ten files per thread,
 * which for a busy one (found changed or volatile at two refreshes in a row) is wasted at
 * every refresh; when those reads outnumber its descriptors (threads * 4 >= descriptors), it is
 * judged again only after 1, 2, 4, ... up to 32 refreshes, and simply rescanned in between (a
 * rescan without judging is always exact; it only costs reading the descriptors). One idle
 * again is trusted at the next retry. Each open seq_file pins a page of kernel memory, so at most
 * maxKeptFiles stay open, a thread's counting like a process's (and never more than half the
 * descriptor limit); processes beyond, and a multi-threaded process whose threads do not all
 * fit, are rescanned at every refresh. The files live in the descriptor table of a thread of
 * their own (see keeper_main) unless separateTable is false, as the daemon opens the index:
 * it leaves itself out (skipSelf), so its own table is never read, and the hand-over to the
 * keeper and back costs more than the refresh itself on a busy virtual machine.
 */

/* Most pids probed one by one before a full listing is cheaper (a listing of 1 000 processes
 * costs about as much as a few hundred probes). */
#define INDEX_MAX_WINDOW 256
/* Forks in progress remembered at most; past it the next refresh lists /proc. */
#define INDEX_MAX_PENDING 256
#define INDEX_DEFAULT_MAX_KEPT 4096
#define INDEX_DEFAULT_LIST_INTERVAL_MS 10000
#define INDEX_DEFAULT_RESCAN_INTERVAL_MS 60000
/* The inode of the initial pid namespace (include/linux/proc_ns.h, PROC_PID_INIT_INO). */
#define PID_NS_INIT_INO 0xEFFFFFFCU
/* /proc/PID/stat fits easily: 52 numeric fields and a comm of at most 64 bytes. */
#define STAT_BUF_SIZE 2048

/* One descriptor holding an inode. */
struct holder {
  int32_t pid;
  int32_t fd;
  uint8_t kind;
};

/* inode -> holders, open addressing. A slot whose holders all went keeps its key until the
 * next rehash, which drops it; inode 0 (never a socket or pipe) marks a free slot. */
struct inode_slot {
  uint64_t inode;
  uint32_t count;
  uint32_t cap;
  struct holder *items;
};

struct inode_map {
  struct inode_slot *slots;
  size_t cap; /* a power of two, or 0 */
  size_t used; /* slots with a key */
};

/* One process the index knows. */
/* One other thread of a trusted multi-threaded process: its schedstat, kept open, and the
 * numbers read from it before the process's descriptors. */
struct kept_thread {
  int fd;
  uint64_t stats[3];
};

struct tracked {
  int32_t pid;
  int kept;               /* PROCROOT/PID/schedstat, open between refreshes; -1 when not kept */
  struct kept_thread *threads; /* the other threads' schedstat (trusted multi-threaded only) */
  uint32_t nthreads;
  uint8_t outcome;        /* PID_OK, PID_DENIED or PID_FAILED at its last scan */
  uint8_t trusted;        /* not volatile: unchanged schedstat means unchanged descriptors */
  uint8_t kthread;        /* a kernel thread at its last scan (see "Kernel threads" above) */
  uint8_t misses;         /* refreshes in a row that found it changed or volatile */
  uint32_t threads_seen;  /* num_threads when last judged */
  uint32_t fds_seen;      /* descriptors of any kind at its last scan */
  uint64_t retry_at;      /* with backoff (see "Cost"): the refresh that may judge it next */
  uint64_t stats[3];      /* sum_exec_runtime, run_delay, pcount, read before the descriptors */
  int64_t due_ns;         /* rescanned at the first refresh after this, changed or not */
  struct fd_entry *fds;   /* ascending fd; NULL when none */
  uint32_t nfds;
};

enum keeper_state { KEEPER_STARTING, KEEPER_FAILED, KEEPER_IDLE, KEEPER_BUSY, KEEPER_STOP };

struct fd_index {
  char *root;
  int root_fd; /* the proc root, open for the index's lifetime (in the keeper's table if any) */
  bool closed;
  int named_pipes;
  int32_t self;
  bool skip_self;   /* leave out the process that opens the index (see fdIndexCreate) */
  int32_t skip_pid; /* ... its pid as the proc root numbers it; -1: none */
  size_t max_kept;
  size_t kept;
  struct fd_set_bits kept_fds; /* the kept schedstat descriptors, skipped when reading our own table
                                * (only without a keeper: its numbers are not our table's then) */
  int64_t list_interval_ns;
  int64_t rescan_interval_ns; /* 0: trusted processes are never rescanned unless they change */
  int64_t now_ns;             /* when the current refresh started */
  int64_t last_list_ns;
  long long last_pid;  /* /proc/loadavg's last pid at the last refresh; -1: list at the next */
  int schedstat_ok;    /* the kernel counts switch-ins (CONFIG_SCHED_INFO) */
  int can_probe;       /* loadavg, pidfd_open and a proc root of our own pid namespace */
  int can_count;       /* ... and that namespace is the initial one */
  int nlink_known;
  long long nlink_base; /* link count of the proc root minus its processes */
  struct tracked *procs; /* ascending pid */
  size_t count;
  size_t cap;
  struct inode_map inodes;
  struct i32_vec pending;   /* pids whose fork was in progress when probed */
  struct i32_vec rescanned; /* pids (re)scanned by the last refresh */
  struct fd_vec scratch;
  int last_full; /* what the last refresh reported */
  uint64_t refreshes; /* counts refreshes, for the backoff of busy multi-threaded processes */
  /* The keeper thread (see keeper_main) and the job it runs for the caller. */
  bool has_keeper;
  pthread_t keeper;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  enum keeper_state keeper_state;
  int (*job)(struct fd_index *ix);
  int job_result;
};

static uint64_t mix64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

static struct inode_slot *map_find(const struct inode_map *m, uint64_t inode) {
  if (m->cap == 0 || inode == 0) return NULL;
  for (size_t i = mix64(inode) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
    struct inode_slot *s = &m->slots[i];
    if (s->inode == inode) return s;
    if (s->inode == 0) return NULL; /* the table is never full, so a probe always ends */
  }
}

/* Rebuilds the table at most a third full, dropping keys that no descriptor holds any more. */
static int map_rehash(struct inode_map *m) {
  size_t live = 0;
  for (size_t i = 0; i < m->cap; i++)
    if (m->slots[i].count > 0) live++;
  size_t cap = 64;
  while (cap / 3 < live + 1) cap *= 2;
  struct inode_slot *slots = calloc(cap, sizeof *slots);
  if (slots == NULL) return ENOMEM;
  for (size_t i = 0; i < m->cap; i++) {
    struct inode_slot *old = &m->slots[i];
    if (old->count == 0) {
      free(old->items);
      continue;
    }
    size_t j = mix64(old->inode) & (cap - 1);
    while (slots[j].inode != 0) j = (j + 1) & (cap - 1);
    slots[j] = *old;
  }
  free(m->slots);
  m->slots = slots;
  m->cap = cap;
  m->used = live;
  return 0;
}

static int map_add(struct inode_map *m, uint64_t inode, struct holder h) {
  if (inode == 0) return 0;
  struct inode_slot *s = map_find(m, inode);
  if (s == NULL) {
    if ((m->used + 1) * 3 > m->cap * 2) { /* keep it at most two thirds full */
      int err = map_rehash(m);
      if (err != 0) return err;
    }
    size_t i = mix64(inode) & (m->cap - 1);
    while (m->slots[i].inode != 0) i = (i + 1) & (m->cap - 1);
    s = &m->slots[i];
    s->inode = inode;
    m->used++;
  }
  if (s->count == s->cap) {
    uint32_t cap = s->cap == 0 ? 2 : s->cap * 2;
    if (cap < s->cap) return ENOMEM;
    struct holder *items = realloc(s->items, cap * sizeof *items);
    if (items == NULL) return ENOMEM;
    s->items = items;
    s->cap = cap;
  }
  s->items[s->count++] = h;
  return 0;
}

static void map_remove(struct inode_map *m, uint64_t inode, int32_t pid, int32_t fd) {
  struct inode_slot *s = map_find(m, inode);
  if (s == NULL) return;
  for (uint32_t i = 0; i < s->count; i++) {
    if (s->items[i].pid == pid && s->items[i].fd == fd) {
      s->items[i] = s->items[--s->count];
      return;
    }
  }
}

static void map_free(struct inode_map *m) {
  for (size_t i = 0; i < m->cap; i++) free(m->slots[i].items);
  free(m->slots);
  memset(m, 0, sizeof *m);
}

static int64_t monotonic_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Reads a small proc file relative to the root into `buf` (NUL-terminated). Returns its length
 * or a negative errno. One read is enough: procfs seq_files fill it in one go. */
static ssize_t read_proc_file(int root_fd, const char *rel, char *buf, size_t size) {
  int fd = openat(root_fd, rel, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  ssize_t n;
  do n = read(fd, buf, size - 1);
  while (n < 0 && errno == EINTR);
  int err = errno;
  close(fd);
  if (n < 0) return -err;
  buf[n] = 0;
  return n;
}

/* Parses "N N N\n" (schedstat). Returns 0, or -1 when malformed. */
static int parse_schedstat(const char *s, uint64_t out[3]) {
  for (int i = 0; i < 3; i++) {
    if (*s < '0' || *s > '9') return -1;
    uint64_t n = 0;
    for (; *s >= '0' && *s <= '9'; s++) n = n * 10 + (uint64_t)(*s - '0');
    out[i] = n;
    if (i < 2 && *s++ != ' ') return -1;
  }
  return 0;
}

/* Re-reads a kept schedstat. Returns 0, ESRCH once the process is reaped, another errno else. */
static int read_stats(int fd, uint64_t out[3]) {
  char buf[96];
  ssize_t n;
  do n = pread(fd, buf, sizeof buf - 1, 0);
  while (n < 0 && errno == EINTR);
  if (n < 0) return errno;
  buf[n] = 0;
  return parse_schedstat(buf, out) == 0 ? 0 : EINVAL;
}

/* PF_KTHREAD in the flags of /proc/PID/stat (include/linux/sched.h): a kernel thread. */
#define STAT_PF_KTHREAD 0x00200000UL

/* State (field 3), flags (field 9) and num_threads (field 20) of /proc/PID/stat; -1 when
 * malformed. The comm (field 2) may hold spaces and parentheses, so fields are counted from
 * its last ')'. */
static int parse_stat(const char *s, char *state, unsigned long *flags, long *threads) {
  const char *p = strrchr(s, ')');
  if (p == NULL || p[1] != ' ' || p[2] == 0) return -1;
  *state = p[2];
  p += 3; /* the space before field 4 */
  for (int field = 4; field <= 20; field++) { /* to the start of field `field` */
    p = strchr(p, ' ');
    if (p == NULL) return -1;
    p++;
    if (field == 9) {
      if (*p < '0' || *p > '9') return -1;
      *flags = strtoul(p, NULL, 10);
    }
  }
  if (*p < '0' || *p > '9') return -1;
  long n = 0;
  for (; *p >= '0' && *p <= '9' && n < 1000000000L; p++) n = n * 10 + (*p - '0');
  *threads = n;
  return 0;
}

/* The last pid allocated in the reader's pid namespace (/proc/loadavg, last field), or -1. */
static long long read_last_pid(int root_fd) {
  char buf[128];
  ssize_t n = read_proc_file(root_fd, "loadavg", buf, sizeof buf);
  if (n <= 0) return -1;
  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' ')) buf[--n] = 0;
  const char *last = strrchr(buf, ' ');
  return last == NULL ? -1 : parse_decimal(last + 1, INT32_MAX);
}

/* Steps 2 and 3 of the rule above for one task (`task` is "PID" or "PID/task/TID"): whether
 * it was blocked, or is a zombie alone in its group. *threads gets num_threads (0 when stat
 * could not be read), *kthread whether it is a kernel thread. A zombie leader with other
 * threads left is not quiet: they still run. */
static int is_quiet(const struct fd_index *ix, const char *task, long *threads, bool *kthread) {
  char rel[64], buf[STAT_BUF_SIZE];
  *threads = 0;
  *kthread = false;
  snprintf(rel, sizeof rel, "%s/wchan", task);
  ssize_t n = read_proc_file(ix->root_fd, rel, buf, 64); /* a symbol can be long; its start will do */
  int blocked = n > 0 && !(n == 1 && buf[0] == '0');
  snprintf(rel, sizeof rel, "%s/stat", task);
  n = read_proc_file(ix->root_fd, rel, buf, sizeof buf);
  char state;
  unsigned long flags;
  long count;
  if (n <= 0 || parse_stat(buf, &state, &flags, &count) != 0 || count < 1) return 0;
  *threads = count;
  *kthread = (flags & STAT_PF_KTHREAD) != 0;
  if (state == 'Z' || state == 'X') return count == 1;
  return blocked && state != 'R';
}

/* Whether the process is a kernel thread now (false when its stat cannot be read). */
static bool is_kthread(const struct fd_index *ix, int32_t pid) {
  char rel[32], buf[STAT_BUF_SIZE];
  snprintf(rel, sizeof rel, "%d/stat", (int)pid);
  char state;
  unsigned long flags;
  long threads;
  return read_proc_file(ix->root_fd, rel, buf, sizeof buf) > 0 && parse_stat(buf, &state, &flags, &threads) == 0 &&
         (flags & STAT_PF_KTHREAD) != 0;
}

static int compare_fd(const void *a, const void *b) {
  int32_t x = ((const struct fd_entry *)a)->fd, y = ((const struct fd_entry *)b)->fd;
  return (x > y) - (x < y);
}

static int compare_i32(const void *a, const void *b) {
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return (x > y) - (x < y);
}

static int compare_tracked(const void *a, const void *b) {
  return compare_i32(&((const struct tracked *)a)->pid, &((const struct tracked *)b)->pid);
}

static struct tracked *find_tracked(const struct fd_index *ix, int32_t pid) {
  struct tracked key = {.pid = pid};
  return bsearch(&key, ix->procs, ix->count, sizeof key, compare_tracked);
}

static void drop_fds(struct fd_index *ix, struct tracked *t) {
  for (uint32_t i = 0; i < t->nfds; i++) map_remove(&ix->inodes, (uint64_t)t->fds[i].inode, t->pid, t->fds[i].fd);
  free(t->fds);
  t->fds = NULL;
  t->nfds = 0;
}

/* Closes the kept schedstat files of a process's other threads, if any. */
static void drop_threads(struct fd_index *ix, struct tracked *t) {
  for (uint32_t i = 0; i < t->nthreads; i++) {
    bits_remove(&ix->kept_fds, t->threads[i].fd);
    close(t->threads[i].fd);
    ix->kept--;
  }
  free(t->threads);
  t->threads = NULL;
  t->nthreads = 0;
}

/* Closes a process's kept schedstat files (its own and its threads'), if any. */
static void drop_kept(struct fd_index *ix, struct tracked *t) {
  drop_threads(ix, t);
  if (t->kept < 0) return;
  bits_remove(&ix->kept_fds, t->kept);
  close(t->kept);
  t->kept = -1;
  ix->kept--;
}

/* Forgets a process: its descriptors and its kept schedstat. */
static void release_tracked(struct fd_index *ix, struct tracked *t) {
  drop_fds(ix, t);
  drop_kept(ix, t);
}

/* Replaces a process's descriptors with `fds` (sorted), updating the inode map only when they
 * differ: a volatile process is rescanned at every refresh and usually has not changed. */
static int set_fds(struct fd_index *ix, struct tracked *t, const struct fd_vec *fds) {
  if (t->nfds == fds->count && (fds->count == 0 || memcmp(t->fds, fds->items, fds->count * sizeof *fds->items) == 0))
    return 0;
  struct fd_entry *copy = NULL;
  if (fds->count > 0) {
    if (fds->count > UINT32_MAX) return ENOMEM;
    copy = malloc(fds->count * sizeof *copy);
    if (copy == NULL) return ENOMEM;
    memcpy(copy, fds->items, fds->count * sizeof *copy);
  }
  drop_fds(ix, t);
  t->fds = copy;
  t->nfds = (uint32_t)fds->count;
  for (uint32_t i = 0; i < t->nfds; i++) {
    struct holder h = {.pid = t->pid, .fd = copy[i].fd, .kind = copy[i].kind};
    int err = map_add(&ix->inodes, (uint64_t)copy[i].inode, h);
    if (err != 0) return err; /* the caller resets the whole index */
  }
  return 0;
}

/* The thread ids of a process (PROCROOT/PID/task), ascending, into `out`. Returns 0 or an
 * errno. */
static int list_tasks(const struct fd_index *ix, const char *pid_name, struct i32_vec *out) {
  char rel[40];
  snprintf(rel, sizeof rel, "%s/task", pid_name);
  int dfd = openat(ix->root_fd, rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return errno;
  DIR *dir = fdopendir(dfd);
  if (dir == NULL) {
    int err = errno;
    close(dfd);
    return err;
  }
  out->count = 0;
  int err = 0;
  for (;;) {
    errno = 0;
    struct dirent *e = readdir(dir);
    if (e == NULL) {
      err = errno;
      break;
    }
    long long tid = parse_decimal(e->d_name, INT32_MAX);
    if (tid > 0 && (err = i32_push(out, (int32_t)tid)) != 0) break;
  }
  closedir(dir);
  if (err == 0) qsort(out->items, out->count, sizeof *out->items, compare_i32);
  return err;
}

/*
 * Steps 3a to 3c of the rule above, for a multi-threaded process whose leader is quiet: lists
 * its threads, keeps each other thread's schedstat (read before its wchan is checked), and
 * lists the threads again. Returns 1 when every thread was quiet and the list did not change
 * (the files stay kept in t->threads), 0 when the process is not to be trusted (none kept),
 * -1 when out of memory.
 */
static int keep_threads(struct fd_index *ix, struct tracked *t, const char *pid_name) {
  struct i32_vec before = {0}, after = {0};
  int quiet = 0, nomem = 0;
  int err = list_tasks(ix, pid_name, &before);
  if (err == ENOMEM) nomem = 1;
  if (err == 0 && before.count > 1 && before.count - 1 <= ix->max_kept - ix->kept) {
    t->threads = calloc(before.count - 1, sizeof *t->threads);
    if (t->threads == NULL) nomem = 1;
    quiet = t->threads != NULL;
    for (size_t i = 0; i < before.count && quiet; i++) {
      int32_t tid = before.items[i];
      if (tid == t->pid) continue; /* the leader: already read and checked, through PID/ */
      char task[48], rel[64];
      snprintf(task, sizeof task, "%s/task/%d", pid_name, (int)tid);
      snprintf(rel, sizeof rel, "%s/schedstat", task);
      struct kept_thread *k = &t->threads[t->nthreads];
      k->fd = openat(ix->root_fd, rel, O_RDONLY | O_CLOEXEC);
      if (k->fd < 0) {
        quiet = 0;
        break;
      }
      if (read_stats(k->fd, k->stats) != 0 || bits_add(&ix->kept_fds, k->fd) != 0) {
        close(k->fd);
        quiet = 0;
        break;
      }
      t->nthreads++;
      ix->kept++;
      long threads;
      bool kthread;
      quiet = is_quiet(ix, task, &threads, &kthread);
    }
    if (quiet) {
      err = list_tasks(ix, pid_name, &after);
      if (err == ENOMEM) nomem = 1;
      quiet = err == 0 && after.count == before.count &&
              memcmp(after.items, before.items, before.count * sizeof *before.items) == 0 &&
              t->nthreads == before.count - 1;
    }
  }
  free(before.items);
  free(after.items);
  if (!quiet) drop_threads(ix, t);
  return nomem ? -1 : quiet;
}

/*
 * (Re)scans one process in the order of the rule above and updates `t` (pid set, kept closed
 * or open). PID_GONE: the caller releases `t`. PID_NOMEM: the caller resets the index.
 */
static enum pid_outcome scan_tracked(struct fd_index *ix, struct tracked *t) {
  char name[16], rel[40];
  snprintf(name, sizeof name, "%d", (int)t->pid);
  drop_kept(ix, t);
  t->kthread = 0; /* set again below, once its schedstat is kept */
  int trusted = 0;
  bool kthread = false;
  /* Past the cap the process is rescanned at every refresh anyway: no need to judge it. Nor
   * one refused or failed at its last scan: it is read again at every refresh (below), and if
   * it is readable now, the next refresh judges it. Nor, between retries, a busy
   * multi-threaded process (see "Cost"). */
  int judge = ix->schedstat_ok && ix->kept < ix->max_kept && t->pid != ix->self && t->outcome == PID_OK;
  if (judge && t->misses >= 2 && t->threads_seen > 1 && (uint64_t)t->threads_seen * 4 >= t->fds_seen) {
    judge = ix->refreshes >= t->retry_at;
    if (judge) t->retry_at = ix->refreshes + (1ULL << (t->misses - 2 < 5 ? t->misses - 2 : 5));
  }
  if (judge) {
    snprintf(rel, sizeof rel, "%s/schedstat", name);
    int fd = openat(ix->root_fd, rel, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && is_gone(errno)) return PID_GONE;
    if (fd >= 0) {
      int err = read_stats(fd, t->stats);
      if (err == 0 && bits_add(&ix->kept_fds, fd) == 0) {
        t->kept = fd;
        ix->kept++;
        long threads;
        trusted = is_quiet(ix, name, &threads, &kthread);
        t->threads_seen = threads > 0 && threads < INT32_MAX ? (uint32_t)threads : 0;
        if (trusted && threads > 1) {
          int keep = keep_threads(ix, t, name);
          if (keep < 0) return PID_NOMEM;
          trusted = keep;
        }
      } else {
        close(fd);
        if (err == ESRCH) return PID_GONE;
      }
    }
  }
  ix->scratch.count = 0;
  uint32_t seen = 0;
  enum pid_outcome outcome = scan_pid(ix->root_fd, name, ix->named_pipes,
                                      t->pid == ix->self && !ix->has_keeper ? &ix->kept_fds : NULL, &ix->scratch, &seen);
  t->fds_seen = seen;
  switch (outcome) {
    case PID_OK:
      /* procfs lists descriptors in ascending order already; a fake root may not. */
      qsort(ix->scratch.items, ix->scratch.count, sizeof *ix->scratch.items, compare_fd);
      if (set_fds(ix, t, &ix->scratch) != 0) return PID_NOMEM;
      break;
    case PID_DENIED:
    case PID_FAILED:
      drop_fds(ix, t);
      /* The caller reads these again itself; keep asking the kernel too, at every refresh, so
       * a kept file would be wasted on them. */
      trusted = 0;
      drop_kept(ix, t);
      break;
    case PID_GONE:
    case PID_NOMEM:
      return outcome;
  }
  t->outcome = (uint8_t)outcome;
  t->trusted = (uint8_t)trusted;
  /* Only with its schedstat kept: that file is what tells the thread is still there. */
  t->kthread = kthread && t->kept >= 0 && outcome == PID_OK;
  /* Somewhere in the second half of the interval, by pid, so that processes scanned together
   * (all of them at the first refresh) do not all come due at the same refresh again. */
  int64_t half = ix->rescan_interval_ns / 2;
  t->due_ns = ix->now_ns + half + (half > 0 ? (int64_t)(mix64((uint64_t)t->pid ^ (uint64_t)ix->now_ns) % (uint64_t)half) : 0);
  return i32_push(&ix->rescanned, t->pid) == 0 ? outcome : PID_NOMEM;
}

/* Forgets everything; the next refresh starts from a full listing. */
static void index_reset(struct fd_index *ix) {
  for (size_t i = 0; i < ix->count; i++) release_tracked(ix, &ix->procs[i]);
  ix->count = 0;
  map_free(&ix->inodes);
  ix->pending.count = 0;
  ix->last_pid = -1;
  ix->nlink_known = 0;
}

/* Step one of a refresh: every tracked process is kept (unchanged schedstat, not volatile),
 * rescanned, or forgotten (gone). Returns 0 or ENOMEM. */
static int validate_tracked(struct fd_index *ix) {
  size_t out = 0;
  int err = 0;
  size_t i = 0;
  for (; i < ix->count; i++) {
    struct tracked t = ix->procs[i];
    enum pid_outcome outcome = PID_OK;
    int rescan = 1;
    int due = ix->rescan_interval_ns != 0 && ix->now_ns >= t.due_ns;
    if (t.kthread && !due) {
      /* A kernel thread may run all the time: while it stays one, it holds nothing new. */
      uint64_t now[3];
      int read_err = read_stats(t.kept, now);
      if (read_err == 0 && memcmp(now, t.stats, sizeof now) != 0) {
        /* By path first, then the kept file: a task still alive at the second read is the one
         * the path named (the number cannot have been reused while it lived). */
        int still = is_kthread(ix, t.pid);
        read_err = read_stats(t.kept, now);
        if (read_err == 0 && !still) read_err = EAGAIN;
        if (read_err == 0) memcpy(t.stats, now, sizeof now);
      }
      if (read_err == ESRCH) outcome = PID_GONE;
      if (read_err == 0 || read_err == ESRCH) rescan = 0;
      /* Any other failure, or no longer a kernel thread: rescan by path. */
    } else if (t.trusted && t.kept >= 0 && !due) {
      uint64_t now[3];
      int read_err = read_stats(t.kept, now);
      if (read_err == ESRCH) {
        outcome = PID_GONE;
        rescan = 0;
      } else if (read_err == 0 && memcmp(now, t.stats, sizeof now) == 0) {
        rescan = 0;
        /* Every other thread too: one that ran, or exited (ESRCH), means a rescan. */
        for (uint32_t k = 0; k < t.nthreads && !rescan; k++)
          rescan = read_stats(t.threads[k].fd, now) != 0 || memcmp(now, t.threads[k].stats, sizeof now) != 0;
      }
      /* Any other failure: rescan by path, which finds out whether the process is gone. */
    }
    if (rescan && !due && t.misses < UINT8_MAX) t.misses++;
    if (!rescan) t.misses = 0;
    if (rescan) outcome = scan_tracked(ix, &t);
    if (outcome == PID_GONE) {
      release_tracked(ix, &t);
      continue;
    }
    ix->procs[out++] = t;
    if (outcome == PID_NOMEM) {
      err = ENOMEM;
      i++;
      break;
    }
  }
  /* After an early stop keep the rest, so the reset that follows releases everything once. */
  memmove(ix->procs + out, ix->procs + i, (ix->count - i) * sizeof *ix->procs);
  ix->count = out + (ix->count - i);
  return err;
}

/* Starts tracking processes not tracked yet (each scanned like a rescan). Returns 0 or ENOMEM. */
static int add_processes(struct fd_index *ix, const int32_t *pids, size_t n) {
  if (n == 0) return 0;
  if (ix->cap - ix->count < n) {
    size_t cap = ix->cap == 0 ? 256 : ix->cap;
    while (cap - ix->count < n) cap *= 2;
    struct tracked *procs = realloc(ix->procs, cap * sizeof *procs);
    if (procs == NULL) return ENOMEM;
    ix->procs = procs;
    ix->cap = cap;
  }
  int err = 0;
  size_t before = ix->count;
  for (size_t i = 0; i < n && err == 0; i++) {
    struct tracked t = {.pid = pids[i], .kept = -1};
    enum pid_outcome outcome = scan_tracked(ix, &t);
    if (outcome == PID_GONE) {
      release_tracked(ix, &t);
      continue;
    }
    ix->procs[ix->count++] = t; /* even on PID_NOMEM, so the reset releases it */
    if (outcome == PID_NOMEM) err = ENOMEM;
  }
  if (ix->count > before) qsort(ix->procs, ix->count, sizeof *ix->procs, compare_tracked);
  return err;
}

/* Lists the proc root: tracks the processes not tracked yet and forgets tracked ones that are
 * no longer listed. Returns 0 or an errno. */
static int list_all(struct fd_index *ix, int64_t now) {
  int dfd = openat(ix->root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return errno;
  DIR *dir = fdopendir(dfd);
  if (dir == NULL) {
    int err = errno;
    close(dfd);
    return err;
  }
  struct i32_vec listed = {0};
  int err = 0;
  for (;;) {
    errno = 0;
    struct dirent *e = readdir(dir);
    if (e == NULL) {
      err = errno;
      break;
    }
    long long pid = parse_decimal(e->d_name, INT32_MAX);
    if (pid > 0 && pid != ix->skip_pid && (err = i32_push(&listed, (int32_t)pid)) != 0) break;
  }
  closedir(dir);
  if (err != 0) {
    free(listed.items);
    return err;
  }
  qsort(listed.items, listed.count, sizeof *listed.items, compare_i32);
  /* Both ascending: one walk forgets the unlisted and keeps the new ones in `fresh`. */
  struct i32_vec fresh = {0};
  size_t out = 0, j = 0;
  for (size_t i = 0; i < ix->count; i++) {
    struct tracked *t = &ix->procs[i];
    for (; j < listed.count && listed.items[j] < t->pid; j++)
      if ((err = i32_push(&fresh, listed.items[j])) != 0) break;
    if (err != 0) {
      memmove(ix->procs + out, ix->procs + i, (ix->count - i) * sizeof *ix->procs);
      out += ix->count - i;
      break;
    }
    if (j < listed.count && listed.items[j] == t->pid) {
      j++;
      ix->procs[out++] = *t;
    } else {
      release_tracked(ix, t);
    }
  }
  ix->count = out;
  for (; err == 0 && j < listed.count; j++) err = i32_push(&fresh, listed.items[j]);
  if (err == 0) err = add_processes(ix, fresh.items, fresh.count);
  free(listed.items);
  free(fresh.items);
  if (err != 0) return err;
  ix->pending.count = 0;
  ix->last_list_ns = now;
  return 0;
}

enum probe_result { PROBE_PROCESS, PROBE_NONE, PROBE_PENDING, PROBE_ERROR };

/* What a pid from the loadavg window is: a process to track, nothing (a thread, or gone), a
 * fork still in progress, or unknown (an unexpected error: list /proc instead). */
static enum probe_result probe_pid(const struct fd_index *ix, int32_t pid) {
#ifdef SYS_pidfd_open
  for (int attempt = 0; attempt < 2; attempt++) {
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd >= 0) {
      close(fd);
      return PROBE_PROCESS;
    }
    if (errno == ESRCH) return PROBE_NONE;
    if (errno != EINVAL) return PROBE_ERROR;
    if (attempt == 1) return PROBE_NONE; /* a task is attached and leads no group: a thread */
    /* The pid exists but leads no thread group: a thread, whose /proc/PID resolves, or a fork
     * not yet attached, whose /proc/PID does not (yet). */
    char name[16];
    snprintf(name, sizeof name, "%d", (int)pid);
    struct stat st;
    if (fstatat(ix->root_fd, name, &st, 0) != 0) return is_gone(errno) ? PROBE_PENDING : PROBE_ERROR;
  }
  return PROBE_NONE;
#else
  (void)ix;
  (void)pid;
  return PROBE_ERROR;
#endif
}

/* Finds the processes created since the last refresh by probing pids (from, to] and the forks
 * that were in progress. Sets *full when /proc must be listed instead. Returns 0 or ENOMEM. */
static int probe_new(struct fd_index *ix, long long from, long long to, int *full) {
  struct i32_vec found = {0}, pending = {0};
  int err = 0;
  /* Forks in progress at the last refresh first, then the new window. */
  size_t old = ix->pending.count;
  for (size_t k = 0; k < old + (size_t)(to - from) && err == 0 && !*full; k++) {
    int32_t pid = k < old ? ix->pending.items[k] : (int32_t)(from + 1 + (long long)(k - old));
    if (pid == ix->skip_pid || find_tracked(ix, pid) != NULL) continue;
    switch (probe_pid(ix, pid)) {
      case PROBE_PROCESS:
        err = i32_push(&found, pid);
        break;
      case PROBE_PENDING:
        err = i32_push(&pending, pid);
        if (err == 0 && pending.count > INDEX_MAX_PENDING) *full = 1;
        break;
      case PROBE_NONE:
        break;
      case PROBE_ERROR:
        *full = 1;
        break;
    }
  }
  if (err == 0 && !*full) {
    /* A pid can be both pending and in the window only if it was listed twice: drop repeats. */
    qsort(found.items, found.count, sizeof *found.items, compare_i32);
    size_t unique = 0;
    for (size_t k = 0; k < found.count; k++)
      if (unique == 0 || found.items[unique - 1] != found.items[k]) found.items[unique++] = found.items[k];
    err = add_processes(ix, found.items, unique);
  }
  free(found.items);
  if (err == 0 && !*full) {
    free(ix->pending.items);
    ix->pending = pending;
  } else {
    free(pending.items);
  }
  return err;
}

/* The link count of the proc root: a constant plus the number of processes in the system. */
static long long root_nlink(const struct fd_index *ix) {
  struct stat st;
  return fstat(ix->root_fd, &st) == 0 ? (long long)st.st_nlink : -1;
}

/* Brings the index up to date. Returns 0 or an errno; after a failure the index is empty and
 * the next refresh starts over. */
static int index_refresh(struct fd_index *ix, int *was_full) {
  ix->rescanned.count = 0;
  ix->refreshes++;
  int64_t now = monotonic_ns();
  ix->now_ns = now;
  /* Read before anything else: a process created from here on has a larger pid, which the next
   * refresh probes. */
  long long last = ix->can_probe ? read_last_pid(ix->root_fd) : -1;
  int full = last < 0 || ix->last_pid < 0 || last < ix->last_pid || last - ix->last_pid > INDEX_MAX_WINDOW ||
             now - ix->last_list_ns >= ix->list_interval_ns;
  int err = validate_tracked(ix);
  if (err == 0 && !full && last > ix->last_pid) err = probe_new(ix, ix->last_pid, last, &full);
  else if (err == 0 && !full && ix->pending.count > 0) err = probe_new(ix, last, last, &full);
  if (err == 0 && !full && ix->can_count && ix->nlink_known && root_nlink(ix) - (long long)ix->count != ix->nlink_base) {
    /* Most often a process created or reaped during this refresh: probe the pids allocated
     * meanwhile, and if the counts still differ, list /proc to be sure. */
    long long again = read_last_pid(ix->root_fd);
    if (again > last && again - last <= INDEX_MAX_WINDOW) {
      err = probe_new(ix, last, again, &full);
      last = again;
    }
    if (err == 0 && root_nlink(ix) - (long long)ix->count != ix->nlink_base) full = 1;
  }
  if (err == 0 && full) {
    err = list_all(ix, now);
    /* A fork in progress is not listed either. Forks still in progress now were given recent
     * pids: probe the last INDEX_MAX_WINDOW pids once, so that they are remembered as pending. */
    int ignored = 0;
    if (err == 0 && last > 0) err = probe_new(ix, last > INDEX_MAX_WINDOW ? last - INDEX_MAX_WINDOW : 0, last, &ignored);
    long long nlink = ix->can_count && err == 0 ? root_nlink(ix) : -1;
    ix->nlink_known = nlink >= 0;
    ix->nlink_base = nlink - (long long)ix->count;
  }
  if (err != 0) {
    index_reset(ix);
    return err;
  }
  ix->last_pid = last;
  *was_full = full;
  return 0;
}

/* What the index learns about the kernel and the proc root once, at open (run where the
 * index's descriptors live: in the keeper when there is one). */
static int job_open(struct fd_index *ix) {
  ix->root_fd = open(ix->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (ix->root_fd < 0) return errno;
  char buf[128];
  ix->skip_pid = -1;
  if (ix->skip_self) {
    /* Our pid as this proc root numbers it (another pid namespace numbers us otherwise); a root
     * without "self" (a fake one) does not list us. */
    ssize_t len = readlinkat(ix->root_fd, "self", buf, sizeof buf - 1);
    if (len > 0) {
      buf[len] = 0;
      long long pid = parse_decimal(buf, INT32_MAX);
      if (pid > 0) ix->skip_pid = (int32_t)pid;
    }
  }
  /* Without CONFIG_SCHED_INFO every schedstat reads "0 0 0", even ours, though we are running:
   * then nothing is trusted and every refresh rescans every process. */
  uint64_t stats[3];
  ix->schedstat_ok = read_proc_file(ix->root_fd, "self/schedstat", buf, sizeof buf) > 0 &&
                     parse_schedstat(buf, stats) == 0 && stats[2] > 0;
#ifdef SYS_pidfd_open
  /* Probing needs loadavg and pidfd_open to speak of the pid namespace the root lists. */
  ssize_t len = readlinkat(ix->root_fd, "self", buf, sizeof buf - 1);
  if (len > 0) {
    buf[len] = 0;
    int fd = (int)syscall(SYS_pidfd_open, ix->self, 0);
    if (fd >= 0) close(fd);
    ix->can_probe = parse_decimal(buf, INT32_MAX) == ix->self && fd >= 0 && read_last_pid(ix->root_fd) >= 0;
  }
#endif
  struct stat ns;
  ix->can_count = ix->can_probe && fstatat(ix->root_fd, "self/ns/pid", &ns, 0) == 0 && ns.st_ino == PID_NS_INIT_INO;
  return 0;
}

static int job_refresh(struct fd_index *ix) { return index_refresh(ix, &ix->last_full); }

/* Closes every descriptor the index holds (in the keeper's table when there is one). */
static int job_release(struct fd_index *ix) {
  index_reset(ix);
  if (ix->root_fd >= 0) close(ix->root_fd);
  ix->root_fd = -1;
  return 0;
}

/*
 * The keeper: a thread with a descriptor table of its own (unshare(CLONE_FILES)), where the
 * index keeps its schedstat files and does all its reading. In the caller's own table a
 * thousand kept files would make every refresh read a thousand-entry /proc/self/fd (the caller
 * is rescanned every time, unless skipSelf), and would show up in every other tool that
 * lists the caller's descriptors. /proc/PID/fd shows the thread-group leader's table, which stays
 * stopd's real one. Without the keeper (unshare refused) the work runs in the caller's thread
 * and the kept files are skipped by number when stopd reads its own table.
 */
static void *keeper_main(void *arg) {
  struct fd_index *ix = arg;
  /* The copy of the caller's table holds a reference to every file stopd had open (sockets
   * too, which would then never close): drop them all before anything else. */
  int err = unshare(CLONE_FILES) == 0 ? 0 : errno;
#ifdef SYS_close_range
  if (err == 0 && syscall(SYS_close_range, 0U, ~0U, 0U) != 0) err = errno;
#else
  if (err == 0) err = ENOSYS;
#endif
  pthread_mutex_lock(&ix->lock);
  ix->keeper_state = err == 0 ? KEEPER_IDLE : KEEPER_FAILED;
  pthread_cond_broadcast(&ix->cond);
  while (err == 0) {
    while (ix->keeper_state == KEEPER_IDLE) pthread_cond_wait(&ix->cond, &ix->lock);
    if (ix->keeper_state == KEEPER_STOP) break;
    /* KEEPER_BUSY: the caller waits for the job with the lock released. */
    pthread_mutex_unlock(&ix->lock);
    int result = ix->job(ix);
    pthread_mutex_lock(&ix->lock);
    ix->job_result = result;
    ix->keeper_state = KEEPER_IDLE;
    pthread_cond_broadcast(&ix->cond);
  }
  pthread_mutex_unlock(&ix->lock);
  return NULL;
}

/* Starts the keeper; returns whether it runs (otherwise jobs run in the caller's thread). */
static bool keeper_start(struct fd_index *ix) {
  if (pthread_mutex_init(&ix->lock, NULL) != 0) return false;
  if (pthread_cond_init(&ix->cond, NULL) != 0) {
    pthread_mutex_destroy(&ix->lock);
    return false;
  }
  pthread_attr_t attr;
  bool started = pthread_attr_init(&attr) == 0;
  if (started) {
    pthread_attr_setstacksize(&attr, 256 * 1024); /* it needs a few KiB; the default is 8 MiB */
    /* Node handles signals in its main thread: the keeper must never take one. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    ix->keeper_state = KEEPER_STARTING;
    started = pthread_create(&ix->keeper, &attr, keeper_main, ix) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
  }
  if (started) {
    pthread_mutex_lock(&ix->lock);
    while (ix->keeper_state == KEEPER_STARTING) pthread_cond_wait(&ix->cond, &ix->lock);
    started = ix->keeper_state == KEEPER_IDLE;
    pthread_mutex_unlock(&ix->lock);
    if (!started) pthread_join(ix->keeper, NULL);
  }
  if (!started) {
    pthread_cond_destroy(&ix->cond);
    pthread_mutex_destroy(&ix->lock);
  }
  ix->has_keeper = started;
  return started;
}

/* Runs `job` where the index's descriptors live, and returns its result. */
static int index_call(struct fd_index *ix, int (*job)(struct fd_index *)) {
  if (!ix->has_keeper) return job(ix);
  pthread_mutex_lock(&ix->lock);
  ix->job = job;
  ix->keeper_state = KEEPER_BUSY;
  pthread_cond_broadcast(&ix->cond);
  while (ix->keeper_state == KEEPER_BUSY) pthread_cond_wait(&ix->cond, &ix->lock);
  int result = ix->job_result;
  pthread_mutex_unlock(&ix->lock);
  return result;
}

static void index_close(struct fd_index *ix);

/* Opens an index over `root`. Returns 0 or an errno (the root cannot be opened). */
static int index_open(struct fd_index *ix, const char *root, int named_pipes, size_t max_kept, int64_t list_interval_ns,
                      int64_t rescan_interval_ns, bool separate_table, bool skip_self) {
  memset(ix, 0, sizeof *ix);
  ix->root_fd = -1;
  ix->root = strdup(root);
  if (ix->root == NULL) return ENOMEM;
  ix->named_pipes = named_pipes;
  ix->self = (int32_t)getpid();
  ix->skip_self = skip_self;
  ix->list_interval_ns = list_interval_ns;
  ix->rescan_interval_ns = rescan_interval_ns;
  ix->last_pid = -1;
  /* Kept files count against the descriptor limit (per table) and the system's file-max: use
   * half the limit at most. */
  struct rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY && max_kept > limit.rlim_cur / 2)
    max_kept = (size_t)(limit.rlim_cur / 2);
  ix->max_kept = max_kept;
  if (separate_table) keeper_start(ix);
  int err = index_call(ix, job_open);
  if (err != 0) index_close(ix);
  return err;
}

/* Releases everything the index holds and stops the keeper; idempotent. */
static void index_close(struct fd_index *ix) {
  if (ix->closed) return;
  ix->closed = true;
  index_call(ix, job_release);
  if (ix->has_keeper) {
    pthread_mutex_lock(&ix->lock);
    ix->keeper_state = KEEPER_STOP;
    pthread_cond_broadcast(&ix->cond);
    pthread_mutex_unlock(&ix->lock);
    pthread_join(ix->keeper, NULL);
    pthread_cond_destroy(&ix->cond);
    pthread_mutex_destroy(&ix->lock);
    ix->has_keeper = false;
  }
  free(ix->procs);
  ix->procs = NULL;
  ix->cap = 0;
  free(ix->pending.items);
  free(ix->rescanned.items);
  free(ix->scratch.items);
  free(ix->kept_fds.words);
  free(ix->root);
  ix->root = NULL;
  memset(&ix->kept_fds, 0, sizeof ix->kept_fds);
  memset(&ix->pending, 0, sizeof ix->pending);
  memset(&ix->rescanned, 0, sizeof ix->rescanned);
  memset(&ix->scratch, 0, sizeof ix->scratch);
}

/* ---------- /proc fd scan and index bindings ---------- */

/* A JS typed array holding a copy of `count` items of `size` bytes. */
static napi_status make_typed(napi_env env, napi_typedarray_type type, const void *items, size_t count,
                              size_t size, napi_value *out) {
  void *data = NULL;
  napi_value buffer;
  napi_status st = napi_create_arraybuffer(env, count * size, &data, &buffer);
  if (st != napi_ok) return st;
  if (count > 0) memcpy(data, items, count * size);
  return napi_create_typedarray(env, type, count, buffer, 0, out);
}

/* The type of `options` when it is an object; false (exception pending) when neither an object
 * nor undefined/null. *present says whether there is an object to read. */
static bool check_options(napi_env env, napi_value options, bool *present) {
  napi_valuetype type;
  *present = false;
  if (napi_typeof(env, options, &type) != napi_ok) {
    throw_napi_failure(env);
    return false;
  }
  if (type == napi_undefined || type == napi_null) return true;
  if (type != napi_object) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "Options must be an object");
    return false;
  }
  *present = true;
  return true;
}

/* Reads a boolean option (kept as is when absent). Returns false with an exception pending. */
static bool get_bool_option(napi_env env, napi_value options, const char *key, bool *out) {
  bool present;
  if (!check_options(env, options, &present)) return false;
  if (!present) return true;
  napi_value v;
  napi_valuetype type;
  if (napi_get_named_property(env, options, key, &v) != napi_ok || napi_typeof(env, v, &type) != napi_ok) {
    throw_napi_failure(env);
    return false;
  }
  if (type == napi_undefined) return true;
  if (type != napi_boolean || napi_get_value_bool(env, v, out) != napi_ok) {
    char msg[96];
    snprintf(msg, sizeof msg, "options.%s must be a boolean", key);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
    return false;
  }
  return true;
}

/* Reads `options.namedPipes` (default true). Returns false with an exception pending. */
static bool get_named_pipes(napi_env env, napi_value options, int *out) {
  bool flag = true;
  if (!get_bool_option(env, options, "namedPipes", &flag)) return false;
  *out = flag ? 1 : 0;
  return true;
}

/* Reads a non-negative integer option (kept as is when absent). Returns false with an
 * exception pending. */
static bool get_count_option(napi_env env, napi_value options, const char *key, double max, double *out) {
  bool present;
  if (!check_options(env, options, &present)) return false;
  if (!present) return true;
  napi_value v;
  napi_valuetype type;
  if (napi_get_named_property(env, options, key, &v) != napi_ok || napi_typeof(env, v, &type) != napi_ok) {
    throw_napi_failure(env);
    return false;
  }
  if (type == napi_undefined) return true;
  double value = -1;
  if (type != napi_number || napi_get_value_double(env, v, &value) != napi_ok || !(value >= 0) || value > max ||
      value != (double)(long long)value) {
    char msg[96];
    snprintf(msg, sizeof msg, "options.%s must be an integer from 0 to %.0f", key, max);
    napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", msg);
    return false;
  }
  *out = value;
  return true;
}

/* Copies the procRoot argument into a malloc'ed string. Returns NULL with an exception pending. */
static char *get_proc_root(napi_env env, napi_value value) {
  napi_valuetype type;
  if (napi_typeof(env, value, &type) != napi_ok || type != napi_string) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "procRoot must be a string");
    return NULL;
  }
  size_t root_len = 0;
  if (napi_get_value_string_utf8(env, value, NULL, 0, &root_len) != napi_ok) {
    throw_napi_failure(env);
    return NULL;
  }
  if (root_len == 0 || root_len > PATH_MAX) {
    napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", "procRoot must be a non-empty path");
    return NULL;
  }
  char *root = malloc(root_len + 1);
  if (root == NULL) {
    throw_errno(env, "Cannot read the proc root", ENOMEM);
    return NULL;
  }
  size_t copied = 0;
  if (napi_get_value_string_utf8(env, value, root, root_len + 1, &copied) != napi_ok) {
    free(root);
    throw_napi_failure(env);
    return NULL;
  }
  if (strlen(root) != copied) { /* an embedded NUL would silently name another path */
    free(root);
    napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", "procRoot must not contain NUL");
    return NULL;
  }
  return root;
}

/* Fetches between `min` and `max` arguments (missing ones read as undefined). Returns false
 * with an exception pending. */
static bool get_some_args(napi_env env, napi_callback_info info, size_t min, size_t max, napi_value *argv) {
  size_t argc = max;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) {
    throw_napi_failure(env);
    return false;
  }
  if (argc < min) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_COUNT", "Wrong number of arguments");
    return false;
  }
  return true;
}

/* scanFds(procRoot: string, options?: { namedPipes?: boolean }) */
static napi_value scan_fds(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_some_args(env, info, 1, 2, argv)) return NULL;
  int named_pipes = 1;
  if (!get_named_pipes(env, argv[1], &named_pipes)) return NULL;
  char *root = get_proc_root(env, argv[0]);
  if (root == NULL) return NULL;

  struct fd_scan s;
  memset(&s, 0, sizeof s);
  int err = run_fd_scan(root, named_pipes, &s);
  free(root);
  if (err != 0) {
    fd_scan_free(&s);
    throw_errno(env, "Cannot scan process descriptors", err);
    return NULL;
  }
  napi_value result = NULL, pids, entries, denied, failed;
  bool ok = napi_create_object(env, &result) == napi_ok &&
            make_typed(env, napi_int32_array, s.pids.items, s.pids.count, sizeof(int32_t), &pids) == napi_ok &&
            make_typed(env, napi_float64_array, s.entries.items, s.entries.count, sizeof(double), &entries) == napi_ok &&
            make_typed(env, napi_int32_array, s.denied.items, s.denied.count, sizeof(int32_t), &denied) == napi_ok &&
            make_typed(env, napi_int32_array, s.failed.items, s.failed.count, sizeof(int32_t), &failed) == napi_ok &&
            napi_set_named_property(env, result, "pids", pids) == napi_ok &&
            napi_set_named_property(env, result, "entries", entries) == napi_ok &&
            napi_set_named_property(env, result, "denied", denied) == napi_ok &&
            napi_set_named_property(env, result, "failed", failed) == napi_ok;
  fd_scan_free(&s);
  if (!ok) {
    throw_napi_failure(env);
    return NULL;
  }
  return result;
}

/* Marks our externals, so an index handle cannot be confused with another addon's external. */
static const napi_type_tag FD_INDEX_TAG = {0x73746f70645f6664ULL, 0x5f696e6465780001ULL};

/* The garbage collector releases an index that was never closed. */
static void finalize_index(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  struct fd_index *ix = data;
  index_close(ix);
  free(ix);
}

/* The index behind a handle, closed or not. Returns NULL with an exception pending (not a handle). */
static struct fd_index *get_handle(napi_env env, napi_value value) {
  napi_valuetype type;
  bool tagged = false;
  void *data = NULL;
  if (napi_typeof(env, value, &type) != napi_ok || type != napi_external ||
      napi_check_object_type_tag(env, value, &FD_INDEX_TAG, &tagged) != napi_ok || !tagged ||
      napi_get_value_external(env, value, &data) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "index must be a handle from fdIndexCreate");
    return NULL;
  }
  return data;
}

/* The open index behind a handle. Returns NULL with an exception pending (not a handle, or closed). */
static struct fd_index *get_index(napi_env env, napi_value value) {
  struct fd_index *ix = get_handle(env, value);
  if (ix == NULL) return NULL;
  if (ix->closed) {
    napi_throw_error(env, "ERR_STOPD_INDEX_CLOSED", "The descriptor index is closed");
    return NULL;
  }
  return ix;
}

/* fdIndexCreate(procRoot: string, options?: { namedPipes?, maxKeptFiles?, listIntervalMs?, rescanIntervalMs?,
 *                                             separateTable?, skipSelf? }) */
static napi_value fd_index_create(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_some_args(env, info, 1, 2, argv)) return NULL;
  int named_pipes = 1;
  double max_kept = INDEX_DEFAULT_MAX_KEPT, interval_ms = INDEX_DEFAULT_LIST_INTERVAL_MS,
         rescan_ms = INDEX_DEFAULT_RESCAN_INTERVAL_MS;
  bool separate_table = true, skip_self = false;
  if (!get_named_pipes(env, argv[1], &named_pipes) ||
      !get_count_option(env, argv[1], "maxKeptFiles", 1048576, &max_kept) ||
      !get_count_option(env, argv[1], "listIntervalMs", 86400000, &interval_ms) ||
      !get_count_option(env, argv[1], "rescanIntervalMs", 86400000, &rescan_ms) ||
      !get_bool_option(env, argv[1], "separateTable", &separate_table) ||
      !get_bool_option(env, argv[1], "skipSelf", &skip_self))
    return NULL;
  char *root = get_proc_root(env, argv[0]);
  if (root == NULL) return NULL;
  struct fd_index *ix = malloc(sizeof *ix);
  int err = ix == NULL ? ENOMEM : index_open(ix, root, named_pipes, (size_t)max_kept, (int64_t)interval_ms * 1000000,
                                              (int64_t)rescan_ms * 1000000, separate_table, skip_self);
  free(root);
  if (err != 0) {
    free(ix);
    throw_errno(env, "Cannot open the proc root", err);
    return NULL;
  }
  napi_value handle;
  if (napi_create_external(env, ix, finalize_index, NULL, &handle) != napi_ok) {
    index_close(ix);
    free(ix);
    throw_napi_failure(env);
    return NULL;
  }
  CHECK_NAPI(env, napi_type_tag_object(env, handle, &FD_INDEX_TAG));
  return handle;
}

/* fdIndexRefresh(index) -> { full, tracked, kept, rescanned: Int32Array } */
static napi_value fd_index_refresh(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  struct fd_index *ix = get_index(env, argv[0]);
  if (ix == NULL) return NULL;
  int err = index_call(ix, job_refresh);
  int full = ix->last_full;
  if (err != 0) {
    throw_errno(env, "Cannot refresh the descriptor index", err);
    return NULL;
  }
  napi_value result, flag, rescanned;
  CHECK_NAPI(env, napi_create_object(env, &result));
  CHECK_NAPI(env, napi_get_boolean(env, full != 0, &flag));
  CHECK_NAPI(env, napi_set_named_property(env, result, "full", flag));
  CHECK_NAPI(env, set_u32(env, result, "tracked", (uint32_t)ix->count));
  CHECK_NAPI(env, set_u32(env, result, "kept", (uint32_t)ix->kept));
  CHECK_NAPI(env, make_typed(env, napi_int32_array, ix->rescanned.items, ix->rescanned.count, sizeof(int32_t), &rescanned));
  CHECK_NAPI(env, napi_set_named_property(env, result, "rescanned", rescanned));
  return result;
}

static int compare_holder(const void *a, const void *b) {
  const struct holder *x = a, *y = b;
  if (x->pid != y->pid) return (x->pid > y->pid) - (x->pid < y->pid);
  return (x->fd > y->fd) - (x->fd < y->fd);
}

/* fdIndexHolders(index, inode) -> Int32Array of (pid, fd, kind) triples, by pid then fd */
static napi_value fd_index_holders(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv)) return NULL;
  struct fd_index *ix = get_index(env, argv[0]);
  if (ix == NULL) return NULL;
  double inode = -1;
  if (napi_get_value_double(env, argv[1], &inode) != napi_ok || !(inode >= 0) || inode > 9007199254740992.0 ||
      inode != (double)(uint64_t)inode) {
    napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", "inode must be a non-negative integer");
    return NULL;
  }
  const struct inode_slot *slot = map_find(&ix->inodes, (uint64_t)inode);
  size_t count = slot == NULL ? 0 : slot->count;
  int32_t *triples = count == 0 ? NULL : malloc(count * 3 * sizeof *triples);
  struct holder *sorted = count == 0 ? NULL : malloc(count * sizeof *sorted);
  if (count > 0 && (triples == NULL || sorted == NULL)) {
    free(triples);
    free(sorted);
    throw_errno(env, "Cannot look up holders", ENOMEM);
    return NULL;
  }
  if (count > 0) {
    memcpy(sorted, slot->items, count * sizeof *sorted);
    qsort(sorted, count, sizeof *sorted, compare_holder);
    for (size_t i = 0; i < count; i++) {
      triples[i * 3] = sorted[i].pid;
      triples[i * 3 + 1] = sorted[i].fd;
      triples[i * 3 + 2] = sorted[i].kind;
    }
  }
  napi_value result = NULL;
  napi_status st = make_typed(env, napi_int32_array, triples, count * 3, sizeof(int32_t), &result);
  free(triples);
  free(sorted);
  if (st != napi_ok) {
    throw_napi_failure(env);
    return NULL;
  }
  return result;
}

/* fdIndexFds(index, pid) -> Float64Array in the scanFds `entries` layout, or null when the
 * index holds no descriptors for the pid (not tracked, refused or failed) */
static napi_value fd_index_fds(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv)) return NULL;
  struct fd_index *ix = get_index(env, argv[0]);
  if (ix == NULL) return NULL;
  int32_t pid = 0;
  if (napi_get_value_int32(env, argv[1], &pid) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "pid must be a number");
    return NULL;
  }
  const struct tracked *t = find_tracked(ix, pid);
  napi_value result = NULL;
  if (t == NULL || t->outcome != PID_OK) {
    CHECK_NAPI(env, napi_get_null(env, &result));
    return result;
  }
  struct f64_vec entries = {0};
  if (append_entries(&entries, pid, t->fds, t->nfds) != 0) {
    throw_errno(env, "Cannot read the descriptors of a process", ENOMEM);
    return NULL;
  }
  napi_status st = make_typed(env, napi_float64_array, entries.items, entries.count, sizeof(double), &result);
  free(entries.items);
  if (st != napi_ok) {
    throw_napi_failure(env);
    return NULL;
  }
  return result;
}

/* fdIndexDenied(index) -> { denied: Int32Array, failed: Int32Array }, ascending */
static napi_value fd_index_denied(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  struct fd_index *ix = get_index(env, argv[0]);
  if (ix == NULL) return NULL;
  struct i32_vec denied = {0}, failed = {0};
  int err = 0;
  for (size_t i = 0; i < ix->count && err == 0; i++) {
    if (ix->procs[i].outcome == PID_DENIED) err = i32_push(&denied, ix->procs[i].pid);
    if (ix->procs[i].outcome == PID_FAILED) err = i32_push(&failed, ix->procs[i].pid);
  }
  napi_value result = NULL, d, f;
  bool ok = err == 0 && napi_create_object(env, &result) == napi_ok &&
            make_typed(env, napi_int32_array, denied.items, denied.count, sizeof(int32_t), &d) == napi_ok &&
            make_typed(env, napi_int32_array, failed.items, failed.count, sizeof(int32_t), &f) == napi_ok &&
            napi_set_named_property(env, result, "denied", d) == napi_ok &&
            napi_set_named_property(env, result, "failed", f) == napi_ok;
  free(denied.items);
  free(failed.items);
  if (!ok) {
    if (err != 0) throw_errno(env, "Cannot list unreadable processes", err);
    else throw_napi_failure(env);
    return NULL;
  }
  return result;
}

/* fdIndexClose(index): closes the kept files now rather than at garbage collection; idempotent. */
static napi_value fd_index_close(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  struct fd_index *ix = get_handle(env, argv[0]);
  if (ix != NULL) index_close(ix);
  return NULL;
}

NAPI_MODULE_INIT(/* napi_env env, napi_value exports */) {
  napi_property_descriptor props[] = {
      {"tcpLookup", NULL, tcp_lookup, NULL, NULL, NULL, napi_enumerable, NULL},
      {"tcpDump", NULL, tcp_dump, NULL, NULL, NULL, napi_enumerable, NULL},
      {"unixDump", NULL, unix_dump, NULL, NULL, NULL, napi_enumerable, NULL},
      {"unixLookup", NULL, unix_lookup, NULL, NULL, NULL, napi_enumerable, NULL},
      {"scanFds", NULL, scan_fds, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fdIndexCreate", NULL, fd_index_create, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fdIndexRefresh", NULL, fd_index_refresh, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fdIndexHolders", NULL, fd_index_holders, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fdIndexFds", NULL, fd_index_fds, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fdIndexDenied", NULL, fd_index_denied, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fdIndexClose", NULL, fd_index_close, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok ||
      socket_fd_register(env, exports) != napi_ok || napi_add_env_cleanup_hook(env, close_kept_conn, NULL) != napi_ok) {
    throw_napi_failure(env);
    return NULL;
  }
  return exports;
}
