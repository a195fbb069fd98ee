/*
 * What the files of the fd index share among themselves (fd_index.h is what others use).
 * Why the index is exact, what it can miss and what it costs: FD_INDEX.md, beside this file.
 */
#ifndef STOPD_FD_INDEX_PARTS_H
#define STOPD_FD_INDEX_PARTS_H

#include <stdint.h>
#include <sys/types.h>

#include "fd_index.h"

/* ---------- fd_index_map.c ---------- */

/* A 64-bit mix (MurmurHash3's fmix64): slots of the map, and spreading rescan times. */
uint64_t mix64(uint64_t x);
/* Adds holder `h` of `inode`; returns 0 or ENOMEM. */
int map_add(struct inode_map *m, uint64_t inode, struct holder h);
/* Removes the holder (pid, fd) of `inode`, if present. */
void map_remove(struct inode_map *m, uint64_t inode, int32_t pid, int32_t fd);
void map_free(struct inode_map *m);

/* ---------- fd_index_proc.c ---------- */

/* PF_KTHREAD in the flags of /proc/PID/stat (include/linux/sched.h): a kernel thread. */
#define STAT_PF_KTHREAD 0x00200000UL

int64_t monotonic_ns(void);
/* Reads a small proc file relative to the root into `buf` (NUL-terminated). Returns its length
 * or a negative errno. */
ssize_t read_proc_file(int root_fd, const char *rel, char *buf, size_t size);
/* Parses "N N N\n" (schedstat). Returns 0, or -1 when malformed. */
int parse_schedstat(const char *s, uint64_t out[3]);
/* Re-reads a kept schedstat. Returns 0, ESRCH once the process is reaped, another errno else. */
int read_stats(int fd, uint64_t out[3]);
/* State, flags and num_threads of /proc/PID/stat; -1 when malformed. */
int parse_stat(const char *s, char *state, unsigned long *flags, long *threads);
/* The last pid allocated in the reader's pid namespace (/proc/loadavg, last field), or -1. */
long long read_last_pid(int root_fd);

/* ---------- fd_index.c ---------- */

/* Forgets everything; the next refresh starts from a full listing. */
void index_reset(struct fd_index *ix);
/* One refresh, run where the index's descriptors live (fd_index_keeper.c). Returns 0 or an
 * errno; *was_full says whether /proc was listed in full. */
int index_refresh(struct fd_index *ix, int *was_full);

#endif
