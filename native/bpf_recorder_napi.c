/*
 * The N-API binding of bpf_recorder.c (the connection recorder, issue 14):
 *   recorderSupport() -> null | string    why libbpf cannot be used (dlopen), or null
 *   recorderOpen(objectPath, recordsPerCpu, onBurst?) -> handle
 *       loads and attaches, with rings of recordsPerCpu records (a power of two, 64 to 2^20) for
 *       each possible CPU; throws Error with `code` the errno name (EPERM, ...) and libbpf's
 *       warning in the message. onBurst, a function, is called (on this thread's event loop,
 *       with no arguments) when a CPU's ring got half full since the last call: read then,
 *       not at the next timed poll. It must not throw.
 *   recorderRead(handle, into, last?) -> { bytes, ringFull, unattributed, recursion, epochOffsetMs }
 *       moves waiting records into `into` (a Uint8Array/Buffer the caller keeps and reuses): its
 *       first `bytes` bytes are 120-byte records back to back (the layout of `struct record` in
 *       bpf/connection-recorder.bpf.c), in the order they were made; `bytes` equal to the
 *       largest multiple of 120 that fits means it is full and more may wait (read again).
 *       last (the reads before recorderClose): records waiting for an earlier record still
 *       being written are handed out too, rather than lost with the recorder.
 *       ringFull/unattributed/recursion are the running loss totals, read before the drain;
 *       epochOffsetMs is CLOCK_REALTIME -
 *       CLOCK_MONOTONIC in milliseconds, read now, which turns the records' kernel times
 *       (CLOCK_MONOTONIC, read once per tick per CPU by the program) into epoch times
 *   recorderClose(handle)                 detaches (idempotent; the garbage collector does it too)
 * The caller polls recorderRead on a timer, and on onBurst: the program wakes the reader only
 * for a burst, so a connect costs no context switch to the daemon, and one read returns a
 * whole batch.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <uv.h>

#include "bpf_recorder.h"
#include "napi_common.h"
#include "register.h"

static const napi_type_tag RECORDER_TAG = {0x73746f70645f6270ULL, 0x665f7265636f0001ULL};

/* The handle's data: the recorder, NULL once closed; with onBurst, the watch of its wake-ups. */
struct recorder_handle {
  struct bpf_recorder *r;
  napi_env env;
  uv_poll_t *poll;
  napi_ref on_burst;
  napi_async_context async;
};

static void free_poll(uv_handle_t *handle) {
  free(handle);
}

/* Stops watching the wake-ups (idempotent). Before recorder_close: the descriptor is the recorder's. */
static void stop_watch(struct recorder_handle *h) {
  if (h->poll != NULL) {
    uv_poll_stop(h->poll);
    uv_close((uv_handle_t *)h->poll, free_poll);
    h->poll = NULL;
  }
  if (h->on_burst != NULL) {
    napi_delete_reference(h->env, h->on_burst);
    h->on_burst = NULL;
  }
  if (h->async != NULL) {
    napi_async_destroy(h->env, h->async);
    h->async = NULL;
  }
}

static void finalize_recorder(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  struct recorder_handle *h = data;
  stop_watch(h);
  recorder_close(h->r);
  free(h);
}

/* The wake-up descriptor turned readable: consume the wake-ups, then call onBurst. */
static void on_wakeup(uv_poll_t *poll, int status, int events) {
  (void)events;
  struct recorder_handle *h = poll->data;
  if (status < 0 || h->r == NULL || recorder_take_wakeups(h->r) != 0) {
    /* A broken descriptor would be readable for ever: the timed polls go on without it. */
    uv_poll_stop(poll);
    return;
  }
  napi_env env = h->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value fn, recv, result;
  if (napi_get_reference_value(env, h->on_burst, &fn) == napi_ok && fn != NULL && napi_get_global(env, &recv) == napi_ok) {
    if (napi_make_callback(env, h->async, recv, fn, 0, NULL, &result) == napi_pending_exception) {
      /* As any callback of the event loop: an uncaught exception, not one left pending for
       * whatever N-API call comes next. */
      napi_value error;
      if (napi_get_and_clear_last_exception(env, &error) == napi_ok) napi_fatal_exception(env, error);
    }
  }
  napi_close_handle_scope(env, scope);
}

