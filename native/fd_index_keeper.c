/*
 * fd_index_keeper: opening and closing the fd index, and the keeper thread in whose descriptor
 * table the index keeps its files and does its reading (see keeper_main).
 * Why the index is exact, what it can miss and what it costs: FD_INDEX.md, beside this file.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "compat.h"
#include "fd_index_parts.h"

/* The depth of our pid namespace: one less than the numbers on the NSpid line of our status
 * (one per namespace from the initial one down), or -1. */
static int pid_ns_level(const struct fd_index *ix) {
  char buf[4096];
  if (read_proc_file(ix->root_fd, "self/status", buf, sizeof buf) <= 0) return -1;
  const char *line = strstr(buf, "\nNSpid:");
  if (line == NULL) return -1;
  int numbers = 0;
  for (const char *c = line + 7; *c != '\0' && *c != '\n'; c++)
    if (*c >= '0' && *c <= '9' && (c[-1] == ' ' || c[-1] == '\t' || c[-1] == ':')) numbers++;
  return numbers - 1;
}

/* Loads the run tracker for the pid namespace the root lists (only when it is ours: the
 * tracker numbers processes as we see them). Failing, the index keeps its schedstat files. */
static void open_run_tracker(struct fd_index *ix, uint32_t ns_inum) {
  int level = pid_ns_level(ix);
  if (!ix->can_probe || ns_inum == 0 || level < 0) {
    snprintf(ix->runs_why, sizeof ix->runs_why, "the proc root %s is not of this process's pid namespace", ix->root);
    return;
  }
  char why[sizeof ix->runs_why];
  why[0] = '\0';
  int err = run_tracker_open(ix->runs_path, (uint32_t)level, ns_inum, &ix->runs, why, sizeof why);
  if (err != 0 && why[0] != '\0') snprintf(ix->runs_why, sizeof ix->runs_why, "%s", why);
  else if (err != 0) snprintf(ix->runs_why, sizeof ix->runs_why, "it cannot be loaded (%s)", strerror(err));
}

