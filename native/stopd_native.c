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
 * TcpEntry  = { family, state, uid, inode, localAddr: Buffer, localPort, remoteAddr: Buffer, remotePort }
 * UnixEntry = { inode, type, state, path: string | null, peer }
 *
 * Each call opens its own NETLINK_SOCK_DIAG socket and closes it before returning: a
 * socket() + close() is a few microseconds, and no state survives between calls, so an
 * interrupted or failed call can never leave stale replies for the next one.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>

#include <node_api.h>

#include "socket_fd.h"

/* Large enough for any datagram the kernel builds for a dump (netlink_dump caps its skb at
 * 32 KiB); a truncated datagram is still detected via MSG_TRUNC and reported as an error. */
#define RECV_BUF_SIZE 65536

/* Upper bound on one recvmsg(); past it the call fails with EAGAIN instead of hanging. */
#define RECV_TIMEOUT_SEC 5

#define CHECK_NAPI(env, call)                                                                  \
  do {                                                                                         \
    if ((call) != napi_ok) {                                                                   \
      throw_napi_failure(env);                                                                 \
      return NULL;                                                                             \
    }                                                                                          \
  } while (0)

/* Rethrows the pending N-API failure, if none is pending yet. */
static void throw_napi_failure(napi_env env) {
  bool pending = false;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending) return;
  const napi_extended_error_info *info = NULL;
  napi_get_last_error_info(env, &info);
  const char *msg = info != NULL && info->error_message != NULL ? info->error_message : "N-API call failed";
  napi_throw_error(env, "ERR_STOPD_NATIVE", msg);
}

