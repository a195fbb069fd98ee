/*
 * The ID load generator in C (issue 6, item 1): closed loop, CONCURRENCY connections at a
 * time, one new TCP connection per query as real IDENT clients do (connect, write the line,
 * read one reply line, close), for DURATION_MS after WARMUP uncounted queries. Written in C
 * so that on a small machine the client costs far less CPU per query than either daemon it
 * measures: the Node client (lib/load-client.ts) costs about as much as a daemon, and on two
 * CPUs it then caps both daemons' rates alike. Benchmark-only.
 *
 * Usage: idload HOST PORT LOCAL_ADDRESS LINE EXPECT_ERE CONCURRENCY DURATION_MS WARMUP
 * (IPv4 only; EXPECT_ERE is a POSIX extended regular expression a good reply line matches.)
 * Prints one JSON line: {"ok","failed","elapsedMs","latenciesMs":[...],"failures":[...]}.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONCURRENCY 256
#define TIMEOUT_MS 10000.0
#define MAX_FAILURE_KINDS 5

struct query {
  int fd; /* -1 when the slot is free */
  double started_ms;
  int sent; /* the line was written; waiting for the reply */
  size_t len;
  char buf[512];
};

static struct sockaddr_in server, local;
static const char *line;
static regex_t expect;
static double *latencies;
static size_t nlat, caplat;
static long failed;
static char failures[MAX_FAILURE_KINDS][160];
static int nfailures;

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* Remembers up to MAX_FAILURE_KINDS distinct failure descriptions (printable ASCII only). */
static void fail(const char *what) {
  failed++;
  char clean[160];
  size_t i = 0;
  for (; what[i] != '\0' && i + 1 < sizeof clean; i++) clean[i] = (what[i] >= ' ' && what[i] < 127 && what[i] != '"' && what[i] != '\\') ? what[i] : '?';
  clean[i] = '\0';
  for (int k = 0; k < nfailures; k++)
    if (strcmp(failures[k], clean) == 0) return;
  if (nfailures < MAX_FAILURE_KINDS) strcpy(failures[nfailures++], clean);
}

static void record(double ms) {
  if (nlat == caplat) {
    caplat = caplat == 0 ? 4096 : caplat * 2;
    latencies = realloc(latencies, caplat * sizeof *latencies);
    if (latencies == NULL) {
      perror("realloc");
      exit(2);
    }
  }
  latencies[nlat++] = ms;
}

/* Opens a connection for slot `q` and registers it for writability. Returns 0 or -1 (counted as a failure). */
static int start(int ep, struct query *q) {
  q->len = 0;
  q->sent = 0;
  q->started_ms = now_ms();
  q->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (q->fd < 0) {
    fail(strerrorname_np(errno));
    return -1;
  }
  int one = 1;
  setsockopt(q->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (bind(q->fd, (struct sockaddr *)&local, sizeof local) != 0 ||
      (connect(q->fd, (struct sockaddr *)&server, sizeof server) != 0 && errno != EINPROGRESS)) {
    fail(strerrorname_np(errno));
    close(q->fd);
    q->fd = -1;
    return -1;
  }
  struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = q};
  epoll_ctl(ep, EPOLL_CTL_ADD, q->fd, &ev);
  return 0;
}

static void finish(struct query *q) {
  close(q->fd); /* also removes it from the epoll set */
  q->fd = -1;
}

/* Handles readiness of `q`; returns 1 when its query is over (answered or failed). */
static int step(int ep, struct query *q, int counted) {
  if (!q->sent) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(q->fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err != 0) {
      if (counted) fail(strerrorname_np(err));
      return 1;
    }
    /* Connected: send the line (a few dozen bytes always fit an empty socket buffer). */
    char text[600];
    int n = snprintf(text, sizeof text, "%s\r\n", line);
    if (write(q->fd, text, (size_t)n) != n) {
      if (counted) fail("short write");
      return 1;
    }
    q->sent = 1;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = q};
    epoll_ctl(ep, EPOLL_CTL_MOD, q->fd, &ev);
    return 0;
  }
  ssize_t n = read(q->fd, q->buf + q->len, sizeof q->buf - 1 - q->len);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
  if (n <= 0) {
    if (counted) fail(n == 0 ? "closed without a reply" : strerrorname_np(errno));
    return 1;
  }
  q->len += (size_t)n;
  q->buf[q->len] = '\0';
  char *end = strchr(q->buf, '\n');
  if (end == NULL) {
    if (q->len + 1 >= sizeof q->buf) {
      if (counted) fail("reply line too long");
      return 1;
    }
    return 0;
  }
  *end = '\0';
  if (end > q->buf && end[-1] == '\r') end[-1] = '\0';
  double ms = now_ms() - q->started_ms;
  if (!counted) return 1;
  if (regexec(&expect, q->buf, 0, NULL, 0) == 0) {
    record(ms);
  } else {
    char what[200];
    snprintf(what, sizeof what, "unexpected reply %.150s", q->buf);
    fail(what);
  }
  return 1;
}

