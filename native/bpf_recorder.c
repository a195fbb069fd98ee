/*
 * The connection recorder's loader (bpf_recorder.h), over libbpf opened at run time
 * (libbpf_dl.h). It maps the program's per-CPU rings (`records`, `cursors`) into this process;
 * recorder_merge.c reads them.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/bpf.h>

#include "bpf_recorder.h"
#include "libbpf_dl.h"
#include "recorder_merge.h"

const char *recorder_libbpf_error(void) {
  return libbpf_dl_error();
}

struct bpf_recorder {
  struct bpf_object *obj;
  struct bpf_link *link;
  struct bpf_map *losses;
  int prog_fd;
  /* The program's wake-ups (its `wakeups` ring buffer), and that map's descriptor. */
  struct ring_buffer *wakeups;
  int wake_fd;
  uint32_t cpus, per_cpu;
  struct recorder_cursor *cursors;
  size_t cursors_bytes;
  struct recorder_record *rings;
  size_t rings_bytes;
  /* Reads the rings once they are mapped (merge.batch is NULL until then). */
  struct recorder_merge merge;
};

void recorder_close(struct bpf_recorder *r) {
  if (r == NULL) return;
  if (r->wakeups != NULL) libbpf.ring_free(r->wakeups);
  if (r->link != NULL) libbpf.link_destroy(r->link);
  if (r->cursors != NULL) munmap(r->cursors, r->cursors_bytes);
  if (r->rings != NULL) munmap(r->rings, r->rings_bytes);
  if (r->obj != NULL) libbpf.object_close(r->obj);
  recorder_merge_free(&r->merge);
  free(r);
}

/* Records the failing step (libbpf_dl_failure) and frees what was made. */
static int fail(struct bpf_recorder *r, int err, const char *what, char *why, size_t why_len) {
  err = libbpf_dl_failure(err, what, why, why_len);
  recorder_close(r);
  return err;
}

/* Sizes the rings before the object is loaded: one cursor per possible CPU, per_cpu records each. */
static int size_rings(struct bpf_object *obj, void *ctx, char *why, size_t why_len) {
  struct bpf_recorder *r = ctx;
  struct bpf_map *cursors = libbpf.find_map(obj, "cursors");
  struct bpf_map *records = libbpf.find_map(obj, "records");
  if (cursors == NULL || records == NULL) {
    snprintf(why, why_len, "the BPF object lacks its rings (cursors, records)");
    return ENOENT;
  }
  if (libbpf.map_set_max_entries(cursors, r->cpus) != 0 || libbpf.map_set_max_entries(records, r->cpus * r->per_cpu) != 0) {
    return libbpf_dl_failure(errno, "cannot size the recorder's rings", why, why_len);
  }
  return 0;
}

/* The map's values, mapped shared into this process; NULL with errno set. */
static void *map_values(struct bpf_map *map, size_t bytes) {
  void *at = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, libbpf.map_fd(map), 0);
  return at == MAP_FAILED ? NULL : at;
}

static size_t page_round(size_t bytes) {
  long page = sysconf(_SC_PAGESIZE);
  size_t p = page > 0 ? (size_t)page : 4096;
  return (bytes + p - 1) / p * p;
}

/* A wake-up's content (the CPU) does not matter: the reader drains every ring. */
static int ignore_wakeup(void *ctx, void *data, size_t size) {
  (void)ctx;
  (void)data;
  (void)size;
  return 0;
}

