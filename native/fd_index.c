/*
 * fd_index: one refresh of the incremental descriptor index: which tracked processes are still
 * trusted (unchanged schedstat, quiet), which are rescanned, which are gone, and which are new
 * (probed from the loadavg window, or a full listing of /proc). Types and the interface are in
 * fd_index.h; open, close and the keeper thread in fd_index_keeper.c.
 * Why the index is exact, what it can miss and what it costs: FD_INDEX.md, beside this file.
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

#include "compat.h"
#include "fd_index_parts.h"


/* Steps 2 and 3 of the rule in FD_INDEX.md for one task (`task` is "PID" or "PID/task/TID"): whether
 * it was blocked, or is a zombie alone in its group. *threads gets num_threads (0 when stat
 * could not be read), *kthread whether it is a kernel thread. A zombie leader with other
 * threads left is not quiet: they still run. */
static int is_quiet(const struct fd_index *ix, const char *task, long *threads, bool *kthread) {
  char rel[64], buf[STAT_BUF_SIZE];
  *threads = 0;
  *kthread = false;
  snprintf(rel, sizeof rel, "%s/wchan", task);
  ssize_t n = read_proc_file(ix->root_fd, rel, buf, 64); /* a symbol can be long; its start will do */
  int blocked = n > 0 && !(n == 1 && buf[0] == '0');
  snprintf(rel, sizeof rel, "%s/stat", task);
  n = read_proc_file(ix->root_fd, rel, buf, sizeof buf);
  char state;
  unsigned long flags;
  long count;
  if (n <= 0 || parse_stat(buf, &state, &flags, &count) != 0 || count < 1) return 0;
  *threads = count;
  *kthread = (flags & STAT_PF_KTHREAD) != 0;
  if (state == 'Z' || state == 'X') return count == 1;
  return blocked && state != 'R';
}

/* Whether the process is a kernel thread now (false when its stat cannot be read). */
static bool is_kthread(const struct fd_index *ix, int32_t pid) {
  char rel[32], buf[STAT_BUF_SIZE];
  snprintf(rel, sizeof rel, "%d/stat", (int)pid);
  char state;
  unsigned long flags;
  long threads;
  return read_proc_file(ix->root_fd, rel, buf, sizeof buf) > 0 && parse_stat(buf, &state, &flags, &threads) == 0 &&
         (flags & STAT_PF_KTHREAD) != 0;
}

static int compare_fd(const void *a, const void *b) {
  int32_t x = ((const struct fd_entry *)a)->fd, y = ((const struct fd_entry *)b)->fd;
  return (x > y) - (x < y);
}

static int compare_i32(const void *a, const void *b) {
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return (x > y) - (x < y);
}

static int compare_tracked(const void *a, const void *b) {
  return compare_i32(&((const struct tracked *)a)->pid, &((const struct tracked *)b)->pid);
}

struct tracked *find_tracked(const struct fd_index *ix, int32_t pid) {
  struct tracked key = {.pid = pid};
  return bsearch(&key, ix->procs, ix->count, sizeof key, compare_tracked);
}

static void drop_fds(struct fd_index *ix, struct tracked *t) {
  for (uint32_t i = 0; i < t->nfds; i++) map_remove(&ix->inodes, (uint64_t)t->fds[i].inode, t->pid, t->fds[i].fd);
  free(t->fds);
  t->fds = NULL;
  t->nfds = 0;
}

/* Closes the kept schedstat files of a process's other threads, if any. */
static void drop_threads(struct fd_index *ix, struct tracked *t) {
  for (uint32_t i = 0; i < t->nthreads; i++) {
    bits_remove(&ix->kept_fds, t->threads[i].fd);
    close(t->threads[i].fd);
    ix->kept--;
  }
  free(t->threads);
  t->threads = NULL;
  t->nthreads = 0;
}

/* Closes a process's kept schedstat files (its own and its threads'), if any. */
static void drop_kept(struct fd_index *ix, struct tracked *t) {
  drop_threads(ix, t);
  if (t->kept < 0) return;
  bits_remove(&ix->kept_fds, t->kept);
  close(t->kept);
  t->kept = -1;
  ix->kept--;
}

/* Forgets a process: its descriptors and its kept schedstat. */
static void release_tracked(struct fd_index *ix, struct tracked *t) {
  drop_fds(ix, t);
  drop_kept(ix, t);
}

