/*
 * fd_scan: the one-pass scan of every process's socket and pipe descriptors under a proc root
 * (plain C; the N-API binding is fd_scan_napi.c, the interface fd_scan.h). Its per-process
 * reader, scan_pid, and its vectors are shared with the incremental index (fd_index.c).
 *
 * Why native: resolving an SV request indexes every socket and pipe descriptor on the host
 * (DESIGN.md, Host view). From JavaScript that is one readdir per process plus a readlink per
 * descriptor and an lstat per pipe, each a separate fs binding call with its own path string
 * and Stats object; here it is readlinkat/fstatat relative to one open directory, the same
 * system calls the kernel's own tools make.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fd_scan.h"

/* Link text long enough for "socket:[N]" and "pipe:[N]" with any 64-bit N. Longer links are
 * paths (or other anon inodes): readlinkat truncates them, which is harmless because a path is
 * recognised by its first byte and resolved by fstatat through the link, never by its text. */
#define LINK_BUF_SIZE 64


static bool bits_has(const struct fd_set_bits *b, long long fd) {
  size_t word = (size_t)fd / 64;
  return word < b->count && (b->words[word] >> (fd % 64) & 1) != 0;
}

int bits_add(struct fd_set_bits *b, int fd) {
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

void bits_remove(struct fd_set_bits *b, int fd) {
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

int i32_push(struct i32_vec *v, int32_t value) {
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
int append_entries(struct f64_vec *out, int32_t pid, const struct fd_entry *fds, size_t count) {
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
long long parse_decimal(const char *s, long long max) {
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


/*
 * Appends the socket and pipe descriptors of one process to `out`, in the order the kernel
 * lists them (ascending fd for procfs). On any outcome but PID_OK the caller rolls `out` back
 * to where it was, so a process is either complete or absent. Shared by the full scan
 * (scanFds) and the incremental index (fd_index.c), which passes `skip`: descriptors of
 * this very process that it knows are not sockets or pipes (its kept schedstat files, which
 * would otherwise make reading our own table cost a readlink each). `*seen` (when not NULL)
 * gets the number of descriptors read, of any kind: what reading the table cost.
 */
enum pid_outcome scan_pid(int proc_fd, const char *pid_name, int named_pipes, const struct fd_set_bits *skip,
                          struct fd_vec *out, uint32_t *seen) {
  char rel[32];
  int n = snprintf(rel, sizeof rel, "%s/fd", pid_name);
  if (n < 0 || (size_t)n >= sizeof rel) return PID_FAILED;
  int dfd = openat(proc_fd, rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) {
    int err = errno;
    return proc_is_gone(err) ? PID_GONE : proc_is_denied(err) ? PID_DENIED : PID_FAILED;
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
      if (err != 0) outcome = proc_is_gone(err) ? PID_GONE : proc_is_denied(err) ? PID_DENIED : PID_FAILED;
      break;
    }
    long long fd = parse_decimal(e->d_name, INT32_MAX);
    if (fd < 0) continue; /* "." and ".." */
    if (skip != NULL && bits_has(skip, fd)) continue;
    if (seen != NULL && *seen < UINT32_MAX) (*seen)++;
    ssize_t len = readlinkat(dfd, e->d_name, link, sizeof link - 1);
    if (len < 0) {
      int err = errno;
      if (proc_is_gone(err)) continue; /* closed between readdir and readlink */
      /* The kernel checks access per descriptor (ptrace_may_access), not on opendir. */
      outcome = proc_is_denied(err) ? PID_DENIED : PID_FAILED;
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
        if (proc_is_gone(err)) continue;
        outcome = proc_is_denied(err) ? PID_DENIED : PID_FAILED;
        break;
      }
      entry.end = end_of(st.st_mode);
    } else if (named_pipes && link[0] == '/') {
      /* stat() through the /proc link reaches the open file itself, even when its path was
       * renamed, deleted or lives in another mount namespace. It can block on a dead network
       * mount, which is why the caller can turn named pipes off. */
      if (fstatat(dfd, e->d_name, &st, 0) != 0) {
        int err = errno;
        if (proc_is_gone(err)) continue;
        outcome = proc_is_denied(err) ? PID_DENIED : PID_FAILED;
        break;
      }
      if (!S_ISFIFO(st.st_mode)) continue;
      entry.kind = FD_PIPE;
      entry.inode = (double)st.st_ino;
      if (fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        int err = errno;
        if (proc_is_gone(err)) continue;
        outcome = proc_is_denied(err) ? PID_DENIED : PID_FAILED;
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

void fd_scan_free(struct fd_scan *s) {
  free(s->pids.items);
  free(s->entries.items);
  free(s->denied.items);
  free(s->failed.items);
  memset(s, 0, sizeof *s);
}

/* Scans every process under `root`. Returns 0, or a positive errno when the root itself cannot
 * be listed or memory runs out; per-process failures are recorded in the scan instead. */
int run_fd_scan(const char *root, int named_pipes, struct fd_scan *s) {
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

