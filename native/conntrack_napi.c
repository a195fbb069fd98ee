/*
 * The N-API binding of conntrack.c:
 *   conntrackLookup(family: 4|6, direction: 'orig'|'reply', src: Buffer, srcPort, dst: Buffer, dstPort)
 *     -> ConntrackEntry | null
 * ConntrackEntry = { family, tcpState, zone, status, id, timeout,
 *                    orig: Tuple, reply: Tuple }, Tuple = { src: Buffer, srcPort, dst: Buffer, dstPort }
 * (TypeScript: src/host/native-addon.ts).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "conntrack.h"
#include "napi_common.h"
#include "register.h"

static bool get_buffer_addr(napi_env env, napi_value v, size_t want, uint8_t *out) {
  bool is_buffer = false;
  void *data = NULL;
  size_t len = 0;
  if (napi_is_buffer(env, v, &is_buffer) != napi_ok || !is_buffer || napi_get_buffer_info(env, v, &data, &len) != napi_ok ||
      len != want) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_VALUE", "Address must be a Buffer of 4 (family 4) or 16 (family 6) bytes");
    return false;
  }
  memcpy(out, data, want);
  return true;
}

static bool get_port_arg(napi_env env, napi_value v, uint16_t *out) {
  int32_t port = -1;
  if (napi_get_value_int32(env, v, &port) != napi_ok || port < 0 || port > 65535) {
    napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", "Port must be an integer from 0 to 65535");
    return false;
  }
  *out = (uint16_t)port;
  return true;
}

static napi_value make_tuple(napi_env env, const struct ct_tuple *t, size_t alen) {
  napi_value obj;
  CHECK_NAPI(env, napi_create_object(env, &obj));
  CHECK_NAPI(env, set_buffer(env, obj, "src", t->src, alen));
  CHECK_NAPI(env, set_u32(env, obj, "srcPort", t->src_port));
  CHECK_NAPI(env, set_buffer(env, obj, "dst", t->dst, alen));
  CHECK_NAPI(env, set_u32(env, obj, "dstPort", t->dst_port));
  return obj;
}

static napi_value make_entry(napi_env env, const struct ct_entry *e) {
  size_t alen = e->family == AF_INET ? 4 : 16;
  napi_value obj, orig, reply;
  CHECK_NAPI(env, napi_create_object(env, &obj));
  CHECK_NAPI(env, set_u32(env, obj, "family", e->family == AF_INET ? 4 : 6));
  CHECK_NAPI(env, set_u32(env, obj, "tcpState", e->tcp_state));
  CHECK_NAPI(env, set_u32(env, obj, "zone", e->zone));
  CHECK_NAPI(env, set_u32(env, obj, "status", e->status));
  CHECK_NAPI(env, set_u32(env, obj, "id", e->id));
  CHECK_NAPI(env, set_u32(env, obj, "timeout", e->timeout));
  if ((orig = make_tuple(env, &e->orig, alen)) == NULL || (reply = make_tuple(env, &e->reply, alen)) == NULL) return NULL;
  CHECK_NAPI(env, napi_set_named_property(env, obj, "orig", orig));
  CHECK_NAPI(env, napi_set_named_property(env, obj, "reply", reply));
  return obj;
}

static napi_value conntrack_lookup_js(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  if (!get_args(env, info, 6, argv)) return NULL;
  int32_t f = 0;
  if (napi_get_value_int32(env, argv[0], &f) != napi_ok || (f != 4 && f != 6)) {
    napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", "Family must be 4 or 6");
    return NULL;
  }
  char dir[8] = {0};
  size_t dir_len = 0;
  if (napi_get_value_string_utf8(env, argv[1], dir, sizeof dir, &dir_len) != napi_ok ||
      (strcmp(dir, "orig") != 0 && strcmp(dir, "reply") != 0)) {
    napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", "Direction must be 'orig' or 'reply'");
    return NULL;
  }
  int family = f == 4 ? AF_INET : AF_INET6;
  size_t alen = f == 4 ? 4 : 16;
  struct ct_tuple key;
  memset(&key, 0, sizeof key);
  if (!get_buffer_addr(env, argv[2], alen, key.src) || !get_port_arg(env, argv[3], &key.src_port) ||
      !get_buffer_addr(env, argv[4], alen, key.dst) || !get_port_arg(env, argv[5], &key.dst_port))
    return NULL;
  struct ct_entry entry;
  bool found = false, opened = false;
  int err = conntrack_lookup(family, dir[0] == 'o' ? CT_BY_ORIG : CT_BY_REPLY, &key, &entry, &found, &opened);
  if (err != 0) {
    throw_errno(env, opened ? "Cannot look up the connection in conntrack" : "Cannot open a NETLINK_NETFILTER socket", err);
    return NULL;
  }
  napi_value result;
  if (!found) {
    CHECK_NAPI(env, napi_get_null(env, &result));
    return result;
  }
  return make_entry(env, &entry);
}

napi_status conntrack_register(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"conntrackLookup", NULL, conntrack_lookup_js, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
