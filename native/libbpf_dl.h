/*
 * libbpf_dl: libbpf 1.x opened at run time with dlopen("libbpf.so.1"), shared by the BPF parts
 * of the addon (bpf_recorder.c, run_tracker.c). Why dlopen rather than linking libbpf: the
 * addon then builds without libbpf's headers (a fresh Debian has libbpf1 but not libbpf-dev)
 * and works wherever the library and the kernel allow, and everything else works where they
 * do not. The declarations are libbpf 1.x's public ABI (libbpf.h, bpf.h), all of it stable
 * since libbpf 1.0: opaque structs and plain functions that return NULL or a negative errno
 * and set errno.
 */
#ifndef STOPD_LIBBPF_DL_H
#define STOPD_LIBBPF_DL_H

#include <stddef.h>
#include <stdint.h>

struct bpf_object;
struct bpf_program;
struct bpf_map;
struct bpf_link;
struct ring_buffer;
typedef int (*ring_buffer_sample_fn)(void *ctx, void *data, size_t size);

/* The libbpf functions used, resolved once by libbpf_dl_error. */
struct libbpf_functions {
  struct bpf_object *(*object_open_file)(const char *path, const void *opts);
  int (*object_load)(struct bpf_object *obj);
  void (*object_close)(struct bpf_object *obj);
  struct bpf_program *(*find_program)(const struct bpf_object *obj, const char *name);
  struct bpf_map *(*find_map)(const struct bpf_object *obj, const char *name);
  struct bpf_link *(*program_attach)(const struct bpf_program *prog);
  int (*link_destroy)(struct bpf_link *link);
  int (*map_fd)(const struct bpf_map *map);
  int (*map_set_max_entries)(struct bpf_map *map, uint32_t max_entries);
  int (*map_lookup)(const struct bpf_map *map, const void *key, size_t key_sz, void *value, size_t value_sz,
                    uint64_t flags);
  int (*map_update)(const struct bpf_map *map, const void *key, size_t key_sz, const void *value, size_t value_sz,
                    uint64_t flags);
  int (*map_delete)(const struct bpf_map *map, const void *key, size_t key_sz, uint64_t flags);
  int (*map_next_key)(const struct bpf_map *map, const void *cur_key, void *next_key, size_t key_sz);
  int (*possible_cpus)(void);
  int (*program_fd)(const struct bpf_program *prog);
  int (*obj_get_info_by_fd)(int fd, void *info, uint32_t *info_len);
  struct ring_buffer *(*ring_new)(int map_fd, ring_buffer_sample_fn cb, void *ctx, const void *opts);
  int (*ring_consume)(struct ring_buffer *rb);
  void (*ring_free)(struct ring_buffer *rb);
};

/* Valid once libbpf_dl_error() returned NULL. */
extern struct libbpf_functions libbpf;

/* Opens libbpf once. Returns NULL, or why it cannot be used (dlerror text, a missing symbol). */
const char *libbpf_dl_error(void);

/* libbpf prints through one process-wide callback: loads are serialised between these two,
 * and libbpf_dl_warning() gives the first warning printed in between ("" when none). */
void libbpf_dl_begin_load(void);
const char *libbpf_dl_warning(void);
void libbpf_dl_end_load(void);

/* Writes "what (libbpf's first warning)", or `what`, into `why`; returns err, or EINVAL when
 * err is not a positive errno. Call between begin and end. */
int libbpf_dl_failure(int err, const char *what, char *why, size_t why_len);

/* Opens and loads the object at `path` into *obj (left NULL on failure, or set to the object
 * to close). `prepare`, when not NULL, runs between opening and loading (to size maps: it
 * returns 0 or a positive errno with the reason in `why`). Returns 0, or a positive errno with
 * the reason in `why` (libbpf_dl_failure). Call between begin and end. */
int libbpf_dl_load_object(const char *path, struct bpf_object **obj, int (*prepare)(struct bpf_object *obj, void *ctx, char *why, size_t why_len),
                          void *ctx, char *why, size_t why_len);

#endif
