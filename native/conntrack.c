/*
 * conntrack: one connection-tracking entry by tuple over netlink NETLINK_NETFILTER (plain C;
 * the N-API binding is conntrack_napi.c, the interface conntrack.h).
 *
 * Why a GET and never a dump: IPCTNL_MSG_CT_GET without NLM_F_DUMP and with a tuple makes the
 * kernel look the flow up in its hash table (net/netfilter/nf_conntrack_netlink.c,
 * ctnetlink_get_conntrack -> nf_conntrack_find_get), so a lookup costs the same with 100 or
 * 100 000 tracked flows. oidentd, by contrast, reads the whole table as text on every query.
 * The message layout is linux/netfilter/nfnetlink.h (struct nfgenmsg) followed by the CTA_*
 * attributes of linux/netfilter/nfnetlink_conntrack.h; nfnetlink answers EPERM to a sender
 * without CAP_NET_ADMIN in the socket's network namespace (nfnetlink_rcv_msg).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <linux/netfilter/nf_conntrack_tcp.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netlink.h>

#include "conntrack.h"

/* A GET answer is one entry (well under 1 KiB) and an ack. */
#define CT_BUF_SIZE 8192
/* Guard only: the kernel answers a GET synchronously. */
#define CT_RECV_TIMEOUT_SEC 2

static uint32_t ct_seq = 1;

/* ---------- building the request ---------- */

struct ct_msg {
  unsigned char *buf;
  size_t len;
  size_t cap;
};

/* Appends one attribute; returns its offset (for nests) or SIZE_MAX when the buffer is full. */
static size_t put_attr(struct ct_msg *m, uint16_t type, const void *data, size_t len) {
  size_t total = NLA_ALIGN(NLA_HDRLEN + len);
  if (m->len + total > m->cap) return SIZE_MAX;
  struct nlattr *attr = (struct nlattr *)(m->buf + m->len);
  attr->nla_type = type;
  attr->nla_len = (uint16_t)(NLA_HDRLEN + len);
  if (len > 0) memcpy((unsigned char *)attr + NLA_HDRLEN, data, len);
  memset((unsigned char *)attr + NLA_HDRLEN + len, 0, total - NLA_HDRLEN - len);
  size_t at = m->len;
  m->len += total;
  return at;
}

static void end_nest(struct ct_msg *m, size_t at) {
  struct nlattr *attr = (struct nlattr *)(m->buf + at);
  attr->nla_len = (uint16_t)(m->len - at);
}

/* CTA_TUPLE_ORIG or CTA_TUPLE_REPLY: { CTA_TUPLE_IP {src, dst}, CTA_TUPLE_PROTO {tcp, ports} } */
static bool put_tuple(struct ct_msg *m, uint16_t type, int family, const struct ct_tuple *t) {
  size_t alen = family == AF_INET ? 4 : 16;
  uint16_t src_attr = family == AF_INET ? CTA_IP_V4_SRC : CTA_IP_V6_SRC;
  uint16_t dst_attr = family == AF_INET ? CTA_IP_V4_DST : CTA_IP_V6_DST;
  uint8_t proto = IPPROTO_TCP;
  uint16_t sport = htons(t->src_port), dport = htons(t->dst_port);
  size_t tuple = put_attr(m, type | NLA_F_NESTED, NULL, 0);
  size_t ip = put_attr(m, CTA_TUPLE_IP | NLA_F_NESTED, NULL, 0);
  if (tuple == SIZE_MAX || ip == SIZE_MAX) return false;
  if (put_attr(m, src_attr, t->src, alen) == SIZE_MAX || put_attr(m, dst_attr, t->dst, alen) == SIZE_MAX) return false;
  end_nest(m, ip);
  size_t pr = put_attr(m, CTA_TUPLE_PROTO | NLA_F_NESTED, NULL, 0);
  if (pr == SIZE_MAX || put_attr(m, CTA_PROTO_NUM, &proto, 1) == SIZE_MAX ||
      put_attr(m, CTA_PROTO_SRC_PORT, &sport, 2) == SIZE_MAX || put_attr(m, CTA_PROTO_DST_PORT, &dport, 2) == SIZE_MAX)
    return false;
  end_nest(m, pr);
  end_nest(m, tuple);
  return true;
}

