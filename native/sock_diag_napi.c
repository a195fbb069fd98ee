/*
 * The N-API binding of sock_diag.c: tcpLookup, tcpDump, unixDump, unixLookup (their JS shapes
 * are in addon.c's header comment and src/host/native-addon.ts).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "napi_common.h"
#include "register.h"
#include "sock_diag.h"

/* Reads a 4 (IPv4) or 16 (IPv6) byte Buffer into `out`. Returns false with an exception pending. */
static bool get_addr(napi_env env, napi_value v, size_t want, uint8_t *out) {
  bool is_buffer = false;
  if (napi_is_buffer(env, v, &is_buffer) != napi_ok || !is_buffer) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "Address must be a Buffer");
    return false;
  }
  void *data = NULL;
  size_t len = 0;
  if (napi_get_buffer_info(env, v, &data, &len) != napi_ok) {
    throw_napi_failure(env);
    return false;
  }
  if (len != want) {
    napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", "Address length does not match the family");
    return false;
  }
  memcpy(out, data, want);
  return true;
}

static bool get_port(napi_env env, napi_value v, uint16_t *out) {
  int32_t port = -1;
  if (napi_get_value_int32(env, v, &port) != napi_ok || port < 0 || port > 65535) {
    napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", "Port must be an integer from 0 to 65535");
    return false;
  }
  *out = (uint16_t)port;
  return true;
}

static bool get_family(napi_env env, napi_value v, int *out) {
  int32_t f = 0;
  if (napi_get_value_int32(env, v, &f) != napi_ok || (f != 4 && f != 6)) {
    napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", "Family must be 4 or 6");
    return false;
  }
  *out = f == 4 ? AF_INET : AF_INET6;
  return true;
}

static napi_value make_tcp(napi_env env, const struct tcp_entry *e) {
  napi_value obj;
  size_t alen = e->family == AF_INET ? 4 : 16;
  CHECK_NAPI(env, napi_create_object(env, &obj));
  CHECK_NAPI(env, set_u32(env, obj, "family", e->family == AF_INET ? 4 : 6));
  CHECK_NAPI(env, set_u32(env, obj, "state", e->state));
  CHECK_NAPI(env, set_u32(env, obj, "uid", e->uid));
  CHECK_NAPI(env, set_u32(env, obj, "inode", e->inode));
  CHECK_NAPI(env, set_buffer(env, obj, "localAddr", e->local, alen));
  CHECK_NAPI(env, set_u32(env, obj, "localPort", e->local_port));
  CHECK_NAPI(env, set_buffer(env, obj, "remoteAddr", e->remote, alen));
  CHECK_NAPI(env, set_u32(env, obj, "remotePort", e->remote_port));
  return obj;
}

/* tcpLookup(family: 4|6, localAddr: Buffer, localPort, remoteAddr: Buffer, remotePort) */
static napi_value tcp_lookup(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  if (!get_args(env, info, 5, argv)) return NULL;
  int family;
  if (!get_family(env, argv[0], &family)) return NULL;
  size_t alen = family == AF_INET ? 4 : 16;
  uint8_t local[16] = {0}, remote[16] = {0};
  uint16_t lport, rport;
  if (!get_addr(env, argv[1], alen, local) || !get_port(env, argv[2], &lport) ||
      !get_addr(env, argv[3], alen, remote) || !get_port(env, argv[4], &rport))
    return NULL;

  struct tcp_entry entry;
  bool found, opened;
  int err = sock_diag_tcp_lookup(family, local, lport, remote, rport, &entry, &found, &opened);
  if (!opened) {
    throw_errno(env, "Cannot open a NETLINK_SOCK_DIAG socket", err);
    return NULL;
  }
  napi_value result;
  if (err == ENOENT || (err == 0 && !found)) {
    CHECK_NAPI(env, napi_get_null(env, &result));
    return result;
  }
  if (err != 0) {
    throw_errno(env, "Cannot look up the TCP socket via sock_diag", err);
    return NULL;
  }
  return make_tcp(env, &entry);
}

typedef napi_value (*make_fn)(napi_env env, const void *item);

