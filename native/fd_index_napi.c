/*
 * The N-API binding of the fd index (fd_index.h): an index is an external handle, closed by
 * fdIndexClose or released by the garbage collector.
 *   fdIndexCreate(procRoot, { namedPipes, maxKeptFiles, listIntervalMs, rescanIntervalMs, separateTable,
 *                             skipSelf }) -> index handle
 *   fdIndexRefresh(index) -> { full, tracked, kept, rescanned: Int32Array }
 *   fdIndexHolders(index, inode) -> Int32Array of (pid, fd, kind) triples
 *   fdIndexFds(index, pid) -> Float64Array in the scanFds `entries` layout, or null
 *   fdIndexDenied(index) -> { denied: Int32Array, failed: Int32Array }
 *   fdIndexClose(index)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fd_index.h"
#include "napi_common.h"
#include "register.h"


/* Marks our externals, so an index handle cannot be confused with another addon's external. */
static const napi_type_tag FD_INDEX_TAG = {0x73746f70645f6664ULL, 0x5f696e6465780001ULL};

/* The garbage collector releases an index that was never closed. */
static void finalize_index(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  struct fd_index *ix = data;
  index_close(ix);
  free(ix);
}

/* The index behind a handle, closed or not. Returns NULL with an exception pending (not a handle). */
static struct fd_index *get_handle(napi_env env, napi_value value) {
  napi_valuetype type;
  bool tagged = false;
  void *data = NULL;
  if (napi_typeof(env, value, &type) != napi_ok || type != napi_external ||
      napi_check_object_type_tag(env, value, &FD_INDEX_TAG, &tagged) != napi_ok || !tagged ||
      napi_get_value_external(env, value, &data) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "index must be a handle from fdIndexCreate");
    return NULL;
  }
  return data;
}

/* The open index behind a handle. Returns NULL with an exception pending (not a handle, or closed). */
static struct fd_index *get_index(napi_env env, napi_value value) {
  struct fd_index *ix = get_handle(env, value);
  if (ix == NULL) return NULL;
  if (ix->closed) {
    napi_throw_error(env, "ERR_STOPD_INDEX_CLOSED", "The descriptor index is closed");
    return NULL;
  }
  return ix;
}

/* fdIndexCreate(procRoot: string, options?: { namedPipes?, maxKeptFiles?, listIntervalMs?, rescanIntervalMs?,
 *                                             separateTable?, skipSelf?, runTracker? }) */
static napi_value fd_index_create(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_some_args(env, info, 1, 2, argv)) return NULL;
  int named_pipes = 1;
  double max_kept = INDEX_DEFAULT_MAX_KEPT, interval_ms = INDEX_DEFAULT_LIST_INTERVAL_MS,
         rescan_ms = INDEX_DEFAULT_RESCAN_INTERVAL_MS;
  bool separate_table = true, skip_self = false;
  if (!get_named_pipes(env, argv[1], &named_pipes) ||
      !get_count_option(env, argv[1], "maxKeptFiles", 1048576, &max_kept) ||
      !get_count_option(env, argv[1], "listIntervalMs", 86400000, &interval_ms) ||
      !get_count_option(env, argv[1], "rescanIntervalMs", 86400000, &rescan_ms) ||
      !get_bool_option(env, argv[1], "separateTable", &separate_table) ||
      !get_bool_option(env, argv[1], "skipSelf", &skip_self))
    return NULL;
  char *run_tracker = NULL;
  if (!get_path_option(env, argv[1], "runTracker", &run_tracker)) return NULL;
  char *root = get_proc_root(env, argv[0]);
  if (root == NULL) {
    free(run_tracker);
    return NULL;
  }
  struct fd_index *ix = malloc(sizeof *ix);
  int err = ix == NULL ? ENOMEM : index_open(ix, root, named_pipes, (size_t)max_kept, (int64_t)interval_ms * 1000000,
                                              (int64_t)rescan_ms * 1000000, separate_table, skip_self, run_tracker);
  free(root);
  free(run_tracker);
  if (err != 0) {
    free(ix);
    throw_errno(env, "Cannot open the proc root", err);
    return NULL;
  }
  napi_value handle;
  if (napi_create_external(env, ix, finalize_index, NULL, &handle) != napi_ok) {
    index_close(ix);
    free(ix);
    throw_napi_failure(env);
    return NULL;
  }
  CHECK_NAPI(env, napi_type_tag_object(env, handle, &FD_INDEX_TAG));
  return handle;
}