static int job_open(struct fd_index *ix) {
  ix->root_fd = open(ix->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (ix->root_fd < 0) return errno;
  char buf[128];
  ix->skip_pid = -1;
  if (ix->skip_self) {
    /* Our pid as this proc root numbers it (another pid namespace numbers us otherwise); a root
     * without "self" (a fake one) does not list us. */
    ssize_t len = readlinkat(ix->root_fd, "self", buf, sizeof buf - 1);
    if (len > 0) {
      buf[len] = 0;
      long long pid = parse_decimal(buf, INT32_MAX);
      if (pid > 0) ix->skip_pid = (int32_t)pid;
    }
  }
  /* Without CONFIG_SCHED_INFO every schedstat reads "0 0 0", even ours, though we are running:
   * then nothing is trusted and every refresh rescans every process. */
  uint64_t stats[3];
  ix->schedstat_ok = read_proc_file(ix->root_fd, "self/schedstat", buf, sizeof buf) > 0 &&
                     parse_schedstat(buf, stats) == 0 && stats[2] > 0;
  /* Probing needs loadavg and pidfd_open to speak of the pid namespace the root lists. */
  ssize_t len = readlinkat(ix->root_fd, "self", buf, sizeof buf - 1);
  if (len > 0) {
    buf[len] = 0;
    int fd = (int)syscall(SYS_pidfd_open, ix->self, 0);
    if (fd >= 0) close(fd);
    ix->can_probe = parse_decimal(buf, INT32_MAX) == ix->self && fd >= 0 && read_last_pid(ix->root_fd) >= 0;
  }
  struct stat ns;
  bool has_ns = fstatat(ix->root_fd, "self/ns/pid", &ns, 0) == 0;
  ix->can_count = ix->can_probe && has_ns && ns.st_ino == PID_NS_INIT_INO;
  if (ix->runs_path != NULL) open_run_tracker(ix, has_ns ? (uint32_t)ns.st_ino : 0);
  return 0;
}

static int job_refresh(struct fd_index *ix) { return index_refresh(ix, &ix->last_full); }

/* Closes every descriptor the index holds (in the keeper's table when there is one). */
static int job_release(struct fd_index *ix) {
  index_reset(ix);
  run_tracker_close(ix->runs);
  ix->runs = NULL;
  if (ix->root_fd >= 0) close(ix->root_fd);
  ix->root_fd = -1;
  return 0;
}

/*
 * The keeper: a thread with a descriptor table of its own (unshare(CLONE_FILES)), where the
 * index keeps its schedstat files and does all its reading. In the caller's own table a
 * thousand kept files would make every refresh read a thousand-entry /proc/self/fd (the caller
 * is rescanned every time, unless skipSelf), and would show up in every other tool that
 * lists the caller's descriptors. /proc/PID/fd shows the thread-group leader's table, which stays
 * stopd's real one. Without the keeper (unshare refused) the work runs in the caller's thread
 * and the kept files are skipped by number when stopd reads its own table.
 */
static void *keeper_main(void *arg) {
  struct fd_index *ix = arg;
  /* The copy of the caller's table holds a reference to every file stopd had open (sockets
   * too, which would then never close): drop them all before anything else. */
  int err = unshare(CLONE_FILES) == 0 ? 0 : errno;
  if (err == 0 && syscall(SYS_close_range, 0U, ~0U, 0U) != 0) err = errno;
  pthread_mutex_lock(&ix->lock);
  ix->keeper_state = err == 0 ? KEEPER_IDLE : KEEPER_FAILED;
  pthread_cond_broadcast(&ix->cond);
  while (err == 0) {
    while (ix->keeper_state == KEEPER_IDLE) pthread_cond_wait(&ix->cond, &ix->lock);
    if (ix->keeper_state == KEEPER_STOP) break;
    /* KEEPER_BUSY: the caller waits for the job with the lock released. */
    pthread_mutex_unlock(&ix->lock);
    int result = ix->job(ix);
    pthread_mutex_lock(&ix->lock);
    ix->job_result = result;
    ix->keeper_state = KEEPER_IDLE;
    pthread_cond_broadcast(&ix->cond);
  }
  pthread_mutex_unlock(&ix->lock);
  return NULL;
}

/* Starts the keeper; returns whether it runs (otherwise jobs run in the caller's thread). */
static bool keeper_start(struct fd_index *ix) {
  if (pthread_mutex_init(&ix->lock, NULL) != 0) return false;
  if (pthread_cond_init(&ix->cond, NULL) != 0) {
    pthread_mutex_destroy(&ix->lock);
    return false;
  }
  pthread_attr_t attr;
  bool started = pthread_attr_init(&attr) == 0;
  if (started) {
    pthread_attr_setstacksize(&attr, 256 * 1024); /* it needs a few KiB; the default is 8 MiB */
    /* Node handles signals in its main thread: the keeper must never take one. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    ix->keeper_state = KEEPER_STARTING;
    started = pthread_create(&ix->keeper, &attr, keeper_main, ix) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
  }
  if (started) {
    pthread_mutex_lock(&ix->lock);
    while (ix->keeper_state == KEEPER_STARTING) pthread_cond_wait(&ix->cond, &ix->lock);
    started = ix->keeper_state == KEEPER_IDLE;
    pthread_mutex_unlock(&ix->lock);
    if (!started) pthread_join(ix->keeper, NULL);
  }
  if (!started) {
    pthread_cond_destroy(&ix->cond);
    pthread_mutex_destroy(&ix->lock);
  }
  ix->has_keeper = started;
  return started;
}

/* Runs `job` where the index's descriptors live, and returns its result. */
static int index_call(struct fd_index *ix, int (*job)(struct fd_index *)) {
  if (!ix->has_keeper) return job(ix);
  pthread_mutex_lock(&ix->lock);
  ix->job = job;
  ix->keeper_state = KEEPER_BUSY;
  pthread_cond_broadcast(&ix->cond);
  while (ix->keeper_state == KEEPER_BUSY) pthread_cond_wait(&ix->cond, &ix->lock);
  int result = ix->job_result;
  pthread_mutex_unlock(&ix->lock);
  return result;
}

/* Opens an index over `root`. Returns 0 or an errno (the root cannot be opened). */
int index_open(struct fd_index *ix, const char *root, int named_pipes, size_t max_kept, int64_t list_interval_ns,
               int64_t rescan_interval_ns, bool separate_table, bool skip_self, const char *run_tracker) {
  memset(ix, 0, sizeof *ix);
  ix->root_fd = -1;
  ix->root = strdup(root);
  if (ix->root == NULL) return ENOMEM;
  if (run_tracker != NULL && (ix->runs_path = strdup(run_tracker)) == NULL) {
    free(ix->root);
    ix->root = NULL;
    return ENOMEM;
  }
  ix->named_pipes = named_pipes;
  ix->self = (int32_t)getpid();
  ix->skip_self = skip_self;
  ix->list_interval_ns = list_interval_ns;
  ix->rescan_interval_ns = rescan_interval_ns;
  ix->last_pid = -1;
  /* Kept files count against the descriptor limit (per table) and the system's file-max: use
   * half the limit at most. */
  struct rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY && max_kept > limit.rlim_cur / 2)
    max_kept = (size_t)(limit.rlim_cur / 2);
  ix->max_kept = max_kept;
  if (separate_table) keeper_start(ix);
  int err = index_call(ix, job_open);
  if (err != 0) index_close(ix);
  return err;
}

/* Releases everything the index holds and stops the keeper; idempotent. */
void index_close(struct fd_index *ix) {
  if (ix->closed) return;
  ix->closed = true;
  index_call(ix, job_release);
  if (ix->has_keeper) {
    pthread_mutex_lock(&ix->lock);
    ix->keeper_state = KEEPER_STOP;
    pthread_cond_broadcast(&ix->cond);
    pthread_mutex_unlock(&ix->lock);
    pthread_join(ix->keeper, NULL);
    pthread_cond_destroy(&ix->cond);
    pthread_mutex_destroy(&ix->lock);
    ix->has_keeper = false;
  }
  free(ix->procs);
  ix->procs = NULL;
  ix->cap = 0;
  free(ix->pending.items);
  free(ix->rescanned.items);
  free(ix->scratch.items);
  free(ix->kept_fds.words);
  free(ix->root);
  ix->root = NULL;
  free(ix->runs_path);
  ix->runs_path = NULL;
  memset(&ix->kept_fds, 0, sizeof ix->kept_fds);
  memset(&ix->pending, 0, sizeof ix->pending);
  memset(&ix->rescanned, 0, sizeof ix->rescanned);
  memset(&ix->scratch, 0, sizeof ix->scratch);
}

int index_run_refresh(struct fd_index *ix) { return index_call(ix, job_refresh); }
