/*
 * The floor (issue 6, item 5): the process/IPC question of an SV request answered by plain C,
 * the way stopd answers it, with nothing else around it. Benchmark-only; never shipped.
 *
 * Per iteration, like stopd's host view (src/host/linux-*.ts) and closure (src/trace/closure.ts):
 *  1. exact netlink SOCK_DIAG lookup of the queried 4-tuple (inode, uid);
 *  2. one scan of every /proc/PID/fd, indexing socket and pipe inodes (the holder index);
 *  3. the closure: holders of the queried socket, their ancestors (paper 3.3, "primary"),
 *     then every process sharing a pipe, a UNIX socket pair or a host-local TCP connection
 *     with a closure member, and their ancestors ("resolved"); /proc/PID/stat, status and
 *     cmdline of each member are read (paper Table II).
 * No socket table is dumped. Each socket descriptor of a member (other than the queried one,
 * once per inode) is looked up on its own: pidfd_open(pid) once per member, pidfd_getfd(fd),
 * fstat of the duplicate (its inode must still be the one the fd link showed), getsockopt
 * SO_DOMAIN and SO_PROTOCOL; a TCP socket gives getsockname, getpeername and TCP_INFO's
 * state, and the other end of a host-local connection is an exact SOCK_DIAG lookup of the
 * reversed 4-tuple; a UNIX socket gives its peer inode and bound name by an exact UNIX_DIAG
 * lookup of its inode. The "lookup" time is the sum of those per-descriptor steps.
 * It skips what stopd does beyond that question: FIFO stat()s, re-validating remembered
 * descriptors, pipe-end modes, utmp, host facts, building and hashing the record, writing it.
 *
 * Usage: floor LOCAL_IPV4 LOCAL_PORT REMOTE_IPV4 REMOTE_PORT ITERATIONS
 * Prints one JSON line: per-iteration times in microseconds and what the closure held.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../../native/compat.h" /* pidfd_open, pidfd_getfd on older headers */

#define TCP_LISTEN_STATE 10
#define TCP_CLOSE_STATE 7

struct fdent { uint64_t inode; int pid; int fd; char kind; };
struct procent { int pid; size_t start; size_t count; };
/* An exact SOCK_DIAG answer: inode 0 when nothing matched. */
struct tcpent { uint64_t inode; int family; uint8_t state; uint32_t uid; };
/* What one socket descriptor is, read from a duplicate of it (and, for UNIX, UNIX_DIAG). */
struct sockinfo {
  int domain, protocol;
  uint32_t uid;
  uint8_t state;                 /* TCP: tcpi_state */
  uint8_t local[16], remote[16]; /* TCP: remote all zero when not connected */
  uint16_t lport, rport;
  uint64_t peer;                 /* UNIX: the peer's inode, 0 when none */
  char name[sizeof ((struct sockaddr_un *)0)->sun_path + 1]; /* UNIX: bound name, "" when none */
};

static struct fdent *fds; static size_t nfds, capfds;
static struct fdent *byinode;
static struct procent *procs; static size_t nprocs, capprocs;
static int nl = -1;
static double lookup_us; /* time spent in per-descriptor socket lookups this iteration */
static size_t socket_lookups, tcp_lookups, unix_lookups; /* counts, this iteration */
static uint8_t local_addrs[64][16]; static int local_families[64]; static int nlocal;

static void *grow(void *p, size_t *cap, size_t need, size_t size) {
  if (need <= *cap) return p;
  size_t next = *cap ? *cap * 2 : 1024;
  while (next < need) next *= 2;
  p = realloc(p, next * size);
  if (p == NULL) { perror("realloc"); exit(2); }
  *cap = next;
  return p;
}

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* ---- netlink sock_diag: exact lookups only ---- */

typedef void (*nl_visit)(struct nlmsghdr *h, void *ctx);

/* Sends one exact SOCK_DIAG request (no NLM_F_DUMP) and visits its answer, if any. */
static void nl_exact(void *req, size_t len, nl_visit visit, void *ctx) {
  struct { struct nlmsghdr h; uint8_t body[128]; } msg;
  memset(&msg, 0, sizeof msg);
  msg.h.nlmsg_len = NLMSG_LENGTH(len);
  msg.h.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  msg.h.nlmsg_flags = NLM_F_REQUEST;
  memcpy(msg.body, req, len);
  struct sockaddr_nl to = { .nl_family = AF_NETLINK };
  if (sendto(nl, &msg, msg.h.nlmsg_len, 0, (struct sockaddr *)&to, sizeof to) < 0) return;
  static uint8_t buf[8192];
  ssize_t n;
  do n = recv(nl, buf, sizeof buf, 0); while (n < 0 && errno == EINTR);
  struct nlmsghdr *h = (struct nlmsghdr *)buf;
  if (n > 0 && NLMSG_OK(h, (size_t)n) && h->nlmsg_type == SOCK_DIAG_BY_FAMILY) visit(h, ctx);
}

