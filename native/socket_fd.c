/*
 * socket_fd: what one socket descriptor of a process is, without dumping a socket table
 * (plain C; the N-API binding is socket_fd_napi.c, the interface socket_fd.h).
 *
 * Why: SV analysis needs, for every socket descriptor of every closure member, to know whether
 * it is a TCP connection (4-tuple, state, owner) or a UNIX socket (name, peer). A sock_diag
 * dump answers that for every socket of the host at once, which costs hundreds of milliseconds
 * with tens of thousands of connections even when the closure holds three sockets. Here the
 * cost follows the closure: pidfd_getfd(2) (Linux 5.6) lends us the descriptor and the socket
 * itself says what it is (getsockopt, getsockname, getpeername, TCP_INFO); a UNIX socket's
 * name and peer come from one exact UNIX_DIAG lookup by inode (unixLookup, in sock_diag.c
 * with the other sock_diag requests).
 *
 * Exports (synchronous; failures are thrown as JS Errors with the errno text and a `code`):
 *   socketOf(pid, fd, inode) -> { domain: 'tcp', family, state, uid, inode, localAddr, localPort,
 *                                 remoteAddr, remotePort }
 *                             | { domain: 'unix', inode } | { domain: 'other', inode } | null
 * The tcp fields mean what they mean in sock_diag.h's tcp_entry (addresses as the kernel
 * gives them, v4-mapped ones included).
 *
 * Network namespaces: sock_diag sees the sockets of the caller's namespace only, which is the
 * host view stopd promises (DESIGN.md, Host view). A descriptor, though, can hold a socket of
 * another namespace (a process started by `ip netns exec`, or one handed over a UNIX socket),
 * whose addresses mean nothing here; socketOf calls such a socket 'other', as a dump would
 * not list it. The namespace is told by SO_NETNS_COOKIE (Linux 5.14), which needs no
 * capability; before 5.14 socketOf throws ENOPROTOOPT and the caller reads the tables.
 *
 * Side effect of borrowing a descriptor: the kernel treats it like one received over
 * SCM_RIGHTS (__receive_sock in net/core/sock.c) and re-tags the socket with the receiver's
 * cgroup v1 net_cls classid and net_prio index. Without a cgroup v1 net_cls or net_prio
 * hierarchy every process has the root's values and nothing changes; src/host/linux-sockets.ts
 * does not call socketOf when such a hierarchy is mounted.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "compat.h"
#include "socket_fd.h"

/* Duplicates descriptor `fd` of process `pid` into this process (close-on-exec, as
 * pidfd_getfd always makes it). Returns the copy, or a negative errno. The kernel checks
 * ptrace access (PTRACE_MODE_ATTACH_REALCREDS): EPERM without it. */
int borrow_fd(int pid, int fd) {
  int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (pidfd < 0) return -errno;
  int copy = (int)syscall(SYS_pidfd_getfd, pidfd, fd, 0);
  int err = errno;
  close(pidfd);
  return copy >= 0 ? copy : -err;
}

static int get_int_option(int fd, int level, int name, int *out) {
  socklen_t len = sizeof *out;
  return getsockopt(fd, level, name, out, &len) == 0 ? 0 : errno;
}

static int get_netns_cookie(int fd, uint64_t *out) {
  socklen_t len = sizeof *out;
  return getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, out, &len) == 0 ? 0 : errno;
}

/* Per thread: the addon may be loaded by the main thread and the analysis worker thread at
 * once, and a plain static written by both would be a data race (one read per thread is cheap). */
static __thread uint64_t own_cookie;
static __thread bool own_cookie_known;

/* The cookie of this process's network namespace, read once from a socket of our own: only
 * setns(2) could change it, and stopd never calls it. Returns 0 or an errno (ENOPROTOOPT
 * before Linux 5.14). */
int own_netns_cookie(uint64_t *out) {
  if (!own_cookie_known) {
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return errno;
    int err = get_netns_cookie(fd, &own_cookie);
    close(fd);
    if (err != 0) return err;
    own_cookie_known = true;
  }
  *out = own_cookie;
  return 0;
}

/* Copies an inet socket address of `family` into 16 bytes (4 used for IPv4) and a port. */
static int copy_inet(const struct sockaddr_storage *addr, int family, uint8_t *bytes, uint16_t *port) {
  if (addr->ss_family != family) return EAFNOSUPPORT;
  if (family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)addr;
    memcpy(bytes, &in->sin_addr, 4);
    *port = ntohs(in->sin_port);
  } else {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)addr;
    memcpy(bytes, &in6->sin6_addr, 16);
    *port = ntohs(in6->sin6_port);
  }
  return 0;
}

/*
 * Reads what our copy `fd` is. Returns 0, NOT_THIS_SOCKET when it is not the socket `inode`
 * (the process closed the number and reused it since /proc named it), or a positive errno.
 */
int read_socket(int fd, uint64_t inode, uint64_t own_netns, struct fd_socket *out) {
  struct stat st;
  if (fstat(fd, &st) != 0) return errno;
  if (!S_ISSOCK(st.st_mode) || (uint64_t)st.st_ino != inode) return NOT_THIS_SOCKET;
  memset(out, 0, sizeof *out);
  out->inode = (uint64_t)st.st_ino;
  /* The socket inode's owner: the value sock_diag reports as idiag_uid (sock_i_uid). */
  out->uid = (uint32_t)st.st_uid;
  uint64_t netns = 0;
  int err = get_netns_cookie(fd, &netns);
  if (err != 0) return err;
  if (netns != own_netns) {
    out->foreign = true;
    return 0;
  }
  int domain = 0, type = 0, protocol = 0;
  err = get_int_option(fd, SOL_SOCKET, SO_DOMAIN, &domain);
  if (err == 0) err = get_int_option(fd, SOL_SOCKET, SO_TYPE, &type);
  if (err == 0) err = get_int_option(fd, SOL_SOCKET, SO_PROTOCOL, &protocol);
  if (err != 0) return err;
  out->domain = domain;
  out->tcp = (domain == AF_INET || domain == AF_INET6) && type == SOCK_STREAM && protocol == IPPROTO_TCP;
  if (!out->tcp) return 0;

  struct sockaddr_storage addr;
  socklen_t len = sizeof addr;
  if (getsockname(fd, (struct sockaddr *)&addr, &len) != 0) return errno;
  err = copy_inet(&addr, domain, out->local, &out->local_port);
  if (err != 0) return err;
  len = sizeof addr;
  if (getpeername(fd, (struct sockaddr *)&addr, &len) == 0) {
    err = copy_inet(&addr, domain, out->remote, &out->remote_port);
    if (err != 0) return err;
  } else if (errno != ENOTCONN) {
    return errno;
  }
  /* ENOTCONN (listeners, closed sockets, and SYN_SENT ones: inet_getname refuses a peer
   * before the handshake completes) leaves the remote end all zero, port 0, as sock_diag shows
   * a listener; the caller asks sock_diag about SYN_SENT sockets. */
  struct tcp_info info;
  memset(&info, 0, sizeof info);
  len = sizeof info;
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0) return errno;
  out->state = info.tcpi_state;
  return 0;
}

