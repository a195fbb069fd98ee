/*
 * bpf_recorder: loads the connection recorder's BPF object (bpf/connection-recorder.bpf.o)
 * with libbpf (opened at run time: libbpf_dl.h) and drains its ring buffer.
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
#define RECORDER_LOSS_KINDS 2

struct bpf_recorder;

/* Opens libbpf once. Returns NULL, or why it cannot be used (dlerror text, a missing symbol). */
const char *recorder_libbpf_error(void);

/* Loads and attaches the object at `path`. Returns 0, or a positive errno with libbpf's last
 * warning (or another explanation) in `why`. */
int recorder_open(const char *path, struct bpf_recorder **out, char *why, size_t why_len);

/* Moves every record waiting in the ring buffer into the recorder's batch: afterwards
 * `recorder_batch` holds them back to back (`record_size` bytes each). Returns 0 or a positive errno. */
int recorder_drain(struct bpf_recorder *r);
const uint8_t *recorder_batch(const struct bpf_recorder *r, size_t *len);
/* Forgets the batch (after the caller copied it). */
void recorder_batch_clear(struct bpf_recorder *r);

/* The running totals of the loss counters. Returns 0 or a positive errno. */
int recorder_losses(struct bpf_recorder *r, uint64_t totals[RECORDER_LOSS_KINDS]);

/* Detaches and frees everything. */
void recorder_close(struct bpf_recorder *r);

#endif