static void visit_tcp(struct nlmsghdr *h, void *ctx) {
  struct inet_diag_msg *m = NLMSG_DATA(h);
  struct tcpent *out = ctx;
  out->inode = m->idiag_inode; out->uid = m->idiag_uid; out->state = m->idiag_state;
  out->family = m->idiag_family;
}

/* Exact lookup of one 4-tuple (the kernel's hash, constant time); inode 0 when absent. */
static struct tcpent tcp_exact(int family, const uint8_t *src, uint16_t sport, const uint8_t *dst, uint16_t dport) {
  struct inet_diag_req_v2 req;
  memset(&req, 0, sizeof req);
  req.sdiag_family = family; req.sdiag_protocol = IPPROTO_TCP; req.idiag_states = ~0u;
  req.id.idiag_sport = htons(sport); req.id.idiag_dport = htons(dport);
  memcpy(req.id.idiag_src, src, family == AF_INET ? 4 : 16);
  memcpy(req.id.idiag_dst, dst, family == AF_INET ? 4 : 16);
  req.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE; req.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
  struct tcpent found; memset(&found, 0, sizeof found);
  nl_exact(&req, sizeof req, visit_tcp, &found);
  return found;
}

struct unix_answer { struct sockinfo *s; int found; };

static void visit_unix(struct nlmsghdr *h, void *ctx) {
  struct unix_diag_msg *m = NLMSG_DATA(h);
  struct unix_answer *answer = ctx;
  struct sockinfo *s = answer->s;
  answer->found = 1;
  int len = h->nlmsg_len - NLMSG_LENGTH(sizeof *m);
  for (struct rtattr *a = (struct rtattr *)(m + 1); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
    if (a->rta_type == UNIX_DIAG_PEER) s->peer = *(uint32_t *)RTA_DATA(a);
    if (a->rta_type == UNIX_DIAG_NAME) {
      size_t n = RTA_PAYLOAD(a) < sizeof s->name - 1 ? RTA_PAYLOAD(a) : sizeof s->name - 1;
      memcpy(s->name, RTA_DATA(a), n); s->name[n] = '\0';
    }
  }
}

/* Exact UNIX_DIAG lookup of one inode: fills s->peer and s->name; -1 when the kernel has none. */
static int unix_exact(uint64_t inode, struct sockinfo *s) {
  struct unix_diag_req req;
  memset(&req, 0, sizeof req);
  req.sdiag_family = AF_UNIX; req.udiag_states = ~0u; req.udiag_ino = (uint32_t)inode;
  req.udiag_show = UDIAG_SHOW_NAME | UDIAG_SHOW_PEER;
  req.udiag_cookie[0] = INET_DIAG_NOCOOKIE; req.udiag_cookie[1] = INET_DIAG_NOCOOKIE;
  struct unix_answer answer = { .s = s, .found = 0 };
  s->peer = 0; s->name[0] = '\0';
  unix_lookups++;
  nl_exact(&req, sizeof req, visit_unix, &answer);
  return answer.found ? 0 : -1;
}

/* ---- one socket descriptor, through a duplicate of it ---- */

static void copy_address(const struct sockaddr_storage *a, uint8_t *addr, uint16_t *port) {
  memset(addr, 0, 16); *port = 0;
  if (a->ss_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)a;
    memcpy(addr, &in->sin_addr, 4); *port = ntohs(in->sin_port);
  } else if (a->ss_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)a;
    memcpy(addr, &in6->sin6_addr, 16); *port = ntohs(in6->sin6_port);
  }
}

/* Reads what a TCP socket is from the duplicate `sock`; -1 when it cannot be read. */
static int inspect_tcp(int sock, struct sockinfo *s) {
  struct sockaddr_storage a;
  socklen_t len = sizeof a;
  if (getsockname(sock, (struct sockaddr *)&a, &len) != 0) return -1;
  copy_address(&a, s->local, &s->lport);
  len = sizeof a;
  if (getpeername(sock, (struct sockaddr *)&a, &len) == 0) copy_address(&a, s->remote, &s->rport);
  else if (errno == ENOTCONN) { memset(s->remote, 0, sizeof s->remote); s->rport = 0; }
  else return -1;
  struct tcp_info info;
  len = sizeof info;
  if (getsockopt(sock, IPPROTO_TCP, TCP_INFO, &info, &len) != 0) return -1;
  s->state = info.tcpi_state;
  tcp_lookups++;
  return 0;
}

