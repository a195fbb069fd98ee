/*
 * The N-API binding of fd_scan.c: scanFds(procRoot, { namedPipes }) -> { pids: Int32Array,
 * entries: Float64Array (pid, fd, kind, inode, end per descriptor), denied: Int32Array,
 * failed: Int32Array }.
 */
#define _GNU_SOURCE
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fd_scan.h"
#include "napi_common.h"
#include "register.h"

/* scanFds(procRoot: string, options?: { namedPipes?: boolean }) */
static napi_value scan_fds(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_some_args(env, info, 1, 2, argv)) return NULL;
  int named_pipes = 1;
  if (!get_named_pipes(env, argv[1], &named_pipes)) return NULL;
  char *root = get_proc_root(env, argv[0]);
  if (root == NULL) return NULL;

  struct fd_scan s;
  memset(&s, 0, sizeof s);
  int err = run_fd_scan(root, named_pipes, &s);
  free(root);
  if (err != 0) {
    fd_scan_free(&s);
    throw_errno(env, "Cannot scan process descriptors", err);
    return NULL;
  }
  napi_value result = NULL, pids, entries, denied, failed;
  bool ok = napi_create_object(env, &result) == napi_ok &&
            make_typed(env, napi_int32_array, s.pids.items, s.pids.count, sizeof(int32_t), &pids) == napi_ok &&
            make_typed(env, napi_float64_array, s.entries.items, s.entries.count, sizeof(double), &entries) == napi_ok &&
            make_typed(env, napi_int32_array, s.denied.items, s.denied.count, sizeof(int32_t), &denied) == napi_ok &&
            make_typed(env, napi_int32_array, s.failed.items, s.failed.count, sizeof(int32_t), &failed) == napi_ok &&
            napi_set_named_property(env, result, "pids", pids) == napi_ok &&
            napi_set_named_property(env, result, "entries", entries) == napi_ok &&
            napi_set_named_property(env, result, "denied", denied) == napi_ok &&
            napi_set_named_property(env, result, "failed", failed) == napi_ok;
  fd_scan_free(&s);
  if (!ok) {
    throw_napi_failure(env);
    return NULL;
  }
  return result;
}

napi_status fd_scan_register(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"scanFds", NULL, scan_fds, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
