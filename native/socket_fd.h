/*
 * socket_fd: what one socket descriptor of a process is (socket_fd.c); plain C, no N-API.
 */
#ifndef STOPD_SOCKET_FD_H
#define STOPD_SOCKET_FD_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

/* read_socket's answer when the descriptor no longer is the socket asked for. */
#define NOT_THIS_SOCKET (-1)

struct fd_socket {
  int domain;   /* AF_INET, AF_INET6, AF_UNIX or any other family */
  bool foreign; /* a socket of another network namespace (nothing else is read) */
  bool tcp;     /* an AF_INET/AF_INET6 SOCK_STREAM socket of protocol IPPROTO_TCP */
  uint64_t inode;
  uint32_t uid;
  uint8_t state;
  uint8_t local[16];
  uint8_t remote[16];
  uint16_t local_port;
  uint16_t remote_port;
};

/* Gone rather than failed: the process exited (ESRCH) or closed the descriptor (EBADF);
 * ENOENT, what /proc says of a vanished entry, is taken alike. */
static inline bool is_gone(int err) { return err == ESRCH || err == EBADF || err == ENOENT; }

/* Duplicates descriptor `fd` of process `pid` into this process (close-on-exec). Returns the
 * copy, or a negative errno (EPERM without ptrace access). */
int borrow_fd(int pid, int fd);

/* The cookie of this process's network namespace. Returns 0 or an errno (ENOPROTOOPT before
 * Linux 5.14). */
int own_netns_cookie(uint64_t *out);

/* Reads what our copy `fd` is. Returns 0, NOT_THIS_SOCKET when it is not the socket `inode`,
 * or a positive errno. */
int read_socket(int fd, uint64_t inode, uint64_t own_netns, struct fd_socket *out);

#endif