/*
 * Looks up descriptor `fd` of the process behind `pidfd`, which the fd scan saw as socket
 * `inode`: -1 when it is gone, was reused for another file, or cannot be read.
 */
static int inspect_socket(int pidfd, int fd, uint64_t inode, struct sockinfo *s) {
  memset(s, 0, sizeof *s);
  int sock = (int)syscall(SYS_pidfd_getfd, pidfd, fd, 0);
  if (sock < 0) return -1;
  socket_lookups++;
  int result = -1;
  struct stat st;
  socklen_t len = sizeof s->domain;
  if (fstat(sock, &st) != 0 || (uint64_t)st.st_ino != inode) goto done;
  s->uid = st.st_uid;
  if (getsockopt(sock, SOL_SOCKET, SO_DOMAIN, &s->domain, &len) != 0) goto done;
  len = sizeof s->protocol;
  if (getsockopt(sock, SOL_SOCKET, SO_PROTOCOL, &s->protocol, &len) != 0) goto done;
  if ((s->domain == AF_INET || s->domain == AF_INET6) && s->protocol == IPPROTO_TCP) result = inspect_tcp(sock, s);
  else result = 0;
done:
  close(sock);
  if (result == 0 && s->domain == AF_UNIX) result = unix_exact(inode, s);
  return result;
}

static int is_local(int family, const uint8_t *addr) {
  if (family == AF_INET && addr[0] == 127) return 1;
  static const uint8_t loop6[16] = { [15] = 1 };
  if (family == AF_INET6 && memcmp(addr, loop6, 16) == 0) return 1;
  for (int i = 0; i < nlocal; i++) {
    if (local_families[i] == family && memcmp(local_addrs[i], addr, family == AF_INET ? 4 : 16) == 0) return 1;
  }
  return 0;
}

