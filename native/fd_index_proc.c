/*
 * fd_index_proc: the small /proc readers of the fd index (schedstat, stat, loadavg), plain
 * parsers with no index state.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "fd_index_parts.h"

int64_t monotonic_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Reads a small proc file relative to the root into `buf` (NUL-terminated). Returns its length
 * or a negative errno. One read is enough: procfs seq_files fill it in one go. */
ssize_t read_proc_file(int root_fd, const char *rel, char *buf, size_t size) {
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
int parse_schedstat(const char *s, uint64_t out[3]) {
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
int read_stats(int fd, uint64_t out[3]) {
  char buf[96];
  ssize_t n;
  do n = pread(fd, buf, sizeof buf - 1, 0);
  while (n < 0 && errno == EINTR);
  if (n < 0) return errno;
  buf[n] = 0;
  return parse_schedstat(buf, out) == 0 ? 0 : EINVAL;
}

/* State (field 3), flags (field 9) and num_threads (field 20) of /proc/PID/stat; -1 when
 * malformed. The comm (field 2) may hold spaces and parentheses, so fields are counted from
 * its last ')'. */
int parse_stat(const char *s, char *state, unsigned long *flags, long *threads) {
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
long long read_last_pid(int root_fd) {
  char buf[128];
  ssize_t n = read_proc_file(root_fd, "loadavg", buf, sizeof buf);
  if (n <= 0) return -1;
  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' ')) buf[--n] = 0;
  const char *last = strrchr(buf, ' ');
  return last == NULL ? -1 : parse_decimal(last + 1, INT32_MAX);
}