/* ---------- parsing the answer ---------- */

/* Calls back for each attribute in [data, data + len). Attribute types lose NLA_F_* flags. */
#define FOR_ATTR(attr, data, len)                                                                       \
  for (const struct nlattr *attr = (const struct nlattr *)(data);                                      \
       (const unsigned char *)attr + NLA_HDRLEN <= (const unsigned char *)(data) + (len) &&             \
       attr->nla_len >= NLA_HDRLEN &&                                                                   \
       (const unsigned char *)attr + attr->nla_len <= (const unsigned char *)(data) + (len);            \
       attr = (const struct nlattr *)((const unsigned char *)attr + NLA_ALIGN(attr->nla_len)))

#define ATTR_TYPE(attr) ((attr)->nla_type & NLA_TYPE_MASK)
#define ATTR_DATA(attr) ((const unsigned char *)(attr) + NLA_HDRLEN)
#define ATTR_LEN(attr) ((size_t)(attr)->nla_len - NLA_HDRLEN)

static uint32_t read_be32(const struct nlattr *a) {
  uint32_t v = 0;
  if (ATTR_LEN(a) >= 4) memcpy(&v, ATTR_DATA(a), 4);
  return ntohl(v);
}

static uint16_t read_be16(const struct nlattr *a) {
  uint16_t v = 0;
  if (ATTR_LEN(a) >= 2) memcpy(&v, ATTR_DATA(a), 2);
  return ntohs(v);
}

static void parse_tuple(const struct nlattr *nest, struct ct_tuple *t, uint8_t *proto) {
  FOR_ATTR(a, ATTR_DATA(nest), ATTR_LEN(nest)) {
    if (ATTR_TYPE(a) == CTA_TUPLE_IP) {
      FOR_ATTR(ip, ATTR_DATA(a), ATTR_LEN(a)) {
        size_t n = ATTR_LEN(ip) > 16 ? 16 : ATTR_LEN(ip);
        uint16_t type = ATTR_TYPE(ip);
        if (type == CTA_IP_V4_SRC || type == CTA_IP_V6_SRC) memcpy(t->src, ATTR_DATA(ip), n);
        if (type == CTA_IP_V4_DST || type == CTA_IP_V6_DST) memcpy(t->dst, ATTR_DATA(ip), n);
      }
    } else if (ATTR_TYPE(a) == CTA_TUPLE_PROTO) {
      FOR_ATTR(p, ATTR_DATA(a), ATTR_LEN(a)) {
        if (ATTR_TYPE(p) == CTA_PROTO_SRC_PORT) t->src_port = read_be16(p);
        if (ATTR_TYPE(p) == CTA_PROTO_DST_PORT) t->dst_port = read_be16(p);
        if (ATTR_TYPE(p) == CTA_PROTO_NUM && ATTR_LEN(p) >= 1) *proto = *ATTR_DATA(p);
      }
    }
  }
}