static void load_local_addresses(void) {
  struct ifaddrs *list;
  if (getifaddrs(&list) != 0) return;
  for (struct ifaddrs *i = list; i != NULL && nlocal < 64; i = i->ifa_next) {
    if (i->ifa_addr == NULL) continue;
    if (i->ifa_addr->sa_family == AF_INET) {
      memcpy(local_addrs[nlocal], &((struct sockaddr_in *)i->ifa_addr)->sin_addr, 4);
      local_families[nlocal++] = AF_INET;
    } else if (i->ifa_addr->sa_family == AF_INET6) {
      memcpy(local_addrs[nlocal], &((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr, 16);
      local_families[nlocal++] = AF_INET6;
    }
  }
  freeifaddrs(list);
}

/* ---- /proc ---- */

static int all_digits(const char *s) {
  if (*s == '\0') return 0;
  for (; *s; s++) if (*s < '0' || *s > '9') return 0;
  return 1;
}

/* One pass over every /proc/PID/fd: the holder index of socket and pipe inodes. */
static void scan_fds(size_t *links_read) {
  nfds = 0; nprocs = 0;
  DIR *proc = opendir("/proc");
  if (proc == NULL) { perror("/proc"); exit(2); }
  struct dirent *d;
  char path[64], link[64];
  while ((d = readdir(proc)) != NULL) {
    if (!all_digits(d->d_name)) continue;
    int pid = atoi(d->d_name);
    snprintf(path, sizeof path, "/proc/%d/fd", pid);
    int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) continue;
    DIR *fdir = fdopendir(dfd);
    if (fdir == NULL) { close(dfd); continue; }
    procs = grow(procs, &capprocs, nprocs + 1, sizeof *procs);
    struct procent *p = &procs[nprocs++];
    p->pid = pid; p->start = nfds; p->count = 0;
    struct dirent *f;
    while ((f = readdir(fdir)) != NULL) {
      if (f->d_name[0] == '.') continue;
      ssize_t n = readlinkat(dfd, f->d_name, link, sizeof link - 1);
      (*links_read)++;
      if (n <= 0) continue;
      link[n] = '\0';
      char kind;
      const char *num;
      if (strncmp(link, "socket:[", 8) == 0) { kind = 's'; num = link + 8; }
      else if (strncmp(link, "pipe:[", 6) == 0) { kind = 'p'; num = link + 6; }
      else continue;
      fds = grow(fds, &capfds, nfds + 1, sizeof *fds);
      fds[nfds].inode = strtoull(num, NULL, 10); fds[nfds].pid = pid; fds[nfds].fd = atoi(f->d_name); fds[nfds].kind = kind;
      nfds++; p->count++;
    }
    closedir(fdir);
  }
  closedir(proc);
}

static int by_inode(const void *a, const void *b) {
  uint64_t x = ((const struct fdent *)a)->inode, y = ((const struct fdent *)b)->inode;
  return x < y ? -1 : x > y;
}

static int by_pid(const void *a, const void *b) {
  return ((const struct procent *)a)->pid - ((const struct procent *)b)->pid;
}

static void build_index(void) {
  static size_t cap;
  byinode = grow(byinode, &cap, nfds, sizeof *byinode);
  memcpy(byinode, fds, nfds * sizeof *fds);
  qsort(byinode, nfds, sizeof *byinode, by_inode);
  qsort(procs, nprocs, sizeof *procs, by_pid);
}

/* The range of index entries holding `inode`. */
static struct fdent *holders(uint64_t inode, size_t *count) {
  size_t lo = 0, hi = nfds;
  while (lo < hi) { size_t mid = (lo + hi) / 2; if (byinode[mid].inode < inode) lo = mid + 1; else hi = mid; }
  size_t end = lo;
  while (end < nfds && byinode[end].inode == inode) end++;
  *count = end - lo;
  return byinode + lo;
}

static struct procent *proc_of(int pid) {
  struct procent key = { .pid = pid };
  return bsearch(&key, procs, nprocs, sizeof *procs, by_pid);
}

/* ---- the closure ---- */

#define MAXCLOSURE 4096
static int members[MAXCLOSURE]; static int nmembers;
static int queue[MAXCLOSURE]; static int qhead, qtail;
static uint64_t claimed[MAXCLOSURE]; static int nclaimed;
static int upstream;

static int is_member(int pid) {
  for (int i = 0; i < nmembers; i++) if (members[i] == pid) return 1;
  return 0;
}

static int is_claimed(uint64_t inode) {
  for (int i = 0; i < nclaimed; i++) if (claimed[i] == inode) return 1;
  return 0;
}

/* Marks `inode` as followed; 0 when it already was. */
static int claim(uint64_t inode) {
  if (is_claimed(inode)) return 0;
  if (nclaimed < MAXCLOSURE) claimed[nclaimed++] = inode;
  return 1;
}

static char scratch[65536];

static int read_small(const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, scratch, sizeof scratch - 1);
  close(fd);
  if (n < 0) return -1;
  scratch[n] = '\0';
  return (int)n;
}

/* Reads what Table II keeps of a process; returns its ppid (0 when it has none or is gone). */
static int read_process(int pid) {
  char path[64];
  int ppid = 0;
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  if (read_small(path) > 0) {
    char *close_paren = strrchr(scratch, ')');
    if (close_paren != NULL) sscanf(close_paren + 2, "%*c %d", &ppid);
  }
  snprintf(path, sizeof path, "/proc/%d/status", pid);
  read_small(path);
  snprintf(path, sizeof path, "/proc/%d/cmdline", pid);
  read_small(path);
  return ppid;
}

/* Adds `pid` and its not yet known ancestors to the closure. */
static void add_with_ancestors(int pid) {
  while (pid > 0 && !is_member(pid) && nmembers < MAXCLOSURE) {
    members[nmembers++] = pid;
    queue[qtail++] = pid;
    pid = read_process(pid);
  }
}

static void add_holders(uint64_t inode) {
  size_t count;
  struct fdent *h = holders(inode, &count);
  for (size_t i = 0; i < count; i++) add_with_ancestors(h[i].pid);
}

/*
 * Looks up socket `f` of a member through `*pidfd` (-1 until opened on first use, -2 when the
 * process is gone). Returns -1 when the descriptor could not be looked up; 0 when the socket
 * leads nowhere in the closure (a listener, neither TCP nor UNIX, a connection to another
 * host); 1 when the holders of `f` join the closure, and with them those of `*other`: the
 * inode on the far side (the peer of a UNIX socket, the other end of a host-local TCP
 * connection), 0 when there is none.
 */
