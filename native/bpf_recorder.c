/*
 * The connection recorder's loader (bpf_recorder.h), over libbpf opened at run time
 * (libbpf_dl.h).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <linux/bpf.h>

#include "bpf_recorder.h"
#include "libbpf_dl.h"

const char *recorder_libbpf_error(void) {
  return libbpf_dl_error();
}

/* Must match `struct record` of bpf/connection-recorder.bpf.c. */
#define RECORD_SIZE RECORDER_RECORD_SIZE

struct bpf_recorder {
  struct bpf_object *obj;
  struct bpf_link *link;
  struct bpf_map *losses;
  int prog_fd;
  struct ring_buffer *ring;
  /* The caller's buffer while recorder_drain runs: records are copied straight into it. */
  uint8_t *dst;
  size_t len, cap;
};

/* Stops ring_buffer__consume once the caller's buffer is full (a negative "error" is the only
 * way to stop it early; libbpf has already consumed the record it was called with, and that
 * record is in the buffer, so nothing is skipped). */
#define BUFFER_FULL (-ENOSPC)

static int keep_record(void *ctx, void *data, size_t size) {
  struct bpf_recorder *r = ctx;
  if (size != RECORD_SIZE) return 0; /* not ours: cannot happen with the shipped object */
  memcpy(r->dst + r->len, data, size);
  r->len += size;
  return r->len + RECORD_SIZE > r->cap ? BUFFER_FULL : 0;
}

void recorder_close(struct bpf_recorder *r) {
  if (r == NULL) return;
  if (r->ring != NULL) libbpf.ring_free(r->ring);
  if (r->link != NULL) libbpf.link_destroy(r->link);
  if (r->obj != NULL) libbpf.object_close(r->obj);
  free(r);
}

/* Records the failing step (libbpf_dl_failure) and frees what was made. */
static int fail(struct bpf_recorder *r, int err, const char *what, char *why, size_t why_len) {
  err = libbpf_dl_failure(err, what, why, why_len);
  recorder_close(r);
  return err;
}

int recorder_open(const char *path, struct bpf_recorder **out, char *why, size_t why_len) {
  *out = NULL;
  const char *no_lib = recorder_libbpf_error();
  if (no_lib != NULL) {
    snprintf(why, why_len, "%s", no_lib);
    return ELIBACC;
  }
  struct bpf_recorder *r = calloc(1, sizeof *r);
  if (r == NULL) return ENOMEM;
  libbpf_dl_begin_load();
  int err = 0;
  err = libbpf_dl_load_object(path, &r->obj, why, why_len);
  if (err != 0) {
    recorder_close(r);
    goto out;
  }
  struct bpf_program *prog = libbpf.find_program(r->obj, "record_state");
  struct bpf_map *records = libbpf.find_map(r->obj, "records");
  r->losses = libbpf.find_map(r->obj, "losses");
  if (prog == NULL || records == NULL || r->losses == NULL) {
    err = fail(r, ENOENT, "the BPF object lacks record_state, records or losses", why, why_len);
    goto out;
  }
  r->prog_fd = libbpf.program_fd(prog);
  r->link = libbpf.program_attach(prog);
  if (r->link == NULL) {
    err = fail(r, errno, "cannot attach to sock:inet_sock_set_state", why, why_len);
    goto out;
  }
  r->ring = libbpf.ring_new(libbpf.map_fd(records), keep_record, r, NULL);
  if (r->ring == NULL) {
    err = fail(r, errno, "cannot map the ring buffer", why, why_len);
    goto out;
  }
  *out = r;
out:
  libbpf_dl_end_load();
  return err;
}

int recorder_drain(struct bpf_recorder *r, uint8_t *dst, size_t cap, size_t *len) {
  *len = 0;
  if (cap < RECORD_SIZE) return EINVAL;
  r->dst = dst;
  r->len = 0;
  r->cap = cap;
  int n = libbpf.ring_consume(r->ring);
  *len = r->len;
  r->dst = NULL;
  if (n == BUFFER_FULL) return 0;
  return n < 0 ? -n : 0;
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
