/*
 * The N-API binding of conntrack.c:
 *   conntrackLookup(family: 4|6, direction: 'orig'|'reply', src: Buffer, srcPort, dst: Buffer, dstPort)
 *     -> ConntrackEntry | null
 * ConntrackEntry = { family, tcpState, zone, status, id, timeout,
 *                    orig: Tuple, reply: Tuple }, Tuple = { src: Buffer, srcPort, dst: Buffer, dstPort }
 *   conntrackEventsOpen(bufferBytes) -> handle; conntrackEventsRead(handle) -> { events, lost };
 *   conntrackEventsClose(handle)
 * (TypeScript: src/host/native-addon.ts).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
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

/* The subscription behind a JS external; closed by conntrackEventsClose or the collector. */
struct events_handle {
  struct ct_events *events;
};

static void finalize_events(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  struct events_handle *h = data;
  conntrack_events_close(h->events);
  free(h);
}

/* conntrackEventsOpen(bufferBytes) -> handle */
static napi_value events_open_js(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  double bytes = 0;
  if (napi_get_value_double(env, argv[0], &bytes) != napi_ok || !(bytes >= 4096 && bytes <= 1073741824.0)) {
    napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", "bufferBytes must be from 4096 to 1073741824");
    return NULL;
  }
  struct events_handle *h = calloc(1, sizeof *h);
  if (h == NULL) {
    throw_errno(env, "Cannot subscribe to conntrack events", ENOMEM);
    return NULL;
  }
  bool opened = false;
  int err = conntrack_events_open((size_t)bytes, &h->events, &opened);
  if (err != 0) {
    free(h);
    throw_errno(env, opened ? "Cannot subscribe to conntrack events" : "Cannot open a NETLINK_NETFILTER socket", err);
    return NULL;
  }
  napi_value external;
  if (napi_create_external(env, h, finalize_events, NULL, &external) != napi_ok) {
    conntrack_events_close(h->events);
    free(h);
    throw_napi_failure(env);
    return NULL;
  }
  return external;
}

static struct events_handle *get_events(napi_env env, napi_value v) {
  void *data = NULL;
  napi_valuetype type;
  if (napi_typeof(env, v, &type) != napi_ok || type != napi_external || napi_get_value_external(env, v, &data) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "Expected a handle from conntrackEventsOpen");
    return NULL;
  }
  return data;
}

#define EVENTS_PER_READ 1024

/* conntrackEventsRead(handle) -> { events: [{ kind: 'new'|'destroy', entry }], lost } (at most 1024) */
static napi_value events_read_js(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  struct events_handle *h = get_events(env, argv[0]);
  if (h == NULL) return NULL;
  if (h->events == NULL) {
    napi_throw_error(env, "ERR_INVALID_STATE", "The conntrack event subscription is closed");
    return NULL;
  }
  struct ct_entry *items = calloc(EVENTS_PER_READ, sizeof *items);
  uint8_t kinds[EVENTS_PER_READ];
  if (items == NULL) {
    throw_errno(env, "Cannot read conntrack events", ENOMEM);
    return NULL;
  }
  size_t count = 0;
  bool lost = false;
  int err = conntrack_events_read(h->events, items, kinds, EVENTS_PER_READ, &count, &lost);
  if (err != 0) {
    free(items);
    throw_errno(env, "Cannot read conntrack events", err);
    return NULL;
  }
  napi_value result, arr, flag;
  bool ok = napi_create_object(env, &result) == napi_ok && napi_create_array_with_length(env, count, &arr) == napi_ok;
  for (size_t i = 0; ok && i < count; i++) {
    napi_value event, kind, entry = make_entry(env, &items[i]);
    ok = entry != NULL && napi_create_object(env, &event) == napi_ok &&
         napi_create_string_utf8(env, kinds[i] == 1 ? "new" : "destroy", NAPI_AUTO_LENGTH, &kind) == napi_ok &&
         napi_set_named_property(env, event, "kind", kind) == napi_ok &&
         napi_set_named_property(env, event, "entry", entry) == napi_ok && napi_set_element(env, arr, (uint32_t)i, event) == napi_ok;
  }
  free(items);
  ok = ok && napi_set_named_property(env, result, "events", arr) == napi_ok && napi_get_boolean(env, lost, &flag) == napi_ok &&
       napi_set_named_property(env, result, "lost", flag) == napi_ok;
  if (!ok) {
    throw_napi_failure(env);
    return NULL;
  }
  return result;
}

/* conntrackEventsClose(handle): idempotent. */
static napi_value events_close_js(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  struct events_handle *h = get_events(env, argv[0]);
  if (h == NULL) return NULL;
  conntrack_events_close(h->events);
  h->events = NULL;
  napi_value undefined;
  CHECK_NAPI(env, napi_get_undefined(env, &undefined));
  return undefined;
}

napi_status conntrack_register(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"conntrackLookup", NULL, conntrack_lookup_js, NULL, NULL, NULL, napi_enumerable, NULL},
      {"conntrackEventsOpen", NULL, events_open_js, NULL, NULL, NULL, napi_enumerable, NULL},
      {"conntrackEventsRead", NULL, events_read_js, NULL, NULL, NULL, napi_enumerable, NULL},
      {"conntrackEventsClose", NULL, events_close_js, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