static int look_up(struct fdent *f, int *pidfd, uint64_t *other) {
  struct sockinfo s;
  *other = 0;
  if (*pidfd == -1 && (*pidfd = (int)syscall(SYS_pidfd_open, f->pid, 0)) < 0) *pidfd = -2; /* gone */
  if (*pidfd < 0 || inspect_socket(*pidfd, f->fd, f->inode, &s) != 0) return -1;
  if (s.domain == AF_UNIX) { *other = s.peer; return 1; }
  if ((s.domain != AF_INET && s.domain != AF_INET6) || s.protocol != IPPROTO_TCP) return 0;
  if (s.state == TCP_LISTEN_STATE || s.state == TCP_CLOSE_STATE) return 0;
  if (!is_local(s.domain, s.remote)) { upstream++; return 0; }
  *other = tcp_exact(s.domain, s.remote, s.rport, s.local, s.lport).inode;
  return 1;
}

static void follow(int pid, uint64_t queried) {
  struct procent *p = proc_of(pid);
  if (p == NULL) return;
  int pidfd = -1;
  for (size_t i = p->start; i < p->start + p->count; i++) {
    struct fdent *f = &fds[i];
    if (f->inode == queried) continue; /* the queried connection leads to the requester */
    if (f->kind == 'p') {
      if (claim(f->inode)) add_holders(f->inode);
      continue;
    }
    if (is_claimed(f->inode)) continue; /* each socket inode is looked up once */
    uint64_t other;
    double start = now_us();
    int joins = look_up(f, &pidfd, &other);
    lookup_us += now_us() - start;
    if (joins < 0) continue; /* another holder may still tell */
    claim(f->inode);
    if (joins == 0) continue;
    add_holders(f->inode);
    if (other != 0 && claim(other)) add_holders(other);
  }
  if (pidfd >= 0) close(pidfd);
}

static int by_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: floor LOCAL_IPV4 LOCAL_PORT REMOTE_IPV4 REMOTE_PORT ITERATIONS\n");
    return 64;
  }
  uint8_t src[16] = {0}, dst[16] = {0};
  if (inet_pton(AF_INET, argv[1], src) != 1 || inet_pton(AF_INET, argv[3], dst) != 1) {
    fprintf(stderr, "floor: IPv4 addresses only\n");
    return 64;
  }
  uint16_t sport = (uint16_t)atoi(argv[2]), dport = (uint16_t)atoi(argv[4]);
  int iterations = atoi(argv[5]);
  if (iterations < 1) iterations = 1;
  nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (nl < 0) { perror("netlink"); return 2; }
  load_local_addresses();
  double *times = calloc(iterations, sizeof *times);
  double *scan_times = calloc(iterations, sizeof *times);
  double *lookup_times = calloc(iterations, sizeof *times);
  size_t links = 0;
  int processes = 0, ups = 0;
  size_t indexed = 0, scanned_procs = 0;
  for (int it = 0; it < iterations; it++) {
    double start = now_us();
    nmembers = 0; qhead = qtail = 0; nclaimed = 0; upstream = 0; links = 0;
    struct tcpent queried = tcp_exact(AF_INET, src, sport, dst, dport);
    if (queried.inode == 0) { fprintf(stderr, "floor: no such connection\n"); return 1; }
    double scan_start = now_us();
    scan_fds(&links);
    build_index();
    scan_times[it] = now_us() - scan_start;
    lookup_us = 0; socket_lookups = tcp_lookups = unix_lookups = 0;
    claim(queried.inode);
    add_holders(queried.inode);
    while (qhead < qtail) follow(queue[qhead++], queried.inode);
    times[it] = now_us() - start;
    lookup_times[it] = lookup_us;
    processes = nmembers; ups = upstream; indexed = nfds; scanned_procs = nprocs;
  }
  qsort(times, iterations, sizeof *times, by_double);
  qsort(scan_times, iterations, sizeof *times, by_double);
  qsort(lookup_times, iterations, sizeof *times, by_double);
  double sum = 0;
  for (int i = 0; i < iterations; i++) sum += times[i];
  printf("{\"iterations\":%d,\"medianUs\":%.1f,\"p90Us\":%.1f,\"minUs\":%.1f,\"meanUs\":%.1f,"
         "\"scanMedianUs\":%.1f,\"lookupMedianUs\":%.1f,\"socketLookups\":%zu,\"tcpLookups\":%zu,\"unixLookups\":%zu,\"processes\":%d,\"upstream\":%d,\"procsScanned\":%zu,\"fdLinksRead\":%zu,\"indexedFds\":%zu}\n",
         iterations, times[iterations / 2], times[(iterations * 9) / 10], times[0], sum / iterations,
         scan_times[iterations / 2], lookup_times[iterations / 2], socket_lookups, tcp_lookups, unix_lookups, processes, ups, scanned_procs, links, indexed);
  return 0;
}