/* Throws `Error(what: strerror(err))` with `code` set to the errno name (ENOENT, EPERM, ...). */
static void throw_errno(napi_env env, const char *what, int err) {
  char text[128];
  char msg[320];
  const char *name = NULL;
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  name = strerrorname_np(err);
#endif
  /* GNU strerror_r: thread-safe and returns the text (which may not be `text` itself). */
  const char *why = strerror_r(err, text, sizeof text);
  snprintf(msg, sizeof msg, "%s: %s", what, why);
  napi_throw_error(env, name != NULL ? name : "ERR_NETLINK", msg);
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
static int nl_once(struct nlmsghdr *req, nl_visit_fn visit, void *ctx, bool *opened) {
  struct nl_conn c;
  int err = nl_open(&c);
  *opened = err == 0;
  if (err != 0) return err;
  err = nl_transact(&c, req, visit, ctx);
  nl_close(&c);
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

/* Fetches exactly `want` arguments. Returns false with an exception pending. */
static bool get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
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

static napi_status set_buffer(napi_env env, napi_value obj, const char *key, const uint8_t *bytes, size_t len) {
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

/* unixDump() */
static napi_value unix_dump(napi_env env, napi_callback_info info) {
  (void)info;
  struct {
    struct nlmsghdr nlh;
    struct unix_diag_req r;
  } req;
  memset(&req, 0, sizeof req);
  req.nlh.nlmsg_len = sizeof req;
  req.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  req.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  req.r.sdiag_family = AF_UNIX;
  req.r.udiag_states = ~0U;
  req.r.udiag_show = UDIAG_SHOW_NAME | UDIAG_SHOW_PEER;

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
 * Appends the socket and pipe descriptors of one process to `out`. On any outcome but PID_OK
 * the caller rolls `out` back to where it was, so a process is either complete or absent.
 */
static enum pid_outcome scan_pid(int proc_fd, const char *pid_name, double pid, int named_pipes,
                                 struct f64_vec *out) {
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
    ssize_t len = readlinkat(dfd, e->d_name, link, sizeof link - 1);
    if (len < 0) {
      int err = errno;
      if (is_gone(err)) continue; /* closed between readdir and readlink */
      /* The kernel checks access per descriptor (ptrace_may_access), not on opendir. */
      outcome = is_denied(err) ? PID_DENIED : PID_FAILED;
      break;
    }
    link[len] = 0;
    double kind, inode;
    enum pipe_end end = END_READ;
    struct stat st;
    if (strncmp(link, "socket:[", 8) == 0) {
      inode = parse_bracketed(link + 8);
      if (inode < 0) continue;
      kind = FD_SOCKET;
    } else if (strncmp(link, "pipe:[", 6) == 0) {
      inode = parse_bracketed(link + 6);
      if (inode < 0) continue;
      kind = FD_PIPE;
      if (fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        int err = errno;
        if (is_gone(err)) continue;
        outcome = is_denied(err) ? PID_DENIED : PID_FAILED;
        break;
      }
      end = end_of(st.st_mode);
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
      kind = FD_PIPE;
      inode = (double)st.st_ino;
      if (fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        int err = errno;
        if (is_gone(err)) continue;
        outcome = is_denied(err) ? PID_DENIED : PID_FAILED;
        break;
      }
      end = end_of(st.st_mode);
    } else {
      continue; /* anon_inode:, regular files, devices, ... */
    }
    if (f64_reserve(out, ENTRY_WIDTH) != 0) {
      outcome = PID_NOMEM;
      break;
    }
    double *slot = out->items + out->count;
    slot[0] = pid;
    slot[1] = (double)fd;
    slot[2] = kind;
    slot[3] = inode;
    slot[4] = end;
    out->count += ENTRY_WIDTH;
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
    size_t mark = s->entries.count;
    enum pid_outcome outcome = scan_pid(proc_fd, e->d_name, (double)pid, named_pipes, &s->entries);
    if (outcome != PID_OK) s->entries.count = mark;
    switch (outcome) {
      case PID_OK:
        err = i32_push(&s->pids, (int32_t)pid);
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
  closedir(proc);
  return err;
}

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

/* Reads `options.namedPipes` (default true). Returns false with an exception pending. */
static bool get_named_pipes(napi_env env, napi_value options, int *out) {
  *out = 1;
  napi_valuetype type;
  if (napi_typeof(env, options, &type) != napi_ok) {
    throw_napi_failure(env);
    return false;
  }
  if (type == napi_undefined || type == napi_null) return true;
  if (type != napi_object) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "Options must be an object");
    return false;
  }
  napi_value v;
  if (napi_get_named_property(env, options, "namedPipes", &v) != napi_ok || napi_typeof(env, v, &type) != napi_ok) {
    throw_napi_failure(env);
    return false;
  }
  if (type == napi_undefined) return true;
  bool flag = true;
  if (type != napi_boolean || napi_get_value_bool(env, v, &flag) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "options.namedPipes must be a boolean");
    return false;
  }
  *out = flag ? 1 : 0;
  return true;
}

/* scanFds(procRoot: string, options?: { namedPipes?: boolean }) */
static napi_value scan_fds(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) {
    throw_napi_failure(env);
    return NULL;
  }
  if (argc < 1) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_COUNT", "Wrong number of arguments");
    return NULL;
  }
  napi_valuetype type;
  if (napi_typeof(env, argv[0], &type) != napi_ok || type != napi_string) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "procRoot must be a string");
    return NULL;
  }
  size_t root_len = 0;
  CHECK_NAPI(env, napi_get_value_string_utf8(env, argv[0], NULL, 0, &root_len));
  if (root_len == 0 || root_len > PATH_MAX) {
    napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", "procRoot must be a non-empty path");
    return NULL;
  }
  int named_pipes = 1;
  if (argc >= 2 && !get_named_pipes(env, argv[1], &named_pipes)) return NULL;
  char *root = malloc(root_len + 1);
  if (root == NULL) {
    throw_errno(env, "Cannot scan process descriptors", ENOMEM);
    return NULL;
  }
  size_t copied = 0;
  if (napi_get_value_string_utf8(env, argv[0], root, root_len + 1, &copied) != napi_ok) {
    free(root);
    throw_napi_failure(env);
    return NULL;
  }
  if (strlen(root) != copied) { /* an embedded NUL would silently name another path */
    free(root);
    napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", "procRoot must not contain NUL");
    return NULL;
  }

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

NAPI_MODULE_INIT(/* napi_env env, napi_value exports */) {
  napi_property_descriptor props[] = {
      {"tcpLookup", NULL, tcp_lookup, NULL, NULL, NULL, napi_enumerable, NULL},
      {"tcpDump", NULL, tcp_dump, NULL, NULL, NULL, napi_enumerable, NULL},
      {"unixDump", NULL, unix_dump, NULL, NULL, NULL, napi_enumerable, NULL},
      {"scanFds", NULL, scan_fds, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok ||
      socket_fd_register(env, exports) != napi_ok) {
    throw_napi_failure(env);
    return NULL;
  }
  return exports;
}
