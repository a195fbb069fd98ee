/*
 * Conntrack table helper for the NAT benchmark (bench/sections/conntrack.ts), run inside a
 * network namespace of the bench's own (each namespace has its own conntrack table).
 *
 *   ctfill fill FROM TO            creates the flows FROM..TO-1 (below), printing
 *                                  {"created": N, "seconds": S}
 *   ctfill dump ROUNDS I1 [I2...]  the table-dump approach, as a C floor: for each key, ROUNDS
 *                                  times, dumps the whole table over netlink (IPCTNL_MSG_CT_GET
 *                                  with NLM_F_DUMP), parses every entry and keeps the one whose
 *                                  reply tuple is flow I's; prints {"us": [...], "entries": E,
 *                                  "found": F} (microseconds per lookup)
 *
 * Flow I, a masqueraded connection as a gateway would track it (documentation addresses only;
 * no packet is ever sent): original 198.51.100.10:P -> 203.0.113.H:443, reply
 * 203.0.113.H:443 -> 192.0.2.1:P, with P = 1024 + I % 60000 and H = 1 + I / 60000.
 *
 * Why batches: creating 100 000 entries one `conntrack -I` each would take minutes of exec;
 * here up to a few hundred IPCTNL_MSG_CT_NEW messages go in one sendmsg (the kernel's
 * netlink_rcv_skb handles each message of a datagram in turn) and their acks are read back
 * before the next batch, so any refusal is reported with its errno.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nf_conntrack_tcp.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netlink.h>

#define SEND_BUF (64 * 1024)
#define RECV_BUF (256 * 1024)

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct flow {
  uint32_t osrc, odst, rsrc, rdst; /* network order */
  uint16_t oport_src, oport_dst, rport_src, rport_dst; /* host order */
};

static struct flow flow_of(long i) {
  struct flow f;
  uint16_t p = (uint16_t)(1024 + i % 60000);
  uint32_t h = (uint32_t)(1 + i / 60000);
  f.osrc = htonl(0xC6336400u | 10);  /* 198.51.100.10 */
  f.odst = htonl(0xCB007100u | h);   /* 203.0.113.H */
  f.rsrc = f.odst;
  f.rdst = htonl(0xC0000201u);       /* 192.0.2.1 */
  f.oport_src = p;
  f.oport_dst = 443;
  f.rport_src = 443;
  f.rport_dst = p;
  return f;
}

/* ---------- building messages ---------- */

static unsigned char *put(unsigned char *at, uint16_t type, const void *data, size_t len) {
  struct nlattr *a = (struct nlattr *)at;
  a->nla_type = type;
  a->nla_len = (uint16_t)(NLA_HDRLEN + len);
  if (len > 0) memcpy(at + NLA_HDRLEN, data, len);
  size_t total = NLA_ALIGN(NLA_HDRLEN + len);
  memset(at + NLA_HDRLEN + len, 0, total - NLA_HDRLEN - len);
  return at + total;
}

static void close_nest(unsigned char *nest, unsigned char *end) { ((struct nlattr *)nest)->nla_len = (uint16_t)(end - nest); }

static unsigned char *put_tuple(unsigned char *at, uint16_t type, uint32_t src, uint32_t dst, uint16_t sport, uint16_t dport) {
  unsigned char *tuple = at, *p = put(at, type | NLA_F_NESTED, NULL, 0);
  unsigned char *ip = p;
  p = put(p, CTA_TUPLE_IP | NLA_F_NESTED, NULL, 0);
  p = put(p, CTA_IP_V4_SRC, &src, 4);
  p = put(p, CTA_IP_V4_DST, &dst, 4);
  close_nest(ip, p);
  unsigned char *proto = p;
  uint8_t tcp = IPPROTO_TCP;
  uint16_t s = htons(sport), d = htons(dport);
  p = put(p, CTA_TUPLE_PROTO | NLA_F_NESTED, NULL, 0);
  p = put(p, CTA_PROTO_NUM, &tcp, 1);
  p = put(p, CTA_PROTO_SRC_PORT, &s, 2);
  p = put(p, CTA_PROTO_DST_PORT, &d, 2);
  close_nest(proto, p);
  close_nest(tuple, p);
  return p;
}

