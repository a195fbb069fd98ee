/*
 * compat: system-call numbers and socket options that older C library headers lack, shared by
 * every native part and by bench/floor/floor.c (which includes this file), so a build on old
 * headers behaves like one on new headers instead of silently compiling a feature out. At run
 * time an old kernel answers ENOSYS (or ENOPROTOOPT), which each caller already handles.
 *
 * New system calls have had one number on every architecture since Linux 5.1
 * (asm-generic/unistd.h; alpha and MIPS add an offset, and their headers are new enough to
 * define them).
 */
#ifndef STOPD_COMPAT_H
#define STOPD_COMPAT_H

#include <sys/socket.h>
#include <sys/syscall.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434 /* Linux 5.3 */
#endif
#ifndef SYS_close_range
#define SYS_close_range 436 /* Linux 5.9 */
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438 /* Linux 5.6 */
#endif
#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71 /* Linux 5.14; asm-generic/socket.h; alpha, MIPS, PA-RISC and SPARC differ */
#endif

#endif
