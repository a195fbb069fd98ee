// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * The run tracker's kernel half (issue 14, "keep SV flat"; loaded by run_tracker.c, used by
 * the descriptor index, fd_index.c). One tp_btf program on sched:sched_switch notes which
 * processes ran: both the task switched out and the task switched in are marked in `ran`,
 * by their process id as the index's pid namespace numbers it. The index then re-reads only
 * the marked processes (and those on a CPU right now, `on_cpu`) instead of reading a
 * schedstat file per thread of every process. Why that is exact: native/FD_INDEX.md, "With
 * the run tracker".
 *
 * Kernel threads are not marked: they hold no descriptors, and one that becomes a user
 * process does so by exec, after which its next switch-out is marked. A task outside the
 * index's pid namespace is not marked either: it has no number there. When `ran` is full a
 * mark cannot be kept; `overflows` counts that, and the index then re-reads every process.
 *
 * The kernel types are declared by hand with preserve_access_index (CO-RE), as in
 * connection-recorder.bpf.c. Build: scripts/build-bpf.mjs (npm run build-bpf).
 */
#include "uapi-types.h"

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

/* include/linux/sched.h */
#define PF_KTHREAD 0x00200000

struct ns_common {
  unsigned int inum;
} __attribute__((preserve_access_index));

struct pid_namespace {
  struct ns_common ns;
} __attribute__((preserve_access_index));

struct upid {
  int nr;
  struct pid_namespace *ns;
} __attribute__((preserve_access_index));

struct pid {
  unsigned int level;
  struct upid numbers[1];
} __attribute__((preserve_access_index));

struct task_struct {
  unsigned int flags;
  struct task_struct *group_leader;
  struct pid *thread_pid;
} __attribute__((preserve_access_index));

/* Set by run_tracker.c after loading, before attaching: the index's pid namespace. */
struct config {
  __u32 level; /* its depth: 0 for the initial namespace */
  __u32 inum;  /* its inode number */
};

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct config);
} config SEC(".maps");

/* Processes that were switched in or out since the index last took the marks. Sized for a
 * busy host between two SV requests; past it, `overflows`. */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 32768);
  __type(key, __u32);
  __type(value, __u8);
} ran SEC(".maps");

/* The process each CPU is running now (0: none of the namespace's, or the idle task). */
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u32);
} on_cpu SEC(".maps");

/* Marks that could not be kept (`ran` full), a running total. */
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u64);
} overflows SEC(".maps");

/* The process id of `task` in the configured namespace, or 0. */
static __always_inline __u32 process_id(const struct task_struct *task, const struct config *cfg) {
  struct pid *pid = BPF_CORE_READ(task, group_leader, thread_pid);
  if (pid == 0) return 0;
  /* A plain local: inside bpf_core_read the whole expression is relocated, and `config` is
   * not a kernel type. */
  __u32 want = cfg->level;
  if (want > 31 || BPF_CORE_READ(pid, level) < want) return 0;
  struct upid number;
  if (bpf_core_read(&number, sizeof number, &pid->numbers[want]) != 0) return 0;
  if (BPF_CORE_READ(number.ns, ns.inum) != cfg->inum || number.nr <= 0) return 0;
  return (__u32)number.nr;
}

static __always_inline void mark(__u32 process) {
  __u8 one = 1;
  if (process == 0 || bpf_map_lookup_elem(&ran, &process) != 0) return;
  if (bpf_map_update_elem(&ran, &process, &one, BPF_ANY) != 0) {
    __u32 zero = 0;
    __u64 *count = bpf_map_lookup_elem(&overflows, &zero);
    if (count != 0) __sync_fetch_and_add(count, 1);
  }
}

/* sched_switch(bool preempt, struct task_struct *prev, struct task_struct *next, ...): read
 * from the raw arguments; the trailing prev_state of Linux 5.18 and later is not read, so
 * older kernels load it too. */
SEC("tp_btf/sched_switch")
int note_switch(unsigned long long *ctx) {
  const struct task_struct *prev = (const struct task_struct *)ctx[1];
  const struct task_struct *next = (const struct task_struct *)ctx[2];
  __u32 zero = 0;
  const struct config *cfg = bpf_map_lookup_elem(&config, &zero);
  if (cfg == 0 || cfg->inum == 0) return 0;
  __u32 incoming = (BPF_CORE_READ(next, flags) & PF_KTHREAD) != 0 ? 0 : process_id(next, cfg);
  __u32 *current = bpf_map_lookup_elem(&on_cpu, &zero);
  if (current != 0) *current = incoming;
  if ((BPF_CORE_READ(prev, flags) & PF_KTHREAD) == 0) mark(process_id(prev, cfg));
  mark(incoming);
  return 0;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
