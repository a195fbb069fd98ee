/* libbpf opened at run time (libbpf_dl.h). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "libbpf_dl.h"

typedef int (*libbpf_print_fn_t)(int level, const char *format, va_list args);

struct libbpf_functions libbpf;

static pthread_once_t lib_once = PTHREAD_ONCE_INIT;
static char lib_error[256];

/* The first warning of the load in progress (only written while one runs, under load_lock). */
static pthread_mutex_t load_lock = PTHREAD_MUTEX_INITIALIZER;
static char first_warning[512];

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
  if (first_warning[0] == '\0' && n > 0) snprintf(first_warning, sizeof first_warning, "%s", line);
  return 0;
}

#define RESOLVE(field, name)                                                                   \
  do {                                                                                         \
    *(void **)&libbpf.field = dlsym(handle, name);                                             \
    if (libbpf.field == NULL) {                                                                \
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
  libbpf_print_fn_t (*set_print)(libbpf_print_fn_t fn);
  *(void **)&set_print = dlsym(handle, "libbpf_set_print");
  if (set_print == NULL) {
    snprintf(lib_error, sizeof lib_error, "libbpf.so.1 lacks libbpf_set_print (libbpf 1.0 or later is needed)");
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
  RESOLVE(map_set_max_entries, "bpf_map__set_max_entries");
  RESOLVE(map_lookup, "bpf_map__lookup_elem");
  RESOLVE(map_update, "bpf_map__update_elem");
  RESOLVE(map_delete, "bpf_map__delete_elem");
  RESOLVE(map_next_key, "bpf_map__get_next_key");
  RESOLVE(possible_cpus, "libbpf_num_possible_cpus");
  RESOLVE(program_fd, "bpf_program__fd");
  RESOLVE(obj_get_info_by_fd, "bpf_obj_get_info_by_fd");
  RESOLVE(ring_new, "ring_buffer__new");
  RESOLVE(ring_consume, "ring_buffer__consume");
  RESOLVE(ring_free, "ring_buffer__free");
  set_print(keep_warning);
  /* The handle stays open for the life of the process: the functions above point into it. */
}

const char *libbpf_dl_error(void) {
  pthread_once(&lib_once, load_libbpf);
  return lib_error[0] != '\0' ? lib_error : NULL;
}

void libbpf_dl_begin_load(void) {
  pthread_mutex_lock(&load_lock);
  first_warning[0] = '\0';
}

const char *libbpf_dl_warning(void) {
  return first_warning;
}

void libbpf_dl_end_load(void) {
  pthread_mutex_unlock(&load_lock);
}

int libbpf_dl_failure(int err, const char *what, char *why, size_t why_len) {
  if (err <= 0) err = EINVAL;
  if (first_warning[0] != '\0')
    snprintf(why, why_len, "%s (%s)", what, first_warning);
  else
    snprintf(why, why_len, "%s", what);
  return err;
}

int libbpf_dl_load_object(const char *path, struct bpf_object **obj, int (*prepare)(struct bpf_object *obj, void *ctx, char *why, size_t why_len),
                          void *ctx, char *why, size_t why_len) {
  *obj = libbpf.object_open_file(path, NULL);
  if (*obj == NULL) return libbpf_dl_failure(errno, "cannot open the BPF object", why, why_len);
  if (prepare != NULL) {
    int err = prepare(*obj, ctx, why, why_len);
    if (err != 0) return err;
  }
  if (libbpf.object_load(*obj) != 0) return libbpf_dl_failure(errno, "the kernel refused the BPF program", why, why_len);
  return 0;
}
