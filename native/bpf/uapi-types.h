/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * The UAPI types and constants the BPF programs need (linux/types.h, linux/bpf.h), declared here
 * so that their build reads no kernel or architecture header: only libbpf's bpf_helpers.h and
 * bpf_core_read.h (libbpf-dev). Include it before those.
 */
#ifndef STOPD_BPF_UAPI_TYPES_H
#define STOPD_BPF_UAPI_TYPES_H

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef int __s32;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;

enum {
  BPF_MAP_TYPE_HASH = 1,
  BPF_MAP_TYPE_ARRAY = 2,
  BPF_MAP_TYPE_PERCPU_ARRAY = 6,
  BPF_MAP_TYPE_RINGBUF = 27,
};
#define BPF_ANY 0
#define BPF_F_MMAPABLE (1U << 10)

#endif
