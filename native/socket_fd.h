/*
 * socket_fd: per-socket lookups for SV analysis (socketOf, unixLookup), see socket_fd.c.
 * The only thing stopd_native.c knows of it is this registration function.
 */
#ifndef STOPD_SOCKET_FD_H
#define STOPD_SOCKET_FD_H

#include <node_api.h>

/* Adds socketOf and unixLookup to `exports`. Returns napi_ok, or the failing call's status. */
napi_status socket_fd_register(napi_env env, napi_value exports);

#endif