/* fdIndexRunTracker(index) -> { active: boolean, why: string } : whether the index learns which
 * processes ran from the run tracker, and why not ("" when it was not asked for) */
static napi_value fd_index_run_tracker(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  struct fd_index *ix = get_index(env, argv[0]);
  if (ix == NULL) return NULL;
  napi_value result, flag, why;
  CHECK_NAPI(env, napi_create_object(env, &result));
  CHECK_NAPI(env, napi_get_boolean(env, ix->runs != NULL, &flag));
  CHECK_NAPI(env, napi_set_named_property(env, result, "active", flag));
  CHECK_NAPI(env, napi_create_string_utf8(env, ix->runs_why, NAPI_AUTO_LENGTH, &why));
  CHECK_NAPI(env, napi_set_named_property(env, result, "why", why));
  return result;
}

/* fdIndexRefresh(index) -> { full, tracked, kept, rescanned: Int32Array } */
static napi_value fd_index_refresh(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  struct fd_index *ix = get_index(env, argv[0]);
  if (ix == NULL) return NULL;
  int err = index_run_refresh(ix);
  int full = ix->last_full;
  if (err != 0) {
    throw_errno(env, "Cannot refresh the descriptor index", err);
    return NULL;
  }
  napi_value result, flag, rescanned;
  CHECK_NAPI(env, napi_create_object(env, &result));
  CHECK_NAPI(env, napi_get_boolean(env, full != 0, &flag));
  CHECK_NAPI(env, napi_set_named_property(env, result, "full", flag));
  CHECK_NAPI(env, set_u32(env, result, "tracked", (uint32_t)ix->count));
  CHECK_NAPI(env, set_u32(env, result, "kept", (uint32_t)ix->kept));
  CHECK_NAPI(env, make_typed(env, napi_int32_array, ix->rescanned.items, ix->rescanned.count, sizeof(int32_t), &rescanned));
  CHECK_NAPI(env, napi_set_named_property(env, result, "rescanned", rescanned));
  return result;
}

static int compare_holder(const void *a, const void *b) {
  const struct holder *x = a, *y = b;
  if (x->pid != y->pid) return (x->pid > y->pid) - (x->pid < y->pid);
  return (x->fd > y->fd) - (x->fd < y->fd);
}

/* fdIndexHolders(index, inode) -> Int32Array of (pid, fd, kind) triples, by pid then fd */
static napi_value fd_index_holders(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv)) return NULL;
  struct fd_index *ix = get_index(env, argv[0]);
  if (ix == NULL) return NULL;
  double inode = -1;
  if (napi_get_value_double(env, argv[1], &inode) != napi_ok || !(inode >= 0) || inode > 9007199254740992.0 ||
      inode != (double)(uint64_t)inode) {
    napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", "inode must be a non-negative integer");
    return NULL;
  }
  const struct inode_slot *slot = map_find(&ix->inodes, (uint64_t)inode);
  size_t count = slot == NULL ? 0 : slot->count;
  int32_t *triples = count == 0 ? NULL : malloc(count * 3 * sizeof *triples);
  struct holder *sorted = count == 0 ? NULL : malloc(count * sizeof *sorted);
  if (count > 0 && (triples == NULL || sorted == NULL)) {
    free(triples);
    free(sorted);
    throw_errno(env, "Cannot look up holders", ENOMEM);
    return NULL;
  }
  if (count > 0) {
    memcpy(sorted, slot->items, count * sizeof *sorted);
    qsort(sorted, count, sizeof *sorted, compare_holder);
    for (size_t i = 0; i < count; i++) {
      triples[i * 3] = sorted[i].pid;
      triples[i * 3 + 1] = sorted[i].fd;
      triples[i * 3 + 2] = sorted[i].kind;
    }
  }
  napi_value result = NULL;
  napi_status st = make_typed(env, napi_int32_array, triples, count * 3, sizeof(int32_t), &result);
  free(triples);
  free(sorted);
  if (st != napi_ok) {
    throw_napi_failure(env);
    return NULL;
  }
  return result;
}