static unsigned char *put_header(unsigned char *at, uint16_t msg, uint16_t flags, uint32_t seq) {
  struct nlmsghdr *h = (struct nlmsghdr *)at;
  memset(h, 0, NLMSG_SPACE(sizeof(struct nfgenmsg)));
  h->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | msg;
  h->nlmsg_flags = flags;
  h->nlmsg_seq = seq;
  struct nfgenmsg *g = NLMSG_DATA(h);
  g->nfgen_family = AF_INET;
  g->version = NFNETLINK_V0;
  return at + NLMSG_SPACE(sizeof(struct nfgenmsg));
}

/* One IPCTNL_MSG_CT_NEW for flow i at `at`; returns its length. */
static size_t build_new(unsigned char *at, long i, uint32_t seq) {
  struct flow f = flow_of(i);
  unsigned char *p = put_header(at, IPCTNL_MSG_CT_NEW, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK, seq);
  p = put_tuple(p, CTA_TUPLE_ORIG, f.osrc, f.odst, f.oport_src, f.oport_dst);
  p = put_tuple(p, CTA_TUPLE_REPLY, f.rsrc, f.rdst, f.rport_src, f.rport_dst);
  uint32_t timeout = htonl(3600);
  p = put(p, CTA_TIMEOUT, &timeout, 4);
  unsigned char *info = p;
  p = put(p, CTA_PROTOINFO | NLA_F_NESTED, NULL, 0);
  unsigned char *tcp = p;
  uint8_t state = TCP_CONNTRACK_ESTABLISHED;
  p = put(p, CTA_PROTOINFO_TCP | NLA_F_NESTED, NULL, 0);
  p = put(p, CTA_PROTOINFO_TCP_STATE, &state, 1);
  close_nest(tcp, p);
  close_nest(info, p);
  size_t len = (size_t)(p - at);
  ((struct nlmsghdr *)at)->nlmsg_len = (uint32_t)len;
  return NLMSG_ALIGN(len);
}

