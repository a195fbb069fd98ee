/*
 * run_tracker: which processes ran since it was last asked, learnt from the kernel by the BPF
 * program bpf/run-tracker.bpf.c (one tp_btf program on sched:sched_switch), so that the
 * descriptor index (fd_index.c) re-reads only those instead of reading a schedstat file per
 * thread of every process. Why that keeps the index exact: FD_INDEX.md, "With the run tracker".
 *
 * Plain C over libbpf opened at run time (libbpf_dl.h). Not thread-safe: one tracker is used
 * from one thread at a time.
 */
#ifndef STOPD_RUN_TRACKER_H
#define STOPD_RUN_TRACKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct run_tracker;

/* Loads the object at `path` for the pid namespace at depth `level` with inode number `inum`
 * (the one whose numbers the caller uses) and attaches it. Returns 0, or a positive errno with
 * the reason in `why`. */
int run_tracker_open(const char *path, uint32_t level, uint32_t inum, struct run_tracker **out, char *why,
                     size_t why_len);

/*
 * The processes that may have run since the last call: those on a CPU now and those marked
 * since (each mark taken is deleted), in *pids (ascending, maybe repeated; valid until the
 * next call) and *count. *complete is false when a mark was lost since the last call (the
 * map was full): the caller must then treat every process as changed. Returns 0 or a
 * positive errno (then likewise).
 */
int run_tracker_take(struct run_tracker *t, const int32_t **pids, size_t *count, bool *complete);

/* Detaches and frees everything (NULL is fine). */
void run_tracker_close(struct run_tracker *t);

#endif