/* Replaces a process's descriptors with `fds` (sorted), updating the inode map only when they
 * differ: a volatile process is rescanned at every refresh and usually has not changed. */
static int set_fds(struct fd_index *ix, struct tracked *t, const struct fd_vec *fds) {
  if (t->nfds == fds->count && (fds->count == 0 || memcmp(t->fds, fds->items, fds->count * sizeof *fds->items) == 0))
    return 0;
  struct fd_entry *copy = NULL;
  if (fds->count > 0) {
    if (fds->count > UINT32_MAX) return ENOMEM;
    copy = malloc(fds->count * sizeof *copy);
    if (copy == NULL) return ENOMEM;
    memcpy(copy, fds->items, fds->count * sizeof *copy);
  }
  drop_fds(ix, t);
  t->fds = copy;
  t->nfds = (uint32_t)fds->count;
  for (uint32_t i = 0; i < t->nfds; i++) {
    struct holder h = {.pid = t->pid, .fd = copy[i].fd, .kind = copy[i].kind};
    int err = map_add(&ix->inodes, (uint64_t)copy[i].inode, h);
    if (err != 0) return err; /* the caller resets the whole index */
  }
  return 0;
}

/* The numeric names in directory `rel` of the proc root (pids, or thread ids), except `skip`,
 * ascending, into `out` (emptied first). Returns 0 or an errno. */
