/*
 * The connection recorder's loader (bpf_recorder.h). Why dlopen rather than linking libbpf:
 * see the header. The declarations below are libbpf 1.x's public ABI (libbpf.h, bpf.h), all
 * of it stable since libbpf 1.0: opaque structs and plain functions that return NULL or a
 * negative errno and set errno.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bpf_recorder.h"

struct bpf_object;
struct bpf_program;
struct bpf_map;
struct bpf_link;
struct ring_buffer;
typedef int (*ring_buffer_sample_fn)(void *ctx, void *data, size_t size);
typedef int (*libbpf_print_fn_t)(int level, const char *format, va_list args);

/* The libbpf functions used, resolved once by load_libbpf. */
static struct {
  struct bpf_object *(*object_open_file)(const char *path, const void *opts);
  int (*object_load)(struct bpf_object *obj);
  void (*object_close)(struct bpf_object *obj);
  struct bpf_program *(*find_program)(const struct bpf_object *obj, const char *name);
  struct bpf_map *(*find_map)(const struct bpf_object *obj, const char *name);
  struct bpf_link *(*program_attach)(const struct bpf_program *prog);
  int (*link_destroy)(struct bpf_link *link);
  int (*map_fd)(const struct bpf_map *map);
  int (*map_lookup)(const struct bpf_map *map, const void *key, size_t key_sz, void *value, size_t value_sz,
                    uint64_t flags);
  struct ring_buffer *(*ring_new)(int map_fd, ring_buffer_sample_fn cb, void *ctx, const void *opts);
  int (*ring_consume)(struct ring_buffer *rb);
  void (*ring_free)(struct ring_buffer *rb);
  libbpf_print_fn_t (*set_print)(libbpf_print_fn_t fn);
} lib;

static pthread_once_t lib_once = PTHREAD_ONCE_INIT;
static char lib_error[256];

/* libbpf's last warning: libbpf prints through one process-wide callback, so this is the one
 * static of the part (only written while recorder_open runs, under open_lock). */
static pthread_mutex_t open_lock = PTHREAD_MUTEX_INITIALIZER;
static char last_warning[512];

static int keep_warning(int level, const char *format, va_list args) {
  if (level != 0 /* LIBBPF_WARN */) return 0;
  char line[512];
  vsnprintf(line, sizeof line, format, args);
  size_t n = strlen(line);
  while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == ' ')) line[--n] = '\0';
  /* libbpf warns that it could not raise RLIMIT_MEMLOCK even where the kernel accounts BPF
   * memory to the cgroup and needs no such limit: a hint, not the cause of anything. */
  if (strstr(line, "RLIMIT_MEMLOCK") != NULL) return 0;
  /* The first refusal names the cause; what follows is usually "failed to load object". */
  if (last_warning[0] == '\0' && n > 0) snprintf(last_warning, sizeof last_warning, "%s", line);
  return 0;
}

#define RESOLVE(field, name)                                                                   \
  do {                                                                                         \
    *(void **)&lib.field = dlsym(handle, name);                                                \
    if (lib.field == NULL) {                                                                   \
      snprintf(lib_error, sizeof lib_error, "libbpf.so.1 lacks %s (libbpf 1.0 or later is needed)", name); \
      return;                                                                                  \
    }                                                                                          \
  } while (0)