static int open_socket(void) {
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
  if (fd < 0) {
    perror("ctfill: socket(NETLINK_NETFILTER)");
    exit(1);
  }
  int size = RECV_BUF;
  (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  return fd;
}

static int fill(long from, long to) {
  int fd = open_socket();
  static unsigned char out[SEND_BUF] __attribute__((aligned(NLMSG_ALIGNTO)));
  static unsigned char in[RECV_BUF] __attribute__((aligned(NLMSG_ALIGNTO)));
  struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
  double start = now_s();
  uint32_t seq = 1;
  long i = from;
  while (i < to) {
    size_t len = 0;
    long batch = 0;
    /* A message is ~ 120 bytes: leave room for a whole one before the end of the buffer. */
    while (i < to && len + 256 < sizeof out) {
      len += build_new(out + len, i++, seq++);
      batch++;
    }
    if (sendto(fd, out, len, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0) {
      perror("ctfill: sendto");
      return 1;
    }
    long acked = 0;
    while (acked < batch) {
      ssize_t n = recv(fd, in, sizeof in, 0);
      if (n < 0) {
        if (errno == EINTR) continue;
        perror("ctfill: recv");
        return 1;
      }
      size_t left = (size_t)n;
      for (struct nlmsghdr *h = (struct nlmsghdr *)in; NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
        if (h->nlmsg_type != NLMSG_ERROR) continue;
        const struct nlmsgerr *e = NLMSG_DATA(h);
        if (e->error != 0) {
          fprintf(stderr, "ctfill: creating flow %ld: %s\n", from + (long)(h->nlmsg_seq - 1), strerror(-e->error));
          return 1;
        }
        acked++;
      }
    }
  }
  printf("{\"created\": %ld, \"seconds\": %.6f}\n", to - from, now_s() - start);
  return 0;
}

/* ---------- the dump floor ---------- */

/* Whether the CTA_TUPLE_REPLY nest `nest` is flow f's reply tuple. */
static int reply_matches(const struct nlattr *nest, const struct flow *f) {
  uint32_t src = 0, dst = 0;
  uint16_t sport = 0, dport = 0;
  const unsigned char *data = (const unsigned char *)nest + NLA_HDRLEN;
  size_t len = nest->nla_len - NLA_HDRLEN;
  for (const struct nlattr *a = (const void *)data; (const unsigned char *)a + NLA_HDRLEN <= data + len && a->nla_len >= NLA_HDRLEN;
       a = (const void *)((const unsigned char *)a + NLA_ALIGN(a->nla_len))) {
    const unsigned char *ad = (const unsigned char *)a + NLA_HDRLEN;
    size_t al = a->nla_len - NLA_HDRLEN;
    for (const struct nlattr *b = (const void *)ad; (const unsigned char *)b + NLA_HDRLEN <= ad + al && b->nla_len >= NLA_HDRLEN;
         b = (const void *)((const unsigned char *)b + NLA_ALIGN(b->nla_len))) {
      const unsigned char *bd = (const unsigned char *)b + NLA_HDRLEN;
      int type = b->nla_type & NLA_TYPE_MASK;
      if ((a->nla_type & NLA_TYPE_MASK) == CTA_TUPLE_IP) {
        if (type == CTA_IP_V4_SRC) memcpy(&src, bd, 4);
        if (type == CTA_IP_V4_DST) memcpy(&dst, bd, 4);
      } else if ((a->nla_type & NLA_TYPE_MASK) == CTA_TUPLE_PROTO) {
        if (type == CTA_PROTO_SRC_PORT) memcpy(&sport, bd, 2);
        if (type == CTA_PROTO_DST_PORT) memcpy(&dport, bd, 2);
      }
    }
  }
  return src == f->rsrc && dst == f->rdst && ntohs(sport) == f->rport_src && ntohs(dport) == f->rport_dst;
}

/* One lookup the dump way; returns the entries seen, sets *found. */
static long dump_lookup(int fd, const struct flow *f, int *found) {
  static unsigned char buf[RECV_BUF] __attribute__((aligned(NLMSG_ALIGNTO)));
  static uint32_t seq = 1;
  unsigned char req[64] __attribute__((aligned(NLMSG_ALIGNTO)));
  unsigned char *end = put_header(req, IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP, ++seq);
  ((struct nlmsghdr *)req)->nlmsg_len = (uint32_t)(end - req);
  struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
  if (sendto(fd, req, (size_t)(end - req), 0, (struct sockaddr *)&kernel, sizeof kernel) < 0) {
    perror("ctfill: sendto dump");
    exit(1);
  }
  long entries = 0;
  *found = 0;
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      perror("ctfill: recv dump");
      exit(1);
    }
    size_t left = (size_t)n;
    for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
      if (h->nlmsg_type == NLMSG_DONE) return entries;
      if (h->nlmsg_type == NLMSG_ERROR) {
        fprintf(stderr, "ctfill: dump failed: %s\n", strerror(-((const struct nlmsgerr *)NLMSG_DATA(h))->error));
        exit(1);
      }
      entries++;
      const unsigned char *attrs = (const unsigned char *)NLMSG_DATA(h) + NLMSG_ALIGN(sizeof(struct nfgenmsg));
      size_t len = h->nlmsg_len - NLMSG_LENGTH(NLMSG_ALIGN(sizeof(struct nfgenmsg)));
      for (const struct nlattr *a = (const void *)attrs; (const unsigned char *)a + NLA_HDRLEN <= attrs + len && a->nla_len >= NLA_HDRLEN;
           a = (const void *)((const unsigned char *)a + NLA_ALIGN(a->nla_len))) {
        /* Every entry is parsed to the end, as a dumper that reads the table must. */
        if ((a->nla_type & NLA_TYPE_MASK) == CTA_TUPLE_REPLY && reply_matches(a, f)) *found = 1;
      }
    }
  }
}

static int dump(int rounds, int nkeys, char **keys) {
  int fd = open_socket();
  long entries = 0, found = 0;
  printf("{\"us\": [");
  for (int r = 0; r < rounds; r++) {
    for (int k = 0; k < nkeys; k++) {
      struct flow f = flow_of(atol(keys[k]));
      int hit = 0;
      double t = now_s();
      entries = dump_lookup(fd, &f, &hit);
      double us = (now_s() - t) * 1e6;
      found += hit;
      printf("%s%.3f", r == 0 && k == 0 ? "" : ", ", us);
    }
  }
  printf("], \"entries\": %ld, \"found\": %ld}\n", entries, found);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 4 && strcmp(argv[1], "fill") == 0) return fill(atol(argv[2]), atol(argv[3]));
  if (argc >= 4 && strcmp(argv[1], "dump") == 0) return dump(atoi(argv[2]), argc - 3, argv + 3);
  fprintf(stderr, "usage: ctfill fill FROM TO | ctfill dump ROUNDS INDEX...\n");
  return 2;
}