/* fdIndexFds(index, pid) -> Float64Array in the scanFds `entries` layout, or null when the
 * index holds no descriptors for the pid (not tracked, refused or failed) */
static napi_value fd_index_fds(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv)) return NULL;
  struct fd_index *ix = get_index(env, argv[0]);
  if (ix == NULL) return NULL;
  int32_t pid = 0;
  if (napi_get_value_int32(env, argv[1], &pid) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "pid must be a number");
    return NULL;
  }
  const struct tracked *t = find_tracked(ix, pid);
  napi_value result = NULL;
  if (t == NULL || t->outcome != PID_OK) {
    CHECK_NAPI(env, napi_get_null(env, &result));
    return result;
  }
  struct f64_vec entries = {0};
  if (append_entries(&entries, pid, t->fds, t->nfds) != 0) {
    throw_errno(env, "Cannot read the descriptors of a process", ENOMEM);
    return NULL;
  }
  napi_status st = make_typed(env, napi_float64_array, entries.items, entries.count, sizeof(double), &result);
  free(entries.items);
  if (st != napi_ok) {
    throw_napi_failure(env);
    return NULL;
  }
  return result;
}

/* fdIndexDenied(index) -> { denied: Int32Array, failed: Int32Array }, ascending */
static napi_value fd_index_denied(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  struct fd_index *ix = get_index(env, argv[0]);
  if (ix == NULL) return NULL;
  struct i32_vec denied = {0}, failed = {0};
  int err = 0;
  for (size_t i = 0; i < ix->count && err == 0; i++) {
    if (ix->procs[i].outcome == PID_DENIED) err = i32_push(&denied, ix->procs[i].pid);
    if (ix->procs[i].outcome == PID_FAILED) err = i32_push(&failed, ix->procs[i].pid);
  }
  napi_value result = NULL, d, f;
  bool ok = err == 0 && napi_create_object(env, &result) == napi_ok &&
            make_typed(env, napi_int32_array, denied.items, denied.count, sizeof(int32_t), &d) == napi_ok &&
            make_typed(env, napi_int32_array, failed.items, failed.count, sizeof(int32_t), &f) == napi_ok &&
            napi_set_named_property(env, result, "denied", d) == napi_ok &&
            napi_set_named_property(env, result, "failed", f) == napi_ok;
  free(denied.items);
  free(failed.items);
  if (!ok) {
    if (err != 0) throw_errno(env, "Cannot list unreadable processes", err);
    else throw_napi_failure(env);
    return NULL;
  }
  return result;
}

/* fdIndexClose(index): closes the kept files now rather than at garbage collection; idempotent. */
static napi_value fd_index_close(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  struct fd_index *ix = get_handle(env, argv[0]);
  if (ix != NULL) index_close(ix);
  return NULL;
}

napi_status fd_index_register(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"fdIndexCreate", NULL, fd_index_create, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fdIndexRefresh", NULL, fd_index_refresh, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fdIndexRunTracker", NULL, fd_index_run_tracker, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fdIndexHolders", NULL, fd_index_holders, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fdIndexFds", NULL, fd_index_fds, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fdIndexDenied", NULL, fd_index_denied, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fdIndexClose", NULL, fd_index_close, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