/* A JS array of `count` items of `size` bytes made by `make`; frees nothing, throws on failure. */
static napi_value make_array(napi_env env, const void *items, size_t count, size_t size, make_fn make) {
  napi_value arr = NULL;
  bool ok = napi_create_array_with_length(env, count, &arr) == napi_ok;
  for (size_t i = 0; ok && i < count; i++) {
    napi_value item = make(env, (const char *)items + i * size);
    ok = item != NULL && napi_set_element(env, arr, (uint32_t)i, item) == napi_ok;
  }
  if (!ok) {
    throw_napi_failure(env);
    return NULL;
  }
  return arr;
}

static napi_value make_tcp_item(napi_env env, const void *item) { return make_tcp(env, item); }

/* tcpDump(family: 4|6) */
static napi_value tcp_dump(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  int family;
  if (!get_family(env, argv[0], &family)) return NULL;

  struct tcp_entry *items;
  size_t count;
  bool opened;
  int err = sock_diag_tcp_dump(family, &items, &count, &opened);
  if (err != 0) {
    throw_errno(env, opened ? "Cannot dump the TCP sockets via sock_diag" : "Cannot open a NETLINK_SOCK_DIAG socket", err);
    return NULL;
  }
  napi_value arr = make_array(env, items, count, sizeof items[0], make_tcp_item);
  free(items);
  return arr;
}

static napi_value make_unix(napi_env env, const struct unix_entry *e) {
  napi_value obj, path;
  CHECK_NAPI(env, napi_create_object(env, &obj));
  CHECK_NAPI(env, set_u32(env, obj, "inode", e->inode));
  CHECK_NAPI(env, set_u32(env, obj, "type", e->type));
  CHECK_NAPI(env, set_u32(env, obj, "state", e->state));
  if (e->has_name)
    CHECK_NAPI(env, napi_create_string_utf8(env, e->name, e->name_len, &path));
  else
    CHECK_NAPI(env, napi_get_null(env, &path));
  CHECK_NAPI(env, napi_set_named_property(env, obj, "path", path));
  CHECK_NAPI(env, set_u32(env, obj, "peer", e->peer));
  return obj;
}

static napi_value make_unix_item(napi_env env, const void *item) { return make_unix(env, item); }


/* unixDump() */
static napi_value unix_dump(napi_env env, napi_callback_info info) {
  (void)info;
  struct unix_entry *items;
  size_t count;
  bool opened;
  int err = sock_diag_unix_dump(&items, &count, &opened);
  if (err != 0) {
    throw_errno(env, opened ? "Cannot dump the UNIX sockets via sock_diag" : "Cannot open a NETLINK_SOCK_DIAG socket", err);
    return NULL;
  }
  napi_value arr = make_array(env, items, count, sizeof items[0], make_unix_item);
  free(items);
  return arr;
}

/* unixLookup(inode) -> one unixDump() entry, or null when there is no such UNIX socket */
static napi_value unix_lookup(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  double value = 0;
  if (napi_get_value_double(env, argv[0], &value) != napi_ok || !(value >= 1 && value <= UINT32_MAX) || value != (double)(uint32_t)value) {
    napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", "inode must be an integer from 1 to 4294967295");
    return NULL;
  }
  struct unix_entry entry;
  bool found, opened;
  int err = sock_diag_unix_lookup((uint32_t)value, &entry, &found, &opened);
  napi_value result = NULL;
  if (err == ENOENT || (err == 0 && !found)) {
    CHECK_NAPI(env, napi_get_null(env, &result));
    return result;
  }
  if (err != 0) {
    throw_errno(env, opened ? "Cannot look up the UNIX socket via sock_diag" : "Cannot open a NETLINK_SOCK_DIAG socket", err);
    return NULL;
  }
  return make_unix(env, &entry);
}

/* The kept netlink socket belongs to its thread: a worker thread that loads the addon (the
 * daemon's analysis thread) closes it when its environment is torn down, or every restart of
 * that thread would leak a netlink socket and its buffer. Registered once per environment. */
static void close_thread_socket(void *arg) {
  (void)arg;
  sock_diag_close_thread_socket();
}

napi_status sock_diag_register(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"tcpLookup", NULL, tcp_lookup, NULL, NULL, NULL, napi_enumerable, NULL},
      {"tcpDump", NULL, tcp_dump, NULL, NULL, NULL, napi_enumerable, NULL},
      {"unixDump", NULL, unix_dump, NULL, NULL, NULL, napi_enumerable, NULL},
      {"unixLookup", NULL, unix_lookup, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_status s = napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return s == napi_ok ? napi_add_env_cleanup_hook(env, close_thread_socket, NULL) : s;
}