static void load_libbpf(void) {
  void *handle = dlopen("libbpf.so.1", RTLD_NOW | RTLD_LOCAL);
  if (handle == NULL) {
    const char *e = dlerror();
    snprintf(lib_error, sizeof lib_error, "%s", e != NULL ? e : "libbpf.so.1 cannot be loaded");
    return;
  }
  RESOLVE(object_open_file, "bpf_object__open_file");
  RESOLVE(object_load, "bpf_object__load");
  RESOLVE(object_close, "bpf_object__close");
  RESOLVE(find_program, "bpf_object__find_program_by_name");
  RESOLVE(find_map, "bpf_object__find_map_by_name");
  RESOLVE(program_attach, "bpf_program__attach");
  RESOLVE(link_destroy, "bpf_link__destroy");
  RESOLVE(map_fd, "bpf_map__fd");
  RESOLVE(map_lookup, "bpf_map__lookup_elem");
  RESOLVE(ring_new, "ring_buffer__new");
  RESOLVE(ring_consume, "ring_buffer__consume");
  RESOLVE(ring_free, "ring_buffer__free");
  RESOLVE(set_print, "libbpf_set_print");
  lib.set_print(keep_warning);
  /* The handle stays open for the life of the process: the functions above point into it. */
}

const char *recorder_libbpf_error(void) {
  pthread_once(&lib_once, load_libbpf);
  return lib_error[0] != '\0' ? lib_error : NULL;
}

/* Must match `struct record` of bpf/connection-recorder.bpf.c. */
#define RECORD_SIZE RECORDER_RECORD_SIZE

struct bpf_recorder {
  struct bpf_object *obj;
  struct bpf_link *link;
  struct bpf_map *losses;
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
  if (r->ring != NULL) lib.ring_free(r->ring);
  if (r->link != NULL) lib.link_destroy(r->link);
  if (r->obj != NULL) lib.object_close(r->obj);
  free(r);
}

/* Records the failing step: errno (positive) and libbpf's warning, or `what`. */
static int fail(struct bpf_recorder *r, int err, const char *what, char *why, size_t why_len) {
  if (err <= 0) err = EINVAL;
  if (last_warning[0] != '\0')
    snprintf(why, why_len, "%s (%s)", what, last_warning);
  else
    snprintf(why, why_len, "%s", what);
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
  pthread_mutex_lock(&open_lock);
  last_warning[0] = '\0';
  int err = 0;
  r->obj = lib.object_open_file(path, NULL);
  if (r->obj == NULL) {
    err = fail(r, errno, "cannot open the BPF object", why, why_len);
    goto out;
  }
  if (lib.object_load(r->obj) != 0) {
    err = fail(r, errno, "the kernel refused the BPF program", why, why_len);
    goto out;
  }
  struct bpf_program *prog = lib.find_program(r->obj, "record_state");
  struct bpf_map *records = lib.find_map(r->obj, "records");
  r->losses = lib.find_map(r->obj, "losses");
  if (prog == NULL || records == NULL || r->losses == NULL) {
    err = fail(r, ENOENT, "the BPF object lacks record_state, records or losses", why, why_len);
    goto out;
  }
  r->link = lib.program_attach(prog);
  if (r->link == NULL) {
    err = fail(r, errno, "cannot attach to sock:inet_sock_set_state", why, why_len);
    goto out;
  }
  r->ring = lib.ring_new(lib.map_fd(records), keep_record, r, NULL);
  if (r->ring == NULL) {
    err = fail(r, errno, "cannot map the ring buffer", why, why_len);
    goto out;
  }
  *out = r;
out:
  pthread_mutex_unlock(&open_lock);
  return err;
}

int recorder_drain(struct bpf_recorder *r, uint8_t *dst, size_t cap, size_t *len) {
  *len = 0;
  if (cap < RECORD_SIZE) return EINVAL;
  r->dst = dst;
  r->len = 0;
  r->cap = cap;
  int n = lib.ring_consume(r->ring);
  *len = r->len;
  r->dst = NULL;
  if (n == BUFFER_FULL) return 0;
  return n < 0 ? -n : 0;
}

int recorder_losses(struct bpf_recorder *r, uint64_t totals[RECORDER_LOSS_KINDS]) {
  for (uint32_t i = 0; i < RECORDER_LOSS_KINDS; i++) {
    if (lib.map_lookup(r->losses, &i, sizeof i, &totals[i], sizeof totals[i], 0) != 0) return errno > 0 ? errno : EIO;
  }
  return 0;
}