static int list_numbers(const struct fd_index *ix, const char *rel, long long skip, struct i32_vec *out) {
  int dfd = openat(ix->root_fd, rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return errno;
  DIR *dir = fdopendir(dfd);
  if (dir == NULL) {
    int err = errno;
    close(dfd);
    return err;
  }
  out->count = 0;
  int err = 0;
  for (;;) {
    errno = 0;
    struct dirent *e = readdir(dir);
    if (e == NULL) {
      err = errno;
      break;
    }
    long long number = parse_decimal(e->d_name, INT32_MAX);
    if (number > 0 && number != skip && (err = i32_push(out, (int32_t)number)) != 0) break;
  }
  closedir(dir);
  if (err == 0) qsort(out->items, out->count, sizeof *out->items, compare_i32);
  return err;
}

/* The thread ids of a process (PROCROOT/PID/task), ascending, into `out`. Returns 0 or an
 * errno. */
static int list_tasks(const struct fd_index *ix, const char *pid_name, struct i32_vec *out) {
  char rel[40];
  snprintf(rel, sizeof rel, "%s/task", pid_name);
  return list_numbers(ix, rel, 0, out);
}

/*
 * Steps 3a to 3c of the rule in FD_INDEX.md, for a multi-threaded process whose leader is quiet: lists
 * its threads, keeps each other thread's schedstat (read before its wchan is checked), and
 * lists the threads again. Returns 1 when every thread was quiet and the list did not change
 * (the files stay kept in t->threads), 0 when the process is not to be trusted (none kept),
 * -1 when out of memory.
 */
static int keep_threads(struct fd_index *ix, struct tracked *t, const char *pid_name) {
  struct i32_vec before = {0}, after = {0};
  int quiet = 0, nomem = 0;
  int err = list_tasks(ix, pid_name, &before);
  if (err == ENOMEM) nomem = 1;
  if (err == 0 && before.count > 1 && before.count - 1 <= ix->max_kept - ix->kept) {
    t->threads = calloc(before.count - 1, sizeof *t->threads);
    if (t->threads == NULL) nomem = 1;
    quiet = t->threads != NULL;
    for (size_t i = 0; i < before.count && quiet; i++) {
      int32_t tid = before.items[i];
      if (tid == t->pid) continue; /* the leader: already read and checked, through PID/ */
      char task[48], rel[64];
      snprintf(task, sizeof task, "%s/task/%d", pid_name, (int)tid);
      snprintf(rel, sizeof rel, "%s/schedstat", task);
      struct kept_thread *k = &t->threads[t->nthreads];
      k->fd = openat(ix->root_fd, rel, O_RDONLY | O_CLOEXEC);
      if (k->fd < 0) {
        quiet = 0;
        break;
      }
      if (read_stats(k->fd, k->stats) != 0 || bits_add(&ix->kept_fds, k->fd) != 0) {
        close(k->fd);
        quiet = 0;
        break;
      }
      t->nthreads++;
      ix->kept++;
      long threads;
      bool kthread;
      quiet = is_quiet(ix, task, &threads, &kthread);
    }
    if (quiet) {
      err = list_tasks(ix, pid_name, &after);
      if (err == ENOMEM) nomem = 1;
      quiet = err == 0 && after.count == before.count &&
              memcmp(after.items, before.items, before.count * sizeof *before.items) == 0 &&
              t->nthreads == before.count - 1;
    }
  }
  free(before.items);
  free(after.items);
  if (!quiet) drop_threads(ix, t);
  return nomem ? -1 : quiet;
}

/*
 * (Re)scans one process in the order of the rule in FD_INDEX.md and updates `t` (pid set, kept closed
 * or open). PID_GONE: the caller releases `t`. PID_NOMEM: the caller resets the index.
 */
static enum pid_outcome scan_tracked(struct fd_index *ix, struct tracked *t) {
  char name[16], rel[40];
  snprintf(name, sizeof name, "%d", (int)t->pid);
  drop_kept(ix, t);
  t->kthread = 0; /* set again below, once its schedstat is kept */
  int trusted = 0;
  bool kthread = false;
  /* Past the cap the process is rescanned at every refresh anyway: no need to judge it. Nor
   * one refused or failed at its last scan: it is read again at every refresh (below), and if
   * it is readable now, the next refresh judges it. Nor, between retries, a busy
   * multi-threaded process (FD_INDEX.md, "Cost"). */
  int judge = ix->runs == NULL && ix->schedstat_ok && ix->kept < ix->max_kept && t->pid != ix->self && t->outcome == PID_OK;
  if (judge && t->misses >= 2 && t->threads_seen > 1 && (uint64_t)t->threads_seen * 4 >= t->fds_seen) {
    judge = ix->refreshes >= t->retry_at;
    if (judge) t->retry_at = ix->refreshes + (1ULL << (t->misses - 2 < 5 ? t->misses - 2 : 5));
  }
  if (judge) {
    snprintf(rel, sizeof rel, "%s/schedstat", name);
    int fd = openat(ix->root_fd, rel, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && proc_is_gone(errno)) return PID_GONE;
    if (fd >= 0) {
      int err = read_stats(fd, t->stats);
      if (err == 0 && bits_add(&ix->kept_fds, fd) == 0) {
        t->kept = fd;
        ix->kept++;
        long threads;
        trusted = is_quiet(ix, name, &threads, &kthread);
        t->threads_seen = threads > 0 && threads < INT32_MAX ? (uint32_t)threads : 0;
        if (trusted && threads > 1) {
          int keep = keep_threads(ix, t, name);
          if (keep < 0) return PID_NOMEM;
          trusted = keep;
        }
      } else {
        close(fd);
        if (err == ESRCH) return PID_GONE;
      }
    }
  }
  ix->scratch.count = 0;
  uint32_t seen = 0;
  enum pid_outcome outcome = scan_pid(ix->root_fd, name, ix->named_pipes,
                                      t->pid == ix->self && !ix->has_keeper ? &ix->kept_fds : NULL, &ix->scratch, &seen);
  t->fds_seen = seen;
  switch (outcome) {
    case PID_OK:
      /* procfs lists descriptors in ascending order already; a fake root may not. */
      qsort(ix->scratch.items, ix->scratch.count, sizeof *ix->scratch.items, compare_fd);
      if (set_fds(ix, t, &ix->scratch) != 0) return PID_NOMEM;
      /* With the run tracker a mark, not a kept file, says it ran: every process but ourselves
       * is trusted until marked (FD_INDEX.md, "With the run tracker"). */
      if (ix->runs != NULL) trusted = t->pid != ix->self;
      break;
    case PID_DENIED:
    case PID_FAILED:
      drop_fds(ix, t);
      /* The caller reads these again itself; keep asking the kernel too, at every refresh, so
       * a kept file would be wasted on them. */
      trusted = 0;
      drop_kept(ix, t);
      break;
    case PID_GONE:
    case PID_NOMEM:
      return outcome;
  }
  t->outcome = (uint8_t)outcome;
  t->trusted = (uint8_t)trusted;
  /* Only with its schedstat kept: that file is what tells the thread is still there. */
  t->kthread = kthread && t->kept >= 0 && outcome == PID_OK;
  /* Somewhere in the second half of the interval, by pid, so that processes scanned together
   * (all of them at the first refresh) do not all come due at the same refresh again. */
  int64_t half = ix->rescan_interval_ns / 2;
  t->due_ns = ix->now_ns + half + (half > 0 ? (int64_t)(mix64((uint64_t)t->pid ^ (uint64_t)ix->now_ns) % (uint64_t)half) : 0);
  return i32_push(&ix->rescanned, t->pid) == 0 ? outcome : PID_NOMEM;
}

/* Forgets everything; the next refresh starts from a full listing. */
void index_reset(struct fd_index *ix) {
  for (size_t i = 0; i < ix->count; i++) release_tracked(ix, &ix->procs[i]);
  ix->count = 0;
  map_free(&ix->inodes);
  ix->pending.count = 0;
  ix->last_pid = -1;
  ix->nlink_known = 0;
}

/* The processes that may have run since the last refresh, from the run tracker, into ix->ran
 * (ascending, the tracker's own array); ix->ran_complete is false when a mark was lost or the
 * tracker failed, and then every process is rescanned. */
static void take_runs(struct fd_index *ix) {
  bool complete;
  ix->ran_count = 0;
  ix->ran_complete = run_tracker_take(ix->runs, &ix->ran, &ix->ran_count, &complete) == 0 && complete;
}

/* Step one of a refresh: every tracked process is kept (unchanged schedstat, not volatile),
 * rescanned, or forgotten (gone). Returns 0 or ENOMEM. */
static int validate_tracked(struct fd_index *ix) {
  size_t out = 0;
  int err = 0;
  size_t i = 0;
  for (; i < ix->count; i++) {
    struct tracked t = ix->procs[i];
    enum pid_outcome outcome = PID_OK;
    int rescan = 1;
    int due = ix->rescan_interval_ns != 0 && ix->now_ns >= t.due_ns;
    if (ix->runs != NULL) {
      /* Unmarked since its scan: it has not run, so its table is as read (and it is not gone:
       * an exit is a switch-out, which marks). */
      if (!due && t.trusted && ix->ran_complete &&
          bsearch(&t.pid, ix->ran, ix->ran_count, sizeof t.pid, compare_i32) == NULL)
        rescan = 0;
    } else if (t.kthread && !due) {
      /* A kernel thread may run all the time: while it stays one, it holds nothing new. */
      uint64_t now[3];
      int read_err = read_stats(t.kept, now);
      if (read_err == 0 && memcmp(now, t.stats, sizeof now) != 0) {
        /* By path first, then the kept file: a task still alive at the second read is the one
         * the path named (the number cannot have been reused while it lived). */
        int still = is_kthread(ix, t.pid);
        read_err = read_stats(t.kept, now);
        if (read_err == 0 && !still) read_err = EAGAIN;
        if (read_err == 0) memcpy(t.stats, now, sizeof now);
      }
      if (read_err == ESRCH) outcome = PID_GONE;
      if (read_err == 0 || read_err == ESRCH) rescan = 0;
      /* Any other failure, or no longer a kernel thread: rescan by path. */
    } else if (t.trusted && t.kept >= 0 && !due) {
      uint64_t now[3];
      int read_err = read_stats(t.kept, now);
      if (read_err == ESRCH) {
        outcome = PID_GONE;
        rescan = 0;
      } else if (read_err == 0 && memcmp(now, t.stats, sizeof now) == 0) {
        rescan = 0;
        /* Every other thread too: one that ran, or exited (ESRCH), means a rescan. */
        for (uint32_t k = 0; k < t.nthreads && !rescan; k++)
          rescan = read_stats(t.threads[k].fd, now) != 0 || memcmp(now, t.threads[k].stats, sizeof now) != 0;
      }
      /* Any other failure: rescan by path, which finds out whether the process is gone. */
    }
    if (rescan && !due && t.misses < UINT8_MAX) t.misses++;
    if (!rescan) t.misses = 0;
    if (rescan) outcome = scan_tracked(ix, &t);
    if (outcome == PID_GONE) {
      release_tracked(ix, &t);
      continue;
    }
    ix->procs[out++] = t;
    if (outcome == PID_NOMEM) {
      err = ENOMEM;
      i++;
      break;
    }
  }
  /* After an early stop keep the rest, so the reset that follows releases everything once. */
  memmove(ix->procs + out, ix->procs + i, (ix->count - i) * sizeof *ix->procs);
  ix->count = out + (ix->count - i);
  return err;
}

/* Starts tracking processes not tracked yet (each scanned like a rescan). Returns 0 or ENOMEM. */
static int add_processes(struct fd_index *ix, const int32_t *pids, size_t n) {
  if (n == 0) return 0;
  if (ix->cap - ix->count < n) {
    size_t cap = ix->cap == 0 ? 256 : ix->cap;
    while (cap - ix->count < n) cap *= 2;
    struct tracked *procs = realloc(ix->procs, cap * sizeof *procs);
    if (procs == NULL) return ENOMEM;
    ix->procs = procs;
    ix->cap = cap;
  }
  int err = 0;
  size_t before = ix->count;
  for (size_t i = 0; i < n && err == 0; i++) {
    struct tracked t = {.pid = pids[i], .kept = -1};
    enum pid_outcome outcome = scan_tracked(ix, &t);
    if (outcome == PID_GONE) {
      release_tracked(ix, &t);
      continue;
    }
    ix->procs[ix->count++] = t; /* even on PID_NOMEM, so the reset releases it */
    if (outcome == PID_NOMEM) err = ENOMEM;
  }
  if (ix->count > before) qsort(ix->procs, ix->count, sizeof *ix->procs, compare_tracked);
  return err;
}

/* Lists the proc root: tracks the processes not tracked yet and forgets tracked ones that are
 * no longer listed. Returns 0 or an errno. */
static int list_all(struct fd_index *ix, int64_t now) {
  struct i32_vec listed = {0};
  int err = list_numbers(ix, ".", ix->skip_pid, &listed);
  if (err != 0) {
    free(listed.items);
    return err;
  }
  /* Both ascending: one walk forgets the unlisted and keeps the new ones in `fresh`. */
  struct i32_vec fresh = {0};
  size_t out = 0, j = 0;
  for (size_t i = 0; i < ix->count; i++) {
    struct tracked *t = &ix->procs[i];
    for (; j < listed.count && listed.items[j] < t->pid; j++)
      if ((err = i32_push(&fresh, listed.items[j])) != 0) break;
    if (err != 0) {
      memmove(ix->procs + out, ix->procs + i, (ix->count - i) * sizeof *ix->procs);
      out += ix->count - i;
      break;
    }
    if (j < listed.count && listed.items[j] == t->pid) {
      j++;
      ix->procs[out++] = *t;
    } else {
      release_tracked(ix, t);
    }
  }
  ix->count = out;
  for (; err == 0 && j < listed.count; j++) err = i32_push(&fresh, listed.items[j]);
  if (err == 0) err = add_processes(ix, fresh.items, fresh.count);
  free(listed.items);
  free(fresh.items);
  if (err != 0) return err;
  ix->pending.count = 0;
  ix->last_list_ns = now;
  return 0;
}

enum probe_result { PROBE_PROCESS, PROBE_NONE, PROBE_PENDING, PROBE_ERROR };

/* What a pid from the loadavg window is: a process to track, nothing (a thread, or gone), a
 * fork still in progress, or unknown (an unexpected error: list /proc instead). */
static enum probe_result probe_pid(const struct fd_index *ix, int32_t pid) {
  for (int attempt = 0; attempt < 2; attempt++) {
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd >= 0) {
      close(fd);
      return PROBE_PROCESS;
    }
    if (errno == ESRCH) return PROBE_NONE;
    if (errno != EINVAL) return PROBE_ERROR;
    if (attempt == 1) return PROBE_NONE; /* a task is attached and leads no group: a thread */
    /* The pid exists but leads no thread group: a thread, whose /proc/PID resolves, or a fork
     * not yet attached, whose /proc/PID does not (yet). */
    char name[16];
    snprintf(name, sizeof name, "%d", (int)pid);
    struct stat st;
    if (fstatat(ix->root_fd, name, &st, 0) != 0) return proc_is_gone(errno) ? PROBE_PENDING : PROBE_ERROR;
  }
  return PROBE_NONE;
}

