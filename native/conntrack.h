/*
 * conntrack: one connection-tracking entry by tuple, and conntrack events, over netlink
 * NETLINK_NETFILTER (ctnetlink); plain C, no N-API (the binding is conntrack_napi.c).
 *
 * Everything runs in the calling thread's network namespace, so a daemon in a container or a
 * test host sees that namespace's table only (conntrack tables are per namespace). Lookups
 * name no zone and so search the default zone (0); flows that the ruleset put in another zone
 * (`ct zone set`, iptables CT --zone) are not found by them.
 *
 * Every function returns 0 or a positive errno; *opened tells "no ctnetlink socket at all"
 * (EPROTONOSUPPORT: no NETLINK_NETFILTER in the kernel; EPERM/EACCES) from "the request failed".
 */
#ifndef STOPD_CONNTRACK_H
#define STOPD_CONNTRACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One direction of a flow, as the kernel tracks it (addresses of 4 or 16 bytes). */
struct ct_tuple {
  uint8_t src[16];
  uint8_t dst[16];
  uint16_t src_port;
  uint16_t dst_port;
};

/* One conntrack entry (TCP only). */
struct ct_entry {
  uint8_t family; /* AF_INET or AF_INET6 */
  uint8_t proto; /* IPPROTO_TCP, IPPROTO_UDP, ... (CTA_PROTO_NUM) */
  uint8_t tcp_state; /* enum tcp_conntrack (linux/netfilter/nf_conntrack_tcp.h); 0 when absent */
  uint16_t zone;
  uint32_t status; /* enum ip_conntrack_status bits (IPS_SRC_NAT, IPS_DST_NAT, ...) */
  uint32_t id;
  uint32_t timeout; /* seconds left; 0 in destroy events */
  struct ct_tuple orig;  /* as the first packet had it: the inside host's view for masquerade */
  struct ct_tuple reply; /* as the answers have it: the outside host's view for masquerade */
};

/* Which tuple a lookup names. */
enum ct_direction { CT_BY_ORIG, CT_BY_REPLY };

/* The TCP entry whose `direction` tuple is `key` (family AF_INET or AF_INET6). *found is false
 * when the kernel has none (0 returned). One GET request: the kernel answers from its hash
 * table (ctnetlink_get_conntrack -> nf_conntrack_find_get), never a dump. */
int conntrack_lookup(int family, enum ct_direction direction, const struct ct_tuple *key, struct ct_entry *out,
                     bool *found, bool *opened);

/* An event subscription: new and destroyed flows, read without blocking. */
struct ct_events;

/* Subscribes to NFNLGRP_CONNTRACK_NEW and NFNLGRP_CONNTRACK_DESTROY with a receive buffer of
 * `buffer_bytes` (forced beyond rmem_max when the caller may: CAP_NET_ADMIN). Binding to the
 * groups needs CAP_NET_ADMIN too (nfnetlink_bind). */
int conntrack_events_open(size_t buffer_bytes, struct ct_events **out, bool *opened);

/* Reads the TCP events waiting, at most `max`, without blocking: kinds[i] is 1 for a new flow,
 * 2 for a destroyed one. *lost is set when the kernel dropped events since the last read
 * (ENOBUFS: the receive buffer overflowed). */
int conntrack_events_read(struct ct_events *events, struct ct_entry *items, uint8_t *kinds, size_t max, size_t *count,
                          bool *lost);

void conntrack_events_close(struct ct_events *events);

#endif
