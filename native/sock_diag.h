/*
 * sock_diag: TCP and UNIX socket lookups over netlink (sock_diag.c); plain C, no N-API.
 *
 * Every request runs on a netlink socket kept per thread (see nl_once in sock_diag.c). Each
 * function returns 0 or a positive errno and sets *opened to whether that socket could be
 * opened at all, so a caller can tell "no netlink" from "the request failed".
 */
#ifndef STOPD_SOCK_DIAG_H
#define STOPD_SOCK_DIAG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/un.h>

/* One TCP socket as inet_diag reports it. */
struct tcp_entry {
  uint8_t family; /* AF_INET or AF_INET6, as the kernel reports the socket */
  uint8_t state;
  uint32_t uid;
  uint32_t inode;
  uint8_t local[16];
  uint8_t remote[16];
  uint16_t local_port;
  uint16_t remote_port;
};


/* One UNIX socket as unix_diag reports it, with its name and peer. */
struct unix_entry {
  uint32_t inode;
  uint32_t peer;
  uint8_t type;
  uint8_t state;
  uint8_t has_name;
  uint16_t name_len;
  char name[sizeof(((struct sockaddr_un *)0)->sun_path) + 1];
};

/* The socket with this 4-tuple (family AF_INET or AF_INET6; addresses of 4 or 16 bytes, the
 * local end first). *found is false when the kernel has none (0 or ENOENT returned). */
int sock_diag_tcp_lookup(int family, const uint8_t *local, uint16_t local_port, const uint8_t *remote,
                         uint16_t remote_port, struct tcp_entry *out, bool *found, bool *opened);

/* Every TCP socket of `family` that a process can hold (no TIME_WAIT or SYN_RECV ones).
 * *items is malloc'ed (NULL on failure) and the caller frees it. */
int sock_diag_tcp_dump(int family, struct tcp_entry **items, size_t *count, bool *opened);

/* Every UNIX socket. *items is malloc'ed (NULL on failure) and the caller frees it. */
int sock_diag_unix_dump(struct unix_entry **items, size_t *count, bool *opened);

/* The UNIX socket with inode `inode`. *found is false when there is none (0 or ENOENT returned). */
int sock_diag_unix_lookup(uint32_t inode, struct unix_entry *out, bool *found, bool *opened);

/* Closes this thread's kept netlink socket (at environment teardown; see sock_diag_napi.c). */
void sock_diag_close_thread_socket(void);

#endif
