/*
 * N-API helpers shared by the addon's source files (defined in stopd_native.c): error
 * throwing, argument fetching and property setting, so every export fails the same way.
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

/* Sets `obj[key]` to a Buffer holding a copy of `bytes`. */
napi_status set_buffer(napi_env env, napi_value obj, const char *key, const uint8_t *bytes, size_t len);

#endif