int recorder_open(const char *path, uint32_t records_per_cpu, struct bpf_recorder **out, char *why, size_t why_len) {
  *out = NULL;
  const char *no_lib = recorder_libbpf_error();
  if (no_lib != NULL) {
    snprintf(why, why_len, "%s", no_lib);
    return ELIBACC;
  }
  if (records_per_cpu < RECORDER_MIN_RECORDS_PER_CPU || records_per_cpu > RECORDER_MAX_RECORDS_PER_CPU ||
      (records_per_cpu & (records_per_cpu - 1)) != 0) {
    snprintf(why, why_len, "records per CPU must be a power of two from %u to %u, not %u", RECORDER_MIN_RECORDS_PER_CPU,
             RECORDER_MAX_RECORDS_PER_CPU, records_per_cpu);
    return EINVAL;
  }
  int cpus = libbpf.possible_cpus();
  if (cpus <= 0) {
    snprintf(why, why_len, "cannot count the possible CPUs (/sys/devices/system/cpu/possible)");
    return cpus < 0 ? -cpus : EIO;
  }
  /* The map's index is a u32, and the rings (and the batch, as large) stay below 4 GiB each. */
  if ((uint64_t)cpus * records_per_cpu * RECORDER_RECORD_SIZE >= (1ULL << 32)) {
    snprintf(why, why_len, "rings of %u records for each of %d CPUs would need more than 4 GiB; ask for fewer records per CPU", records_per_cpu, cpus);
    return EINVAL;
  }
  struct bpf_recorder *r = calloc(1, sizeof *r);
  if (r == NULL) return ENOMEM;
  r->cpus = (uint32_t)cpus;
  r->per_cpu = records_per_cpu;
  size_t total = (size_t)r->cpus * r->per_cpu;
  libbpf_dl_begin_load();
  int err = libbpf_dl_load_object(path, &r->obj, size_rings, r, why, why_len);
  if (err != 0) {
    recorder_close(r);
    goto out;
  }
  struct bpf_program *prog = libbpf.find_program(r->obj, "record_state");
  struct bpf_map *cursors = libbpf.find_map(r->obj, "cursors");
  struct bpf_map *records = libbpf.find_map(r->obj, "records");
  struct bpf_map *wakeups = libbpf.find_map(r->obj, "wakeups");
  r->losses = libbpf.find_map(r->obj, "losses");
  if (prog == NULL || cursors == NULL || records == NULL || wakeups == NULL || r->losses == NULL) {
    err = fail(r, ENOENT, "the BPF object lacks record_state, cursors, records, wakeups or losses", why, why_len);
    goto out;
  }
  r->wake_fd = libbpf.map_fd(wakeups);
  r->wakeups = libbpf.ring_new(r->wake_fd, ignore_wakeup, NULL, NULL);
  if (r->wakeups == NULL) {
    err = fail(r, errno, "cannot map the recorder's wake-up ring buffer", why, why_len);
    goto out;
  }
  r->prog_fd = libbpf.program_fd(prog);
  r->cursors_bytes = page_round((size_t)r->cpus * sizeof *r->cursors);
  r->rings_bytes = page_round(total * sizeof *r->rings);
  r->cursors = map_values(cursors, r->cursors_bytes);
  r->rings = map_values(records, r->rings_bytes);
  if (r->cursors == NULL || r->rings == NULL) {
    err = fail(r, errno, "cannot map the recorder's rings", why, why_len);
    goto out;
  }
  if (recorder_merge_init(&r->merge, r->cpus, r->per_cpu, r->cursors, r->rings) != 0) {
    err = fail(r, ENOMEM, "cannot allocate the recorder's read batch", why, why_len);
    goto out;
  }
  /* The program writes nothing before its ring has a mask: set them all before attaching. */
  for (uint32_t cpu = 0; cpu < r->cpus; cpu++) r->cursors[cpu].mask = r->per_cpu - 1;
  r->link = libbpf.program_attach(prog);
  if (r->link == NULL) {
    err = fail(r, errno, "cannot attach to sock:inet_sock_set_state", why, why_len);
    goto out;
  }
  *out = r;
out:
  libbpf_dl_end_load();
  return err;
}

int recorder_wake_fd(struct bpf_recorder *r) {
  return r->wake_fd;
}

int recorder_take_wakeups(struct bpf_recorder *r) {
  int n = libbpf.ring_consume(r->wakeups);
  return n < 0 ? -n : 0;
}

int recorder_drain(struct bpf_recorder *r, uint8_t *dst, size_t cap, bool last, size_t *len) {
  *len = 0;
  if (cap < RECORDER_RECORD_SIZE) return EINVAL;
  *len = recorder_merge_read(&r->merge, dst, cap, last);
  return 0;
}

int recorder_losses(struct bpf_recorder *r, uint64_t totals[RECORDER_LOSS_KINDS]) {
  for (uint32_t i = 0; i < RECORDER_LOSS_RECURSION; i++) {
    if (libbpf.map_lookup(r->losses, &i, sizeof i, &totals[i], sizeof totals[i], 0) != 0) return errno > 0 ? errno : EIO;
  }
  /* A kernel older than the field leaves it 0 (it fills only the part of the struct it knows). */
  struct bpf_prog_info info;
  uint32_t info_len = sizeof info;
  memset(&info, 0, sizeof info);
  if (libbpf.obj_get_info_by_fd(r->prog_fd, &info, &info_len) != 0) return errno > 0 ? errno : EIO;
  totals[RECORDER_LOSS_RECURSION] = info.recursion_misses;
  return 0;
}