int main(int argc, char **argv) {
  if (argc != 9) {
    fprintf(stderr, "usage: idload HOST PORT LOCAL_ADDRESS LINE EXPECT_ERE CONCURRENCY DURATION_MS WARMUP\n");
    return 64;
  }
  server.sin_family = AF_INET;
  server.sin_port = htons((uint16_t)atoi(argv[2]));
  local.sin_family = AF_INET;
  if (inet_pton(AF_INET, argv[1], &server.sin_addr) != 1 || inet_pton(AF_INET, argv[3], &local.sin_addr) != 1) {
    fprintf(stderr, "idload: HOST and LOCAL_ADDRESS must be IPv4 addresses\n");
    return 64;
  }
  line = argv[4];
  if (regcomp(&expect, argv[5], REG_EXTENDED | REG_NOSUB) != 0) {
    fprintf(stderr, "idload: cannot compile %s\n", argv[5]);
    return 64;
  }
  int concurrency = atoi(argv[6]);
  double duration = atof(argv[7]);
  long warmup = atol(argv[8]);
  if (concurrency < 1 || concurrency > MAX_CONCURRENCY || duration <= 0 || warmup < 0) {
    fprintf(stderr, "idload: CONCURRENCY must be 1..%d, DURATION_MS positive, WARMUP not negative\n", MAX_CONCURRENCY);
    return 64;
  }
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) {
    perror("epoll_create1");
    return 2;
  }
  struct query queries[MAX_CONCURRENCY];
  for (int i = 0; i < concurrency; i++) queries[i].fd = -1;

  /* Warm-up: sequential, uncounted. */
  for (long i = 0; i < warmup; i++) {
    struct query *q = &queries[0];
    if (start(ep, q) != 0) continue;
    for (int done = 0; !done;) {
      struct epoll_event ev;
      if (epoll_wait(ep, &ev, 1, 1000) <= 0) break;
      done = step(ep, q, 0);
    }
    finish(q);
  }
  failed = 0;
  nfailures = 0;

  double started = now_ms();
  double deadline = started + duration;
  for (int i = 0; i < concurrency; i++) start(ep, &queries[i]);
  for (;;) {
    struct epoll_event events[MAX_CONCURRENCY];
    int n = epoll_wait(ep, events, MAX_CONCURRENCY, 100);
    if (n < 0 && errno != EINTR) {
      perror("epoll_wait");
      return 2;
    }
    double t = now_ms();
    int active = 0;
    for (int i = 0; i < n; i++) {
      struct query *q = events[i].data.ptr;
      if (q->fd >= 0 && step(ep, q, 1)) finish(q);
    }
    for (int i = 0; i < concurrency; i++) {
      struct query *q = &queries[i];
      if (q->fd >= 0 && t - q->started_ms > TIMEOUT_MS) {
        fail("timeout");
        finish(q);
      }
      if (q->fd < 0 && t < deadline) start(ep, q);
      if (q->fd >= 0) active++;
    }
    if (active == 0 && t >= deadline) break;
  }
  double elapsed = now_ms() - started;

  printf("{\"ok\":%zu,\"failed\":%ld,\"elapsedMs\":%.3f,\"latenciesMs\":[", nlat, failed, elapsed);
  for (size_t i = 0; i < nlat; i++) printf("%s%.4f", i == 0 ? "" : ",", latencies[i]);
  printf("],\"failures\":[");
  for (int k = 0; k < nfailures; k++) printf("%s\"%s\"", k == 0 ? "" : ",", failures[k]);
  printf("]}\n");
  return 0;
}
