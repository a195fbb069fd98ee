/*
 * fd_index: the incremental descriptor index (plain C, no N-API; the binding is
 * fd_index_napi.c). It keeps each process's socket and pipe descriptors between refreshes and
 * re-reads only the processes that may have changed since, answering what a full scan
 * (fd_scan.h) would.
 * Why the index is exact, what it can miss and what it costs: FD_INDEX.md, beside this file.
 *
 * Files: fd_index.c (refresh: judging, rescanning, probing for new processes),
 * fd_index_map.c (inode -> holders), fd_index_proc.c (small /proc readers),
 * fd_index_keeper.c (open/close and the keeper thread that holds the kept files);
 * fd_index_parts.h declares what they share.
 */
#ifndef STOPD_FD_INDEX_H
#define STOPD_FD_INDEX_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fd_scan.h"
#include "run_tracker.h"

/* Most pids probed one by one before a full listing is cheaper (a listing of 1 000 processes
 * costs about as much as a few hundred probes). */
#define INDEX_MAX_WINDOW 256
/* Forks in progress remembered at most; past it the next refresh lists /proc. */
#define INDEX_MAX_PENDING 256
#define INDEX_DEFAULT_MAX_KEPT 4096
#define INDEX_DEFAULT_LIST_INTERVAL_MS 10000
#define INDEX_DEFAULT_RESCAN_INTERVAL_MS 60000
/* The inode of the initial pid namespace (include/linux/proc_ns.h, PROC_PID_INIT_INO). */
#define PID_NS_INIT_INO 0xEFFFFFFCU
/* /proc/PID/stat fits easily: 52 numeric fields and a comm of at most 64 bytes. */
#define STAT_BUF_SIZE 2048

/* One descriptor holding an inode. */
struct holder {
  int32_t pid;
  int32_t fd;
  uint8_t kind;
};

/* inode -> holders, open addressing. A slot whose holders all went keeps its key until the
 * next rehash, which drops it; inode 0 (never a socket or pipe) marks a free slot. */
struct inode_slot {
  uint64_t inode;
  uint32_t count;
  uint32_t cap;
  struct holder *items;
};

struct inode_map {
  struct inode_slot *slots;
  size_t cap; /* a power of two, or 0 */
  size_t used; /* slots with a key */
};

/* One other thread of a trusted multi-threaded process: its schedstat, kept open, and the
 * numbers read from it before the process's descriptors. */
struct kept_thread {
  int fd;
  uint64_t stats[3];
};

/* One process the index knows. */
struct tracked {
  int32_t pid;
  int kept;               /* PROCROOT/PID/schedstat, open between refreshes; -1 when not kept */
  struct kept_thread *threads; /* the other threads' schedstat (trusted multi-threaded only) */
  uint32_t nthreads;
  uint8_t outcome;        /* PID_OK, PID_DENIED or PID_FAILED at its last scan */
  uint8_t trusted;        /* not volatile: unchanged schedstat (or, with the run tracker, no
                           * mark) means unchanged descriptors */
  uint8_t kthread;        /* a kernel thread at its last scan (FD_INDEX.md, "Kernel threads") */
  uint8_t misses;         /* refreshes in a row that found it changed or volatile */
  uint32_t threads_seen;  /* num_threads when last judged */
  uint32_t fds_seen;      /* descriptors of any kind at its last scan */
  uint64_t retry_at;      /* with backoff (FD_INDEX.md, "Cost"): the refresh that may judge it next */
  uint64_t stats[3];      /* sum_exec_runtime, run_delay, pcount, read before the descriptors */
  int64_t due_ns;         /* rescanned at the first refresh after this, changed or not */
  struct fd_entry *fds;   /* ascending fd; NULL when none */
  uint32_t nfds;
};

enum keeper_state { KEEPER_STARTING, KEEPER_FAILED, KEEPER_IDLE, KEEPER_BUSY, KEEPER_STOP };

struct fd_index {
  char *root;
  int root_fd; /* the proc root, open for the index's lifetime (in the keeper's table if any) */
  bool closed;
  int named_pipes;
  int32_t self;
  bool skip_self;   /* leave out the process that opens the index (fdIndexCreate, fd_index_napi.c) */
  int32_t skip_pid; /* ... its pid as the proc root numbers it; -1: none */
  size_t max_kept;
  size_t kept;
  struct fd_set_bits kept_fds; /* the kept schedstat descriptors, skipped when reading our own table
                                * (only without a keeper: its numbers are not our table's then) */
  int64_t list_interval_ns;
  int64_t rescan_interval_ns; /* 0: trusted processes are never rescanned unless they change */
  int64_t now_ns;             /* when the current refresh started */
  int64_t last_list_ns;
  long long last_pid;  /* /proc/loadavg's last pid at the last refresh; -1: list at the next */
  int schedstat_ok;    /* the kernel counts switch-ins (CONFIG_SCHED_INFO) */
  int can_probe;       /* loadavg, pidfd_open and a proc root of our own pid namespace */
  int can_count;       /* ... and that namespace is the initial one */
  /* The run tracker (FD_INDEX.md, "With the run tracker"), when asked for and loaded; it then
   * replaces the kept schedstat files. */
  char *runs_path;      /* its BPF object; NULL: not asked for */
  struct run_tracker *runs;
  char runs_why[256];   /* why it is not used, when asked for and not loaded */
  const int32_t *ran;   /* pids that may have run since the last refresh, ascending (the
                         * tracker's array, valid during a refresh) */
  size_t ran_count;
  bool ran_complete;    /* false: a mark was lost, every process is rescanned this refresh */
  int nlink_known;
  long long nlink_base; /* link count of the proc root minus its processes */
  struct tracked *procs; /* ascending pid */
  size_t count;
  size_t cap;
  struct inode_map inodes;
  struct i32_vec pending;   /* pids whose fork was in progress when probed */
  struct i32_vec rescanned; /* pids (re)scanned by the last refresh */
  struct fd_vec scratch;
  int last_full; /* what the last refresh reported */
  uint64_t refreshes; /* counts refreshes, for the backoff of busy multi-threaded processes */
  /* The keeper thread (keeper_main, fd_index_keeper.c) and the job it runs for the caller. */
  bool has_keeper;
  pthread_t keeper;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  enum keeper_state keeper_state;
  int (*job)(struct fd_index *ix);
  int job_result;
};

/* Opens an index over `root` into `ix` (zeroed here). Returns 0 or an errno (the root cannot be
 * opened). With separate_table the kept files live in a keeper thread's own descriptor table.
 * With run_tracker (a path to bpf/run-tracker.bpf.o) the index learns which processes ran from
 * it instead of schedstat files, where it loads (ix->runs; ix->runs_why says why not). */
int index_open(struct fd_index *ix, const char *root, int named_pipes, size_t max_kept, int64_t list_interval_ns,
               int64_t rescan_interval_ns, bool separate_table, bool skip_self, const char *run_tracker);

/* Refreshes the index where its descriptors live; ix->last_full then says whether /proc was
 * listed in full. Returns 0 or an errno. */
int index_run_refresh(struct fd_index *ix);

/* Releases everything the index holds and stops the keeper; idempotent (ix itself is not freed). */
void index_close(struct fd_index *ix);

/* The holders of `inode`, or NULL. */
struct inode_slot *map_find(const struct inode_map *m, uint64_t inode);

/* The tracked process `pid`, or NULL. */
struct tracked *find_tracked(const struct fd_index *ix, int32_t pid);

#endif
