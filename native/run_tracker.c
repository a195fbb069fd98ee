/* The run tracker's loader and reader (run_tracker.h). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "libbpf_dl.h"
#include "run_tracker.h"

/* Must match `struct config` and the size of `ran` in bpf/run-tracker.bpf.c. */
struct config {
  uint32_t level;
  uint32_t inum;
};
#define RAN_MAX_ENTRIES 32768

struct run_tracker {
  struct bpf_object *obj;
  struct bpf_link *link;
  struct bpf_map *ran, *on_cpu, *overflows;
  int cpus;
  uint64_t *per_cpu; /* one value per possible CPU (per-CPU values are 8-byte slots) */
  uint64_t overflows_seen;
  int32_t *pids;
  size_t cap;
};

void run_tracker_close(struct run_tracker *t) {
  if (t == NULL) return;
  if (t->link != NULL) libbpf.link_destroy(t->link);
  if (t->obj != NULL) libbpf.object_close(t->obj);
  free(t->per_cpu);
  free(t->pids);
  free(t);
}

static int fail(struct run_tracker *t, int err, const char *what, char *why, size_t why_len) {
  err = libbpf_dl_failure(err, what, why, why_len);
  run_tracker_close(t);
  return err;
}

int run_tracker_open(const char *path, uint32_t level, uint32_t inum, struct run_tracker **out, char *why,
                     size_t why_len) {
  *out = NULL;
  const char *no_lib = libbpf_dl_error();
  if (no_lib != NULL) {
    snprintf(why, why_len, "%s", no_lib);
    return ELIBACC;
  }
  struct run_tracker *t = calloc(1, sizeof *t);
  if (t == NULL) return ENOMEM;
  t->cpus = libbpf.possible_cpus();
  t->cap = RAN_MAX_ENTRIES + (t->cpus > 0 ? (size_t)t->cpus : 0);
  t->pids = malloc(t->cap * sizeof *t->pids);
  if (t->cpus > 0) t->per_cpu = calloc((size_t)t->cpus, sizeof *t->per_cpu);
  if (t->pids == NULL || (t->cpus > 0 && t->per_cpu == NULL)) {
    run_tracker_close(t);
    return ENOMEM;
  }
  libbpf_dl_begin_load();
  int err = 0;
  if (t->cpus <= 0) {
    err = fail(t, -t->cpus, "cannot count the possible CPUs", why, why_len);
    goto out;
  }
  err = libbpf_dl_load_object(path, &t->obj, NULL, NULL, why, why_len);
  if (err != 0) {
    run_tracker_close(t);
    goto out;
  }
  struct bpf_program *prog = libbpf.find_program(t->obj, "note_switch");
  struct bpf_map *config = libbpf.find_map(t->obj, "config");
  t->ran = libbpf.find_map(t->obj, "ran");
  t->on_cpu = libbpf.find_map(t->obj, "on_cpu");
  t->overflows = libbpf.find_map(t->obj, "overflows");
  if (prog == NULL || config == NULL || t->ran == NULL || t->on_cpu == NULL || t->overflows == NULL) {
    err = fail(t, ENOENT, "the BPF object lacks note_switch or one of its maps", why, why_len);
    goto out;
  }
  uint32_t zero = 0;
  struct config cfg = {.level = level, .inum = inum};
  if (libbpf.map_update(config, &zero, sizeof zero, &cfg, sizeof cfg, 0) != 0) {
    err = fail(t, errno, "cannot configure the run tracker", why, why_len);
    goto out;
  }
  t->link = libbpf.program_attach(prog);
  if (t->link == NULL) {
    err = fail(t, errno, "cannot attach to sched:sched_switch", why, why_len);
    goto out;
  }
  /* Marks made before this point are of no use: the caller scans everything first. */
  *out = t;
out:
  libbpf_dl_end_load();
  return err;
}

static int compare_pid(const void *a, const void *b) {
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return (x > y) - (x < y);
}

static int push(struct run_tracker *t, size_t *count, int32_t pid) {
  if (*count == t->cap) return ENOSPC;
  t->pids[(*count)++] = pid;
  return 0;
}

int run_tracker_take(struct run_tracker *t, const int32_t **pids, size_t *count, bool *complete) {
  *pids = t->pids;
  *count = 0;
  *complete = false;
  /* The order matters (FD_INDEX.md, "With the run tracker"): who is on a CPU first, then the
   * marks, then the overflow count. */
  uint32_t zero = 0;
  if (libbpf.map_lookup(t->on_cpu, &zero, sizeof zero, t->per_cpu, (size_t)t->cpus * sizeof *t->per_cpu, 0) != 0)
    return errno > 0 ? errno : EIO;
  size_t n = 0;
  for (int cpu = 0; cpu < t->cpus; cpu++) {
    int32_t pid = (int32_t)(uint32_t)t->per_cpu[cpu];
    if (pid > 0 && push(t, &n, pid) != 0) return ENOSPC;
  }
  size_t first_mark = n;
  uint32_t key = 0, next = 0;
  const void *cur = NULL;
  bool all_read = true;
  for (;;) {
    if (libbpf.map_next_key(t->ran, cur, &next, sizeof next) != 0) {
      if (errno == ENOENT) break;
      return errno > 0 ? errno : EIO;
    }
    /* More keys than the map holds: it changes faster than it is read. Take what was read and
     * call the result incomplete. */
    if (push(t, &n, (int32_t)next) != 0) {
      all_read = false;
      break;
    }
    key = next;
    cur = &key;
  }
  for (size_t i = first_mark; i < n; i++) {
    uint32_t mark = (uint32_t)t->pids[i];
    if (libbpf.map_delete(t->ran, &mark, sizeof mark, 0) != 0 && errno != ENOENT) return errno > 0 ? errno : EIO;
  }
  uint64_t lost = 0;
  if (libbpf.map_lookup(t->overflows, &zero, sizeof zero, &lost, sizeof lost, 0) != 0) return errno > 0 ? errno : EIO;
  *complete = all_read && lost == t->overflows_seen;
  t->overflows_seen = lost;
  /* Sorted only now: the marks were deleted by the keys as read. */
  qsort(t->pids, n, sizeof *t->pids, compare_pid);
  *count = n;
  return 0;
}
