/*
 * bpf_recorder: loads the connection recorder's BPF object (bpf/connection-recorder.bpf.o)
 * with libbpf (opened at run time: libbpf_dl.h) and reads its per-CPU rings, mapped into this
 * process's memory.
 *
 * Plain C, no N-API (the binding is bpf_recorder_napi.c). Not thread-safe: one recorder is
 * used from one thread at a time.
 */
#ifndef STOPD_BPF_RECORDER_H
#define STOPD_BPF_RECORDER_H

#include <stddef.h>
#include <stdint.h>

/* Indexes of the loss counters (the `losses` map of the BPF program). */
#define RECORDER_LOSS_RING_FULL 0
#define RECORDER_LOSS_UNATTRIBUTED 1
/* Not in the map: the kernel's count of runs of the program it skipped because the program was
 * already running on that CPU (a softirq's state change interrupting a run), from the
 * program's info (recursion_misses, Linux 5.12; 0 before). */
#define RECORDER_LOSS_RECURSION 2
#define RECORDER_LOSS_KINDS 3

/* RECORDER_RECORD_SIZE, the bytes of a record. */
#include "recorder_merge.h"

struct bpf_recorder;

/* Opens libbpf once. Returns NULL, or why it cannot be used (dlerror text, a missing symbol). */
const char *recorder_libbpf_error(void);

/* Records a CPU's ring holds at least and at most (`records_per_cpu`, a power of two). */
#define RECORDER_MIN_RECORDS_PER_CPU 64
#define RECORDER_MAX_RECORDS_PER_CPU (1U << 20)

/* Loads and attaches the object at `path`, with rings of `records_per_cpu` records (a power of
 * two within the bounds above) for each possible CPU. Returns 0, or a positive errno with
 * libbpf's last warning (or another explanation) in `why`. */
int recorder_open(const char *path, uint32_t records_per_cpu, struct bpf_recorder **out, char *why, size_t why_len);

/* Moves waiting records into `dst` (`cap` bytes), back to back (`RECORDER_RECORD_SIZE` bytes
 * each), until none waits or `dst` is full; `*len` is the bytes written (a full `dst`: call
 * again, more may wait). The records of all CPUs come in the order they were made (by their
 * numbers), so a connection's `open` always before its `close`. `last`: no read follows (see
 * recorder_merge_read). Returns 0 or a positive errno. */
int recorder_drain(struct bpf_recorder *r, uint8_t *dst, size_t cap, bool last, size_t *len);

/* A descriptor that turns readable when a CPU's ring got half full since the last call of
 * recorder_take_wakeups (poll it, e.g. with libuv's uv_poll): a burst, to drain before the
 * next timed poll. Owned by the recorder. */
int recorder_wake_fd(struct bpf_recorder *r);

/* Consumes the wake-ups that made the descriptor readable. Returns 0 or a positive errno. */
int recorder_take_wakeups(struct bpf_recorder *r);

/* The running totals of the loss counters. Returns 0 or a positive errno. */
int recorder_losses(struct bpf_recorder *r, uint64_t totals[RECORDER_LOSS_KINDS]);

/* Detaches and frees everything. */
void recorder_close(struct bpf_recorder *r);

#endif