/* Fills `out` from one IPCTNL_MSG_CT_NEW/DELETE message (the answer to a GET, or an event). */
static void parse_entry(const struct nlmsghdr *nlh, struct ct_entry *out) {
  memset(out, 0, sizeof *out);
  const struct nfgenmsg *nfg = NLMSG_DATA(nlh);
  out->family = nfg->nfgen_family;
  const unsigned char *attrs = (const unsigned char *)nfg + NLMSG_ALIGN(sizeof *nfg);
  size_t len = nlh->nlmsg_len - NLMSG_LENGTH(NLMSG_ALIGN(sizeof *nfg));
  FOR_ATTR(a, attrs, len) {
    switch (ATTR_TYPE(a)) {
    case CTA_TUPLE_ORIG: parse_tuple(a, &out->orig, &out->proto); break;
    case CTA_TUPLE_REPLY: parse_tuple(a, &out->reply, &out->proto); break;
    case CTA_STATUS: out->status = read_be32(a); break;
    case CTA_ID: out->id = read_be32(a); break;
    case CTA_TIMEOUT: out->timeout = read_be32(a); break;
    case CTA_ZONE: out->zone = read_be16(a); break;
    case CTA_PROTOINFO:
      FOR_ATTR(pi, ATTR_DATA(a), ATTR_LEN(a)) {
        if (ATTR_TYPE(pi) != CTA_PROTOINFO_TCP) continue;
        FOR_ATTR(tcp, ATTR_DATA(pi), ATTR_LEN(pi)) {
          if (ATTR_TYPE(tcp) == CTA_PROTOINFO_TCP_STATE && ATTR_LEN(tcp) >= 1) out->tcp_state = *ATTR_DATA(tcp);
        }
      }
      break;
    default: break;
    }
  }
}

/* ---------- the request ---------- */

int conntrack_lookup(int family, enum ct_direction direction, const struct ct_tuple *key, struct ct_entry *out,
                     bool *found, bool *opened) {
  *found = false;
  *opened = false;
  if (family != AF_INET && family != AF_INET6) return EAFNOSUPPORT;
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
  if (fd < 0) return errno != 0 ? errno : EIO;
  *opened = true;
  struct timeval timeout = {.tv_sec = CT_RECV_TIMEOUT_SEC, .tv_usec = 0};
  (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);

  unsigned char buf[CT_BUF_SIZE] __attribute__((aligned(NLMSG_ALIGNTO)));
  memset(buf, 0, NLMSG_SPACE(sizeof(struct nfgenmsg)));
  struct nlmsghdr *nlh = (struct nlmsghdr *)buf;
  /* No NLM_F_DUMP: with a tuple this is the single-entry GET the header comment describes. */
  nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET;
  nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
  uint32_t seq = __atomic_fetch_add(&ct_seq, 1, __ATOMIC_RELAXED);
  nlh->nlmsg_seq = seq;
  struct nfgenmsg *nfg = NLMSG_DATA(nlh);
  nfg->nfgen_family = (uint8_t)family;
  nfg->version = NFNETLINK_V0;
  nfg->res_id = htons(0);
  struct ct_msg m = {.buf = buf, .len = NLMSG_SPACE(sizeof(struct nfgenmsg)), .cap = sizeof buf};
  if (!put_tuple(&m, direction == CT_BY_ORIG ? CTA_TUPLE_ORIG : CTA_TUPLE_REPLY, family, key)) {
    close(fd);
    return EMSGSIZE;
  }
  nlh->nlmsg_len = (uint32_t)m.len;

  struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
  if (sendto(fd, buf, m.len, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0) {
    int err = errno != 0 ? errno : EIO;
    close(fd);
    return err;
  }
  int result = 0;
  bool done = false;
  while (!done) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      result = errno != 0 ? errno : EIO;
      break;
    }
    size_t left = (size_t)n;
    for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
      if (h->nlmsg_seq != seq) continue;
      if (h->nlmsg_type == NLMSG_ERROR) {
        const struct nlmsgerr *e = NLMSG_DATA(h);
        /* ENOENT: no such flow, which is an answer, not a failure. */
        result = e->error == 0 || e->error == -ENOENT ? 0 : -e->error;
        done = true;
        break;
      }
      if (h->nlmsg_type == NLMSG_DONE) {
        done = true;
        break;
      }
      if ((h->nlmsg_type >> 8) == NFNL_SUBSYS_CTNETLINK && h->nlmsg_len >= NLMSG_LENGTH(sizeof(struct nfgenmsg))) {
        parse_entry(h, out);
        *found = true;
      }
    }
  }
  close(fd);
  return result;
}

/* ---------- events ---------- */