/* Watches the recorder's wake-ups on this thread's event loop, calling `fn`. Returns false
 * with an exception pending. */
static bool start_watch(napi_env env, struct recorder_handle *h, napi_value fn) {
  uv_loop_t *loop = NULL;
  napi_value name;
  h->env = env;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || napi_create_reference(env, fn, 1, &h->on_burst) != napi_ok ||
      napi_create_string_utf8(env, "stopd:recorder-burst", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_async_init(env, NULL, name, &h->async) != napi_ok) {
    throw_napi_failure(env);
    return false;
  }
  h->poll = calloc(1, sizeof *h->poll);
  if (h->poll == NULL) {
    throw_errno(env, "Cannot watch the connection recorder", ENOMEM);
    return false;
  }
  int err = uv_poll_init(loop, h->poll, recorder_wake_fd(h->r));
  if (err == 0) {
    h->poll->data = h;
    err = uv_poll_start(h->poll, UV_READABLE, on_wakeup);
    if (err != 0) uv_close((uv_handle_t *)h->poll, free_poll);
  } else {
    free(h->poll);
  }
  if (err != 0) {
    h->poll = NULL;
    throw_errno(env, "Cannot watch the connection recorder", -err);
    return false;
  }
  /* The daemon's server keeps its loop alive; the watch must not. */
  uv_unref((uv_handle_t *)h->poll);
  return true;
}

/* The handle behind a value. Returns NULL with an exception pending (not a handle). */
static struct recorder_handle *get_handle(napi_env env, napi_value value) {
  napi_valuetype type;
  bool tagged = false;
  void *data = NULL;
  if (napi_typeof(env, value, &type) != napi_ok || type != napi_external ||
      napi_check_object_type_tag(env, value, &RECORDER_TAG, &tagged) != napi_ok || !tagged ||
      napi_get_value_external(env, value, &data) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "recorder must be a handle from recorderOpen");
    return NULL;
  }
  return data;
}

static napi_value recorder_support(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result;
  const char *why = recorder_libbpf_error();
  if (why == NULL) {
    CHECK_NAPI(env, napi_get_null(env, &result));
  } else {
    CHECK_NAPI(env, napi_create_string_utf8(env, why, NAPI_AUTO_LENGTH, &result));
  }
  return result;
}

static napi_value recorder_open_js(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  char path[4096];
  size_t len = 0;
  uint32_t per_cpu = 0;
  napi_valuetype burst_type = napi_undefined;
  if (!get_some_args(env, info, 2, 3, argv)) return NULL;
  if (napi_get_value_string_utf8(env, argv[0], path, sizeof path, &len) != napi_ok || len == 0 ||
      len >= sizeof path - 1) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "objectPath must be a non-empty path");
    return NULL;
  }
  if (napi_get_value_uint32(env, argv[1], &per_cpu) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "recordsPerCpu must be a number");
    return NULL;
  }
  if (napi_typeof(env, argv[2], &burst_type) != napi_ok || (burst_type != napi_function && burst_type != napi_undefined)) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "onBurst must be a function or undefined");
    return NULL;
  }
  struct recorder_handle *h = calloc(1, sizeof *h);
  if (h == NULL) {
    throw_errno(env, "Cannot start the connection recorder", ENOMEM);
    return NULL;
  }
  char why[768] = "";
  int err = recorder_open(path, per_cpu, &h->r, why, sizeof why);
  if (err != 0) {
    free(h);
    throw_errno(env, why, err);
    return NULL;
  }
  if (burst_type == napi_function && !start_watch(env, h, argv[2])) {
    stop_watch(h);
    recorder_close(h->r);
    free(h);
    return NULL;
  }
  napi_value handle;
  if (napi_create_external(env, h, finalize_recorder, NULL, &handle) != napi_ok) {
    stop_watch(h);
    recorder_close(h->r);
    free(h);
    throw_napi_failure(env);
    return NULL;
  }
  CHECK_NAPI(env, napi_type_tag_object(env, handle, &RECORDER_TAG));
  return handle;
}

