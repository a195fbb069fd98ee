/*
 * fd_scan: the socket and pipe descriptors of processes under a proc root (fd_scan.c); plain
 * C, no N-API. The vectors and scan_pid are shared with the incremental index (fd_index.h).
 */
#ifndef STOPD_FD_SCAN_H
#define STOPD_FD_SCAN_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

/* What happened to one process. */
enum pid_outcome { PID_OK, PID_GONE, PID_DENIED, PID_FAILED, PID_NOMEM };

struct fd_scan {
  struct i32_vec pids;
  struct f64_vec entries;
  struct i32_vec denied;
  struct i32_vec failed;
};

/* A process that went away (what /proc says of a vanished entry) and one we may not read. */
static inline bool proc_is_gone(int err) { return err == ENOENT || err == ESRCH; }
static inline bool proc_is_denied(int err) { return err == EACCES || err == EPERM; }

/* Adds or removes a descriptor number; bits_add returns 0 or ENOMEM. */
int bits_add(struct fd_set_bits *b, int fd);
void bits_remove(struct fd_set_bits *b, int fd);

/* Appends one value; returns 0 or ENOMEM. */
int i32_push(struct i32_vec *v, int32_t value);

/* Appends the descriptors of one process to `out` in the `entries` layout (ENTRY_WIDTH each).
 * Returns 0 or ENOMEM. */
int append_entries(struct f64_vec *out, int32_t pid, const struct fd_entry *fds, size_t count);

/* Parses a canonical decimal name (no sign, no leading zero) up to `max`; returns -1 otherwise. */
long long parse_decimal(const char *s, long long max);

/* Appends the socket and pipe descriptors of process `pid_name` (relative to `proc_fd`) to
 * `out`; see fd_scan.c for the outcomes, `skip` and `seen`. */
enum pid_outcome scan_pid(int proc_fd, const char *pid_name, int named_pipes, const struct fd_set_bits *skip,
                          struct fd_vec *out, uint32_t *seen);

/* Scans every process under `root` into `s` (zeroed by the caller, freed by fd_scan_free).
 * Returns 0, or a positive errno when the root cannot be listed or memory runs out. */
int run_fd_scan(const char *root, int named_pipes, struct fd_scan *s);
void fd_scan_free(struct fd_scan *s);

#endif
