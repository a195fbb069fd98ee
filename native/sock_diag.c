/*
 * sock_diag: TCP and UNIX socket lookups over netlink NETLINK_SOCK_DIAG (plain C; the N-API
 * binding is sock_diag_napi.c, the interface sock_diag.h).
 *
 * Why native: Node has no netlink sockets, and the alternative (/proc/net/tcp) walks the whole
 * TCP table on every read, tens of milliseconds on a busy host. SOCK_DIAG_BY_FAMILY without
 * NLM_F_DUMP asks the kernel for one socket by its 4-tuple, a hash lookup (inet_diag.c,
 * inet_diag_find_one_icsk), so an IDENT/STOP lookup costs the same at any table size; a UNIX
 * socket is looked up by inode the same way (unix_diag_get_exact).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>

#include "sock_diag.h"


/* Large enough for any datagram the kernel builds for a dump (netlink_dump caps its skb at
 * 32 KiB); a truncated datagram is still detected via MSG_TRUNC and reported as an error. */
#define RECV_BUF_SIZE 65536

/* Upper bound on one recvmsg(); past it the call fails with EAGAIN instead of hanging. */
#define RECV_TIMEOUT_SEC 5

/* ---------- netlink plumbing ---------- */

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

/*
 * One netlink socket per thread, kept between requests: opening, configuring and closing a
 * socket (and its receive buffer) cost more than the lookup itself, which an ID request makes
 * twice. Each transaction takes a fresh seq, so a reply left over from an earlier one is
 * skipped; after any failure but "no such socket" the socket is dropped and the next call
 * opens a new one, so nothing half-read is ever carried over. The socket belongs to its
 * thread: sock_diag_close_thread_socket closes it when a thread's environment is torn down.
 */
static __thread struct nl_conn kept_conn = {.fd = -1, .seq = 0, .buf = NULL};

/* Runs one request through `visit` on this thread's kept socket, opening it when needed.
 * Returns 0 or an errno; *opened says whether the socket could be opened at all. */
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


/* ---------- the requests (sock_diag.h) ---------- */

int sock_diag_tcp_lookup(int family, const uint8_t *local, uint16_t local_port, const uint8_t *remote,
                         uint16_t remote_port, struct tcp_entry *out, bool *found, bool *opened) {
  size_t alen = family == AF_INET ? 4 : 16;
  struct tcp_request req;
  init_tcp_request(&req, family, 0);
  /* inet_diag: idiag_src/idiag_sport are the socket's own (local) end, idiag_dst the peer. */
  memcpy(req.r.id.idiag_src, local, alen);
  memcpy(req.r.id.idiag_dst, remote, alen);
  req.r.id.idiag_sport = htons(local_port);
  req.r.id.idiag_dport = htons(remote_port);
  struct lookup_ctx ctx;
  memset(&ctx, 0, sizeof ctx);
  int err = nl_once(&req.nlh, visit_lookup, &ctx, opened);
  *found = ctx.found != 0;
  if (*found) *out = ctx.entry;
  return err;
}

int sock_diag_tcp_dump(int family, struct tcp_entry **items, size_t *count, bool *opened) {
  struct tcp_request req;
  init_tcp_request(&req, family, 1);
  struct dump_ctx ctx = {0};
  int err = nl_once(&req.nlh, visit_dump, &ctx, opened);
  if (err != 0) {
    free(ctx.items);
    ctx.items = NULL;
    ctx.count = 0;
  }
  *items = ctx.items;
  *count = ctx.count;
  return err;
}

int sock_diag_unix_dump(struct unix_entry **items, size_t *count, bool *opened) {
  struct unix_request req;
  init_unix_request(&req, true, 0);
  struct unix_ctx ctx = {0};
  int err = nl_once(&req.nlh, visit_unix, &ctx, opened);
  if (err != 0) {
    free(ctx.items);
    ctx.items = NULL;
    ctx.count = 0;
  }
  *items = ctx.items;
  *count = ctx.count;
  return err;
}

int sock_diag_unix_lookup(uint32_t inode, struct unix_entry *out, bool *found, bool *opened) {
  struct unix_request req;
  init_unix_request(&req, false, inode);
  struct unix_ctx ctx = {0};
  int err = nl_once(&req.nlh, visit_unix, &ctx, opened);
  *found = err == 0 && ctx.count > 0;
  if (*found) *out = ctx.items[0];
  free(ctx.items);
  return err;
}

void sock_diag_close_thread_socket(void) { nl_close(&kept_conn); }
