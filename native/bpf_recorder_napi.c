/*
 * The N-API binding of bpf_recorder.c (the connection recorder, issue 14):
 *   recorderSupport() -> null | string    why libbpf cannot be used (dlopen), or null
 *   recorderOpen(objectPath) -> handle    loads and attaches; throws Error with `code` the errno
 *                                         name (EPERM, ...) and libbpf's warning in the message
 *   recorderRead(handle) -> { records: Buffer, ringFull, unattributed, epochOffsetMs }
 *       drains the ring buffer: `records` holds 120-byte records back to back (the layout of
 *       `struct record` in bpf/connection-recorder.bpf.c); ringFull/unattributed are the running
 *       loss totals; epochOffsetMs is CLOCK_REALTIME - CLOCK_MONOTONIC in milliseconds, read now,
 *       which turns the records' kernel times (bpf_ktime_get_ns, monotonic) into epoch times
 *   recorderClose(handle)                 detaches (idempotent; the garbage collector does it too)
 * The caller polls recorderRead: the program never wakes a reader (BPF_RB_NO_WAKEUP), so a
 * connect costs no context switch to the daemon, and one read returns a whole batch.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bpf_recorder.h"
#include "napi_common.h"
#include "register.h"

static const napi_type_tag RECORDER_TAG = {0x73746f70645f6270ULL, 0x665f7265636f0001ULL};

/* The handle's data: the recorder, NULL once closed. */
struct recorder_handle {
  struct bpf_recorder *r;
};

static void finalize_recorder(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  struct recorder_handle *h = data;
  recorder_close(h->r);
  free(h);
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
  napi_value argv[1];
  char path[4096];
  size_t len = 0;
  if (!get_args(env, info, 1, argv)) return NULL;
  if (napi_get_value_string_utf8(env, argv[0], path, sizeof path, &len) != napi_ok || len == 0 ||
      len >= sizeof path - 1) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "objectPath must be a non-empty path");
    return NULL;
  }
  struct recorder_handle *h = calloc(1, sizeof *h);
  if (h == NULL) {
    throw_errno(env, "Cannot start the connection recorder", ENOMEM);
    return NULL;
  }
  char why[768] = "";
  int err = recorder_open(path, &h->r, why, sizeof why);
  if (err != 0) {
    free(h);
    throw_errno(env, why, err);
    return NULL;
  }
  napi_value handle;
  if (napi_create_external(env, h, finalize_recorder, NULL, &handle) != napi_ok) {
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

static napi_value recorder_read(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  struct recorder_handle *h = get_handle(env, argv[0]);
  if (h == NULL) return NULL;
  if (h->r == NULL) {
    napi_throw_error(env, "ERR_STOPD_RECORDER_CLOSED", "The connection recorder is closed");
    return NULL;
  }
  /* Totals first: a loss counted after the drain is reported at the next read, never before
   * the records that preceded it. */
  uint64_t totals[RECORDER_LOSS_KINDS] = {0};
  int err = recorder_losses(h->r, totals);
  if (err == 0) err = recorder_drain(h->r);
  if (err != 0) {
    throw_errno(env, "Cannot read the connection recorder", err);
    return NULL;
  }
  double offset = clock_ms(CLOCK_REALTIME) - clock_ms(CLOCK_MONOTONIC);
  size_t len = 0;
  const uint8_t *bytes = recorder_batch(h->r, &len);
  napi_value result, v;
  CHECK_NAPI(env, napi_create_object(env, &result));
  napi_status st = set_buffer(env, result, "records", bytes, len);
  recorder_batch_clear(h->r);
  CHECK_NAPI(env, st);
  CHECK_NAPI(env, napi_create_double(env, (double)totals[RECORDER_LOSS_RING_FULL], &v));
  CHECK_NAPI(env, napi_set_named_property(env, result, "ringFull", v));
  CHECK_NAPI(env, napi_create_double(env, (double)totals[RECORDER_LOSS_UNATTRIBUTED], &v));
  CHECK_NAPI(env, napi_set_named_property(env, result, "unattributed", v));
  CHECK_NAPI(env, napi_create_double(env, offset, &v));
  CHECK_NAPI(env, napi_set_named_property(env, result, "epochOffsetMs", v));
  return result;
}

static napi_value recorder_close_js(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  struct recorder_handle *h = get_handle(env, argv[0]);
  if (h == NULL) return NULL;
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
