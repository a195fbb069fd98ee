/*
 * The N-API binding of socket_fd.c:
 *   socketOf(pid, fd, inode) -> { domain: 'tcp', family, state, uid, inode, localAddr, localPort,
 *                                 remoteAddr, remotePort }
 *                             | { domain: 'unix', inode } | { domain: 'other', inode } | null
 */
#define _GNU_SOURCE
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "napi_common.h"
#include "register.h"
#include "socket_fd.h"

/* 2^53: inode numbers are passed as JS numbers, exact up to here. */
#define MAX_SAFE_INTEGER 9007199254740992LL

/* Reads a whole number from `min` to `max`. Returns false with an exception pending. */
static bool get_integer(napi_env env, napi_value v, const char *name, int64_t min, int64_t max, int64_t *out) {
  char msg[96];
  double d = 0;
  if (napi_get_value_double(env, v, &d) != napi_ok) {
    snprintf(msg, sizeof msg, "%s must be a number", name);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
    return false;
  }
  /* The range test comes first: it also rejects NaN, and makes the cast below defined. */
  if (!(d >= (double)min && d <= (double)max) || (double)(int64_t)d != d) {
    snprintf(msg, sizeof msg, "%s must be an integer from %lld to %lld", name, (long long)min, (long long)max);
    napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", msg);
    return false;
  }
  *out = (int64_t)d;
  return true;
}

static napi_status set_number(napi_env env, napi_value obj, const char *key, double value) {
  napi_value v;
  napi_status s = napi_create_double(env, value, &v);
  return s == napi_ok ? napi_set_named_property(env, obj, key, v) : s;
}

static napi_status set_string(napi_env env, napi_value obj, const char *key, const char *value) {
  napi_value v;
  napi_status s = napi_create_string_utf8(env, value, NAPI_AUTO_LENGTH, &v);
  return s == napi_ok ? napi_set_named_property(env, obj, key, v) : s;
}

static napi_value make_socket(napi_env env, const struct fd_socket *s) {
  napi_value obj;
  CHECK_NAPI(env, napi_create_object(env, &obj));
  if (!s->tcp) {
    CHECK_NAPI(env, set_string(env, obj, "domain", !s->foreign && s->domain == AF_UNIX ? "unix" : "other"));
    CHECK_NAPI(env, set_number(env, obj, "inode", (double)s->inode));
    return obj;
  }
  size_t alen = s->domain == AF_INET ? 4 : 16;
  CHECK_NAPI(env, set_string(env, obj, "domain", "tcp"));
  CHECK_NAPI(env, set_number(env, obj, "family", s->domain == AF_INET ? 4 : 6));
  CHECK_NAPI(env, set_number(env, obj, "state", s->state));
  CHECK_NAPI(env, set_number(env, obj, "uid", s->uid));
  CHECK_NAPI(env, set_number(env, obj, "inode", (double)s->inode));
  CHECK_NAPI(env, set_buffer(env, obj, "localAddr", s->local, alen));
  CHECK_NAPI(env, set_number(env, obj, "localPort", s->local_port));
  CHECK_NAPI(env, set_buffer(env, obj, "remoteAddr", s->remote, alen));
  CHECK_NAPI(env, set_number(env, obj, "remotePort", s->remote_port));
  return obj;
}

static napi_value make_null(napi_env env) {
  napi_value result;
  CHECK_NAPI(env, napi_get_null(env, &result));
  return result;
}

/* socketOf(pid: number, fd: number, inode: number) */
static napi_value socket_of(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int64_t pid, fd, inode;
  if (!get_args(env, info, 3, argv) || !get_integer(env, argv[0], "pid", 1, INT32_MAX, &pid) ||
      !get_integer(env, argv[1], "fd", 0, INT32_MAX, &fd) ||
      !get_integer(env, argv[2], "inode", 0, MAX_SAFE_INTEGER, &inode))
    return NULL;
  char what[96];
  uint64_t own_netns = 0;
  int err = own_netns_cookie(&own_netns);
  if (err != 0) {
    throw_errno(env, "Cannot read this process's network namespace", err);
    return NULL;
  }
  int copy = borrow_fd((int)pid, (int)fd);
  if (copy < 0) {
    if (is_gone(-copy)) return make_null(env);
    snprintf(what, sizeof what, "Cannot duplicate descriptor %d of process %d", (int)fd, (int)pid);
    throw_errno(env, what, -copy);
    return NULL;
  }
  struct fd_socket s;
  err = read_socket(copy, (uint64_t)inode, own_netns, &s);
  close(copy); /* ours only: the process keeps its own descriptor */
  if (err == NOT_THIS_SOCKET) return make_null(env);
  if (err != 0) {
    snprintf(what, sizeof what, "Cannot read socket %lld of process %d", (long long)inode, (int)pid);
    throw_errno(env, what, err);
    return NULL;
  }
  return make_socket(env, &s);
}

napi_status socket_fd_register(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"socketOf", NULL, socket_of, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