/* Finds the processes created since the last refresh by probing pids (from, to] and the forks
 * that were in progress. Sets *full when /proc must be listed instead. Returns 0 or ENOMEM. */
static int probe_new(struct fd_index *ix, long long from, long long to, int *full) {
  struct i32_vec found = {0}, pending = {0};
  int err = 0;
  /* Forks in progress at the last refresh first, then the new window. */
  size_t old = ix->pending.count;
  for (size_t k = 0; k < old + (size_t)(to - from) && err == 0 && !*full; k++) {
    int32_t pid = k < old ? ix->pending.items[k] : (int32_t)(from + 1 + (long long)(k - old));
    if (pid == ix->skip_pid || find_tracked(ix, pid) != NULL) continue;
    switch (probe_pid(ix, pid)) {
      case PROBE_PROCESS:
        err = i32_push(&found, pid);
        break;
      case PROBE_PENDING:
        err = i32_push(&pending, pid);
        if (err == 0 && pending.count > INDEX_MAX_PENDING) *full = 1;
        break;
      case PROBE_NONE:
        break;
      case PROBE_ERROR:
        *full = 1;
        break;
    }
  }
  if (err == 0 && !*full) {
    /* A pid can be both pending and in the window only if it was listed twice: drop repeats. */
    qsort(found.items, found.count, sizeof *found.items, compare_i32);
    size_t unique = 0;
    for (size_t k = 0; k < found.count; k++)
      if (unique == 0 || found.items[unique - 1] != found.items[k]) found.items[unique++] = found.items[k];
    err = add_processes(ix, found.items, unique);
  }
  free(found.items);
  if (err == 0 && !*full) {
    free(ix->pending.items);
    ix->pending = pending;
  } else {
    free(pending.items);
  }
  return err;
}

