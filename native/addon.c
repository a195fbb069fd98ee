/*
 * stopd_native: the C N-API addon behind src/host (loaded by src/host/native-addon.ts, which
 * falls back to /proc readers in JavaScript when it cannot load). Why native, per part:
 * constant-time socket lookups by 4-tuple or inode (Node has no netlink), one-pass and
 * incremental scans of every process's descriptors, and per-socket descriptor lookups whose
 * cost follows the closure rather than the host's socket table.
 *
 * Layout (one part per subsystem; see register.h for how to add one):
 *   sock_diag.c/.h     netlink SOCK_DIAG: TCP by 4-tuple and dump, UNIX by inode and dump
 *   fd_scan.c/.h       one pass over every /proc/PID/fd (sockets and pipes)
 *   fd_index*.c/.h     the incremental descriptor index kept between refreshes
 *                      (why it is exact: FD_INDEX.md)
 *   socket_fd.c/.h     what one socket descriptor of a process is (pidfd_getfd)
 *   bpf_recorder.c/.h  the eBPF connection recorder: loads bpf/connection-recorder.bpf.o with
 *                      libbpf (dlopen'ed at run time) and maps its per-CPU rings (BPF.md)
 *   recorder_merge.c/.h  reads those rings, merging the CPUs' records by number
 *   conntrack.c/.h     one conntrack entry by tuple (NETLINK_NETFILTER GET, never a dump)
 *   NAME_napi.c        each part's N-API binding and its NAME_register
 *   napi_common.c/.h   N-API helpers shared by the bindings (errors, arguments, properties)
 *   compat.h           system-call numbers older headers lack (also used by bench/floor)
 *
 * Exports (all synchronous; errors are thrown as JS Errors with the errno text and a `code`):
 *   tcpLookup(family, localAddr, localPort, remoteAddr, remotePort) -> TcpEntry | null
 *   tcpDump(family) -> TcpEntry[]
 *   unixDump() -> UnixEntry[]
 *   unixLookup(inode) -> UnixEntry | null
 *   scanFds(procRoot, { namedPipes }) -> FdScan (see fd_scan_napi.c)
 *   fdIndexCreate, fdIndexRefresh, fdIndexHolders, fdIndexFds, fdIndexDenied, fdIndexClose
 *     (see fd_index_napi.c)
 *   socketOf(pid, fd, inode) (see socket_fd_napi.c)
 *   recorderSupport, recorderOpen, recorderRead, recorderClose (see bpf_recorder_napi.c)
 *   conntrackLookup(family, 'orig'|'reply', src, srcPort, dst, dstPort) (see conntrack_napi.c)
 * TcpEntry  = { family, state, uid, inode, localAddr: Buffer, localPort, remoteAddr: Buffer, remotePort }
 * UnixEntry = { inode, type, state, path: string | null, peer }
 * The TypeScript view of all of them is src/host/native-addon.ts.
 *
 * State between calls: each thread keeps one netlink socket (sock_diag.c; closed by an
 * environment cleanup hook) and one network-namespace cookie (socket_fd.c); the fd index lives
 * only in the handle the caller holds (an external released by fdIndexClose or by the garbage
 * collector), never in a static. The exception is libbpf: its print callback is process-wide,
 * so bpf_recorder.c keeps libbpf's last warning (and the dlopen'ed functions) in statics.
 */
#include <node_api.h>

#include "napi_common.h"
#include "register.h"

NAPI_MODULE_INIT(/* napi_env env, napi_value exports */) {
  if (sock_diag_register(env, exports) != napi_ok || fd_scan_register(env, exports) != napi_ok ||
      fd_index_register(env, exports) != napi_ok || socket_fd_register(env, exports) != napi_ok ||
      bpf_recorder_register(env, exports) != napi_ok || conntrack_register(env, exports) != napi_ok) {
    throw_napi_failure(env);
    return NULL;
  }
  return exports;
}
