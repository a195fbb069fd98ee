/*
 * N-API helpers shared by every binding file (*_napi.c): error throwing, argument and option
 * reading, property setting, so every export fails the same way. Declared in napi_common.h.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "napi_common.h"

void throw_napi_failure(napi_env env) {
  bool pending = false;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending) return;
  const napi_extended_error_info *info = NULL;
  napi_get_last_error_info(env, &info);
  const char *msg = info != NULL && info->error_message != NULL ? info->error_message : "N-API call failed";
  napi_throw_error(env, "ERR_STOPD_NATIVE", msg);
}

void throw_errno(napi_env env, const char *what, int err) {
  char text[128];
  char msg[320];
  const char *name = NULL;
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  name = strerrorname_np(err);
#endif
  /* GNU strerror_r: thread-safe and returns the text (which may not be `text` itself). */
  const char *why = strerror_r(err, text, sizeof text);
  snprintf(msg, sizeof msg, "%s: %s", what, why);
  napi_throw_error(env, name != NULL ? name : "ERR_STOPD_NATIVE", msg);
}

bool get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  return get_some_args(env, info, want, want, argv);
}


napi_status set_u32(napi_env env, napi_value obj, const char *key, uint32_t value) {
  napi_value v;
  napi_status s = napi_create_uint32(env, value, &v);
  return s == napi_ok ? napi_set_named_property(env, obj, key, v) : s;
}

napi_status set_buffer(napi_env env, napi_value obj, const char *key, const uint8_t *bytes, size_t len) {
  napi_value v;
  void *data = NULL;
  napi_status s = napi_create_buffer_copy(env, len, bytes, &data, &v);
  return s == napi_ok ? napi_set_named_property(env, obj, key, v) : s;
}

/* A JS typed array holding a copy of `count` items of `size` bytes. */
napi_status make_typed(napi_env env, napi_typedarray_type type, const void *items, size_t count, size_t size,
                       napi_value *out) {
  void *data = NULL;
  napi_value buffer;
  napi_status st = napi_create_arraybuffer(env, count * size, &data, &buffer);
  if (st != napi_ok) return st;
  if (count > 0) memcpy(data, items, count * size);
  return napi_create_typedarray(env, type, count, buffer, 0, out);
}

/* The type of `options` when it is an object; false (exception pending) when neither an object
 * nor undefined/null. *present says whether there is an object to read. */
static bool check_options(napi_env env, napi_value options, bool *present) {
  napi_valuetype type;
  *present = false;
  if (napi_typeof(env, options, &type) != napi_ok) {
    throw_napi_failure(env);
    return false;
  }
  if (type == napi_undefined || type == napi_null) return true;
  if (type != napi_object) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "Options must be an object");
    return false;
  }
  *present = true;
  return true;
}

/* Looks up `options[key]`: 1 with *v and *type set when it is there, 0 when `options` is
 * undefined/null or the key is absent or undefined, -1 with an exception pending. */
static int read_option(napi_env env, napi_value options, const char *key, napi_value *v, napi_valuetype *type) {
  bool present;
  if (!check_options(env, options, &present)) return -1;
  if (!present) return 0;
  if (napi_get_named_property(env, options, key, v) != napi_ok || napi_typeof(env, *v, type) != napi_ok) {
    throw_napi_failure(env);
    return -1;
  }
  return *type == napi_undefined ? 0 : 1;
}

/* Reads a boolean option (kept as is when absent). Returns false with an exception pending. */
bool get_bool_option(napi_env env, napi_value options, const char *key, bool *out) {
  napi_value v;
  napi_valuetype type;
  int found = read_option(env, options, key, &v, &type);
  if (found <= 0) return found == 0;
  if (type != napi_boolean || napi_get_value_bool(env, v, out) != napi_ok) {
    char msg[96];
    snprintf(msg, sizeof msg, "options.%s must be a boolean", key);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
    return false;
  }
  return true;
}

/* Reads `options.namedPipes` (default true). Returns false with an exception pending. */
bool get_named_pipes(napi_env env, napi_value options, int *out) {
  bool flag = true;
  if (!get_bool_option(env, options, "namedPipes", &flag)) return false;
  *out = flag ? 1 : 0;
  return true;
}

/* Reads a non-negative integer option (kept as is when absent). Returns false with an
 * exception pending. */
bool get_count_option(napi_env env, napi_value options, const char *key, double max, double *out) {
  napi_value v;
  napi_valuetype type;
  int found = read_option(env, options, key, &v, &type);
  if (found <= 0) return found == 0;
  double value = -1;
  if (type != napi_number || napi_get_value_double(env, v, &value) != napi_ok || !(value >= 0) || value > max ||
      value != (double)(long long)value) {
    char msg[96];
    snprintf(msg, sizeof msg, "options.%s must be an integer from 0 to %.0f", key, max);
    napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", msg);
    return false;
  }
  *out = value;
  return true;
}

/* Copies a path argument named `name` into a malloc'ed string. Returns NULL with an exception
 * pending. */
static char *get_path(napi_env env, napi_value value, const char *name) {
  char msg[96];
  napi_valuetype type;
  if (napi_typeof(env, value, &type) != napi_ok || type != napi_string) {
    snprintf(msg, sizeof msg, "%s must be a string", name);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
    return NULL;
  }
  size_t len = 0;
  if (napi_get_value_string_utf8(env, value, NULL, 0, &len) != napi_ok) {
    throw_napi_failure(env);
    return NULL;
  }
  if (len == 0 || len > PATH_MAX) {
    snprintf(msg, sizeof msg, "%s must be a non-empty path", name);
    napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", msg);
    return NULL;
  }
  char *path = malloc(len + 1);
  if (path == NULL) {
    snprintf(msg, sizeof msg, "Cannot read %s", name);
    throw_errno(env, msg, ENOMEM);
    return NULL;
  }
  size_t copied = 0;
  if (napi_get_value_string_utf8(env, value, path, len + 1, &copied) != napi_ok) {
    free(path);
    throw_napi_failure(env);
    return NULL;
  }
  if (strlen(path) != copied) { /* an embedded NUL would silently name another path */
    free(path);
    snprintf(msg, sizeof msg, "%s must not contain NUL", name);
    napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", msg);
    return NULL;
  }
  return path;
}

/* Copies the procRoot argument into a malloc'ed string. Returns NULL with an exception pending. */
char *get_proc_root(napi_env env, napi_value value) {
  return get_path(env, value, "procRoot");
}

/* Reads a path option into a malloc'ed string (*out NULL when absent). Returns false with an
 * exception pending. */
bool get_path_option(napi_env env, napi_value options, const char *key, char **out) {
  napi_value v;
  napi_valuetype type;
  *out = NULL;
  int found = read_option(env, options, key, &v, &type);
  if (found <= 0) return found == 0;
  char name[64];
  snprintf(name, sizeof name, "options.%s", key);
  *out = get_path(env, v, name);
  return *out != NULL;
}

/* Fetches between `min` and `max` arguments (missing ones read as undefined). Returns false
 * with an exception pending. */
bool get_some_args(napi_env env, napi_callback_info info, size_t min, size_t max, napi_value *argv) {
  size_t argc = max;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) {
    throw_napi_failure(env);
    return false;
  }
  if (argc < min) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_COUNT", "Wrong number of arguments");
    return false;
  }
  return true;
}

