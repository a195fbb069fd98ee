/*
 * The parts of the addon, one `register` each: addon.c's module init calls every one of them
 * and does nothing else. A part is a plain C pair (NAME.c, NAME.h: no N-API, testable and
 * reusable alone) plus its binding NAME_napi.c, whose NAME_register adds the part's functions
 * to `exports`. A new part (an eBPF loader, conntrack lookups) adds its three files, one line
 * here, one call in addon.c and its sources in binding.gyp.
 *
 * Each returns napi_ok, or the failing call's status.
 */
#ifndef STOPD_REGISTER_H
#define STOPD_REGISTER_H

#include <node_api.h>

/* sock_diag: tcpLookup, tcpDump, unixDump, unixLookup (netlink SOCK_DIAG). */
napi_status sock_diag_register(napi_env env, napi_value exports);

/* fd_scan: scanFds (one pass over every /proc/PID/fd). */
napi_status fd_scan_register(napi_env env, napi_value exports);

/* fd_index: fdIndexCreate, fdIndexRefresh, fdIndexHolders, fdIndexFds, fdIndexDenied,
 * fdIndexClose (the incremental descriptor index, FD_INDEX.md). */
napi_status fd_index_register(napi_env env, napi_value exports);

/* socket_fd: socketOf (one socket descriptor of a process, via pidfd_getfd). */
napi_status socket_fd_register(napi_env env, napi_value exports);

/* bpf_recorder: recorderSupport, recorderOpen, recorderRead, recorderClose (the eBPF connection
 * recorder of issue 14; libbpf.so.1 is opened at run time). */
napi_status bpf_recorder_register(napi_env env, napi_value exports);

/* conntrack: conntrackLookup (one NETLINK_NETFILTER conntrack GET by tuple), conntrackEventsOpen,
 * conntrackEventsRead, conntrackEventsClose (new and destroyed flows). */
napi_status conntrack_register(napi_env env, napi_value exports);

#endif
