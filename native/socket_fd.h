/*
 * socket_fd: what one socket descriptor of a process is (socketOf), see socket_fd.c.
 * The only thing stopd_native.c knows of it is this registration function.
 */
#ifndef STOPD_SOCKET_FD_H
#define STOPD_SOCKET_FD_H

#include <node_api.h>

/* Adds socketOf to `exports`. Returns napi_ok, or the failing call's status. */
napi_status socket_fd_register(napi_env env, napi_value exports);

#endif
