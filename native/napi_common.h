/*
 * N-API helpers shared by the binding files (*_napi.c; defined in napi_common.c): error
 * throwing, argument and option reading and property setting, so every export fails the same
 * way. The plain C parts (sock_diag.c, fd_scan.c, fd_index*.c, socket_fd.c) never include it.
 */
#ifndef STOPD_NAPI_COMMON_H
#define STOPD_NAPI_COMMON_H

#include <node_api.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Runs an N-API call; on failure throws (unless already pending) and returns NULL. */
#define CHECK_NAPI(env, call)                                                                  \
  do {                                                                                         \
    if ((call) != napi_ok) {                                                                   \
      throw_napi_failure(env);                                                                 \
      return NULL;                                                                             \
    }                                                                                          \
  } while (0)

/* Rethrows the pending N-API failure, if none is pending yet. */
void throw_napi_failure(napi_env env);

/* Throws `Error(what: strerror(err))` with `code` set to the errno name (ENOENT, EPERM, ...). */
void throw_errno(napi_env env, const char *what, int err);

/* Fetches exactly `want` arguments. Returns false with an exception pending. */
bool get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv);

/* Fetches between `min` and `max` arguments (missing ones read as undefined). Returns false
 * with an exception pending. */
bool get_some_args(napi_env env, napi_callback_info info, size_t min, size_t max, napi_value *argv);

/* Reads a boolean option (kept as is when absent). Returns false with an exception pending. */
bool get_bool_option(napi_env env, napi_value options, const char *key, bool *out);

/* Reads a non-negative integer option up to `max` (kept as is when absent). Returns false with
 * an exception pending. */
bool get_count_option(napi_env env, napi_value options, const char *key, double max, double *out);

/* Reads `options.namedPipes` (default true) of scanFds and fdIndexCreate. Returns false with
 * an exception pending. */
bool get_named_pipes(napi_env env, napi_value options, int *out);

/* Copies a procRoot argument into a malloc'ed string. Returns NULL with an exception pending. */
char *get_proc_root(napi_env env, napi_value value);
/* Reads a path option into a malloc'ed string (*out NULL when absent). Returns false with an
 * exception pending. */
bool get_path_option(napi_env env, napi_value options, const char *key, char **out);

/* Sets `obj[key]` to an unsigned 32-bit number. */
napi_status set_u32(napi_env env, napi_value obj, const char *key, uint32_t value);

/* Sets `obj[key]` to a Buffer holding a copy of `bytes`. */
napi_status set_buffer(napi_env env, napi_value obj, const char *key, const uint8_t *bytes, size_t len);

/* A JS typed array holding a copy of `count` items of `size` bytes. */
napi_status make_typed(napi_env env, napi_typedarray_type type, const void *items, size_t count, size_t size,
                       napi_value *out);

#endif