static double clock_ms(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* The bytes of a Uint8Array (a Buffer is one). Returns false with an exception pending. */
static bool get_bytes(napi_env env, napi_value value, uint8_t **data, size_t *len) {
  bool is_typed = false;
  napi_typedarray_type type;
  void *raw = NULL;
  if (napi_is_typedarray(env, value, &is_typed) != napi_ok || !is_typed ||
      napi_get_typedarray_info(env, value, &type, len, &raw, NULL, NULL) != napi_ok || type != napi_uint8_array) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "into must be a Buffer or Uint8Array");
    return false;
  }
  *data = raw;
  return true;
}

static napi_value recorder_read(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  bool last = false;
  if (!get_some_args(env, info, 2, 3, argv)) return NULL;
  napi_valuetype last_type = napi_undefined;
  if (napi_typeof(env, argv[2], &last_type) != napi_ok || (last_type != napi_undefined && (last_type != napi_boolean || napi_get_value_bool(env, argv[2], &last) != napi_ok))) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "last must be a boolean or undefined");
    return NULL;
  }
  struct recorder_handle *h = get_handle(env, argv[0]);
  if (h == NULL) return NULL;
  uint8_t *into = NULL;
  size_t cap = 0;
  if (!get_bytes(env, argv[1], &into, &cap)) return NULL;
  if (cap < RECORDER_RECORD_SIZE) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "into must hold at least one record (120 bytes)");
    return NULL;
  }
  if (h->r == NULL) {
    napi_throw_error(env, "ERR_STOPD_RECORDER_CLOSED", "The connection recorder is closed");
    return NULL;
  }
  /* Totals first: a loss counted after the drain is reported at the next read, never before
   * the records that preceded it. */
  uint64_t totals[RECORDER_LOSS_KINDS] = {0};
  size_t len = 0;
  int err = recorder_losses(h->r, totals);
  if (err == 0) err = recorder_drain(h->r, into, cap, last, &len);
  if (err != 0) {
    throw_errno(env, "Cannot read the connection recorder", err);
    return NULL;
  }
  double offset = clock_ms(CLOCK_REALTIME) - clock_ms(CLOCK_MONOTONIC);
  napi_value result, v;
  CHECK_NAPI(env, napi_create_object(env, &result));
  CHECK_NAPI(env, napi_create_double(env, (double)len, &v));
  CHECK_NAPI(env, napi_set_named_property(env, result, "bytes", v));
  CHECK_NAPI(env, napi_create_double(env, (double)totals[RECORDER_LOSS_RING_FULL], &v));
  CHECK_NAPI(env, napi_set_named_property(env, result, "ringFull", v));
  CHECK_NAPI(env, napi_create_double(env, (double)totals[RECORDER_LOSS_UNATTRIBUTED], &v));
  CHECK_NAPI(env, napi_set_named_property(env, result, "unattributed", v));
  CHECK_NAPI(env, napi_create_double(env, (double)totals[RECORDER_LOSS_RECURSION], &v));
  CHECK_NAPI(env, napi_set_named_property(env, result, "recursion", v));
  CHECK_NAPI(env, napi_create_double(env, offset, &v));
  CHECK_NAPI(env, napi_set_named_property(env, result, "epochOffsetMs", v));
  return result;
}

static napi_value recorder_close_js(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  struct recorder_handle *h = get_handle(env, argv[0]);
  if (h == NULL) return NULL;
  stop_watch(h);
  recorder_close(h->r);
  h->r = NULL;
  return NULL;
}

napi_status bpf_recorder_register(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"recorderSupport", NULL, recorder_support, NULL, NULL, NULL, napi_enumerable, NULL},
      {"recorderOpen", NULL, recorder_open_js, NULL, NULL, NULL, napi_enumerable, NULL},
      {"recorderRead", NULL, recorder_read, NULL, NULL, NULL, napi_enumerable, NULL},
      {"recorderClose", NULL, recorder_close_js, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