struct ct_events {
  int fd;
  unsigned char *buf;
  /* Messages of the datagram read last and not handed out yet (a datagram may hold several). */
  size_t pending_len;
  size_t pending_at;
};

int conntrack_events_open(size_t buffer_bytes, struct ct_events **out, bool *opened) {
  *out = NULL;
  *opened = false;
  struct ct_events *ev = calloc(1, sizeof *ev);
  if (ev == NULL) return ENOMEM;
  ev->buf = malloc(CT_BUF_SIZE);
  if (ev->buf == NULL) {
    free(ev);
    return ENOMEM;
  }
  ev->fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_NETFILTER);
  if (ev->fd < 0) {
    int err = errno != 0 ? errno : EIO;
    free(ev->buf);
    free(ev);
    return err;
  }
  *opened = true;
  int size = buffer_bytes > (size_t)INT32_MAX ? INT32_MAX : (int)buffer_bytes;
  /* SO_RCVBUFFORCE passes net.core.rmem_max with CAP_NET_ADMIN, which --nat needs anyway. */
  if (setsockopt(ev->fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) != 0)
    (void)setsockopt(ev->fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  /* The legacy group bitmask: NF_NETLINK_CONNTRACK_NEW (1) | NF_NETLINK_CONNTRACK_DESTROY (4),
   * i.e. groups NFNLGRP_CONNTRACK_NEW and NFNLGRP_CONNTRACK_DESTROY. */
  struct sockaddr_nl local = {.nl_family = AF_NETLINK, .nl_groups = (1u << (NFNLGRP_CONNTRACK_NEW - 1)) | (1u << (NFNLGRP_CONNTRACK_DESTROY - 1))};
  if (bind(ev->fd, (struct sockaddr *)&local, sizeof local) != 0) {
    int err = errno != 0 ? errno : EIO;
    conntrack_events_close(ev);
    return err;
  }
  *out = ev;
  return 0;
}

int conntrack_events_read(struct ct_events *ev, struct ct_entry *items, uint8_t *kinds, size_t max, size_t *count,
                          bool *lost) {
  *count = 0;
  *lost = false;
  while (*count < max) {
    if (ev->pending_at >= ev->pending_len) {
      ssize_t n = recv(ev->fd, ev->buf, CT_BUF_SIZE, MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
        /* The kernel dropped events: say so and go on reading what follows. */
        if (errno == ENOBUFS) {
          *lost = true;
          continue;
        }
        return errno != 0 ? errno : EIO;
      }
      ev->pending_len = (size_t)n;
      ev->pending_at = 0;
    }
    size_t left = ev->pending_len - ev->pending_at;
    struct nlmsghdr *h = (struct nlmsghdr *)(ev->buf + ev->pending_at);
    if (!NLMSG_OK(h, left)) {
      ev->pending_at = ev->pending_len;
      continue;
    }
    ev->pending_at += NLMSG_ALIGN(h->nlmsg_len) < left ? NLMSG_ALIGN(h->nlmsg_len) : left;
    if ((h->nlmsg_type >> 8) != NFNL_SUBSYS_CTNETLINK || h->nlmsg_len < NLMSG_LENGTH(sizeof(struct nfgenmsg))) continue;
    uint8_t type = h->nlmsg_type & 0xff;
    if (type != IPCTNL_MSG_CT_NEW && type != IPCTNL_MSG_CT_DELETE) continue;
    struct ct_entry entry;
    parse_entry(h, &entry);
    /* TCP only: STOP asks about TCP connections. */
    if (entry.proto != IPPROTO_TCP) continue;
    items[*count] = entry;
    kinds[*count] = type == IPCTNL_MSG_CT_NEW ? 1 : 2;
    (*count)++;
  }
  return 0;
}

void conntrack_events_close(struct ct_events *ev) {
  if (ev == NULL) return;
  if (ev->fd >= 0) close(ev->fd);
  free(ev->buf);
  free(ev);
}