/* The link count of the proc root: a constant plus the number of processes in the system. */
static long long root_nlink(const struct fd_index *ix) {
  struct stat st;
  return fstat(ix->root_fd, &st) == 0 ? (long long)st.st_nlink : -1;
}

/* Brings the index up to date. Returns 0 or an errno; after a failure the index is empty and
 * the next refresh starts over. */
int index_refresh(struct fd_index *ix, int *was_full) {
  ix->rescanned.count = 0;
  ix->refreshes++;
  int64_t now = monotonic_ns();
  ix->now_ns = now;
  /* Read before anything else: a process created from here on has a larger pid, which the next
   * refresh probes. */
  long long last = ix->can_probe ? read_last_pid(ix->root_fd) : -1;
  int full = last < 0 || ix->last_pid < 0 || last < ix->last_pid || last - ix->last_pid > INDEX_MAX_WINDOW ||
             now - ix->last_list_ns >= ix->list_interval_ns;
  if (ix->runs != NULL) take_runs(ix);
  int err = validate_tracked(ix);
  if (err == 0 && !full && last > ix->last_pid) err = probe_new(ix, ix->last_pid, last, &full);
  else if (err == 0 && !full && ix->pending.count > 0) err = probe_new(ix, last, last, &full);
  if (err == 0 && !full && ix->can_count && ix->nlink_known && root_nlink(ix) - (long long)ix->count != ix->nlink_base) {
    /* Most often a process created or reaped during this refresh: probe the pids allocated
     * meanwhile, and if the counts still differ, list /proc to be sure. */
    long long again = read_last_pid(ix->root_fd);
    if (again > last && again - last <= INDEX_MAX_WINDOW) {
      err = probe_new(ix, last, again, &full);
      last = again;
    }
    if (err == 0 && root_nlink(ix) - (long long)ix->count != ix->nlink_base) full = 1;
  }
  if (err == 0 && full) {
    err = list_all(ix, now);
    /* A fork in progress is not listed either. Forks still in progress now were given recent
     * pids: probe the last INDEX_MAX_WINDOW pids once, so that they are remembered as pending. */
    int ignored = 0;
    if (err == 0 && last > 0) err = probe_new(ix, last > INDEX_MAX_WINDOW ? last - INDEX_MAX_WINDOW : 0, last, &ignored);
    long long nlink = ix->can_count && err == 0 ? root_nlink(ix) : -1;
    ix->nlink_known = nlink >= 0;
    ix->nlink_base = nlink - (long long)ix->count;
  }
  if (err != 0) {
    index_reset(ix);
    return err;
  }
  ix->last_pid = last;
  *was_full = full;
  return 0;
}

/* What the index learns about the kernel and the proc root once, at open (run where the
 * index's descriptors live: in the keeper when there is one). */
