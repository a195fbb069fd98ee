/*
 * The reading side of the recorder's per-CPU rings: recorder_merge.h.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "recorder_merge.h"

_Static_assert(sizeof(struct recorder_record) == RECORDER_RECORD_SIZE, "struct record of connection-recorder.bpf.c");
_Static_assert(sizeof(struct recorder_cursor) == 128, "struct cursor of connection-recorder.bpf.c");

int recorder_merge_init(struct recorder_merge *m, uint32_t cpus, uint32_t per_cpu, struct recorder_cursor *cursors, struct recorder_record *rings) {
  memset(m, 0, sizeof *m);
  m->cpus = cpus;
  m->per_cpu = per_cpu;
  m->cursors = cursors;
  m->rings = rings;
  size_t total = (size_t)cpus * per_cpu;
  /* What the rings hold, and as many records waiting from the last read (refill keeps them
   * fewer). Untouched pages cost no memory, so a quiet host pays for what it records. */
  m->batch = malloc(2 * total * sizeof *m->batch);
  m->order = malloc(2 * total * sizeof *m->order);
  if (m->batch == NULL || m->order == NULL) {
    recorder_merge_free(m);
    return ENOMEM;
  }
  return 0;
}

void recorder_merge_free(struct recorder_merge *m) {
  free(m->batch);
  free(m->order);
  m->batch = NULL;
  m->order = NULL;
}

static struct recorder_record *slot(struct recorder_merge *m, uint32_t cpu, uint64_t n) {
  return &m->rings[(size_t)cpu * m->per_cpu + (n & (m->per_cpu - 1))];
}

static int by_number(const void *a, const void *b) {
  const struct recorder_merge_key *x = a, *y = b;
  return x->distance < y->distance ? -1 : x->distance > y->distance;
}

/* Appends what the rings hold to the batch's first `n` records; returns the new count. */
static size_t take_rings(struct recorder_merge *m, size_t n) {
  for (uint32_t cpu = 0; cpu < m->cpus; cpu++) {
    struct recorder_cursor *c = &m->cursors[cpu];
    /* Acquire: the records up to the head are whole (the program publishes with an exchange). */
    uint64_t head = __atomic_load_n(&c->head, __ATOMIC_ACQUIRE);
    for (uint64_t i = c->tail; i != head; i++) m->batch[n++] = *slot(m, cpu, i);
    /* Release: the copies are done before the program may write these slots again. */
    __atomic_store_n(&c->tail, head, __ATOMIC_RELEASE);
  }
  return n;
}

/* Orders the batch's `n` records by number; returns how many come before the first missing one. */
static size_t order_batch(struct recorder_merge *m, size_t n) {
  for (size_t k = 0; k < n; k++) m->order[k] = (struct recorder_merge_key){m->batch[k].seq - m->next_seq, (uint32_t)k};
  qsort(m->order, n, sizeof *m->order, by_number);
  size_t ready = 0;
  while (ready < n && m->order[ready].distance == ready) ready++;
  return ready;
}

/*
 * Takes everything the rings hold into the batch, after the records still waiting from the last
 * refill, orders it by number and marks ready the records up to the first missing number.
 *
 * A number is missing only while its record is being written: the program takes a number once
 * nothing can stop the record, and writes it with preemption off, so it comes within
 * microseconds (the rings are read again a few times), or at the next read when its CPU was
 * interrupted. A number missing at three refills in a row (a bug, never seen) is given up, so
 * that nothing waits for ever, and so are numbers missing when the waiting records would fill
 * the batch, or at the last read.
 *
 * Bounds: the batch holds 2 * total records (total: what all rings hold). What waits is at most
 * total (beyond, everything is handed out), and each reading of the rings adds at most total, so
 * the rings are read again only while the batch holds at most total.
 */
static void refill(struct recorder_merge *m, bool last) {
  size_t total = (size_t)m->cpus * m->per_cpu;
  /* What waits, moved to the front through the batch's second half (it may sit anywhere). */
  size_t waiting = m->batch_len - m->ready;
  for (size_t k = 0; k < waiting; k++) m->batch[total + k] = m->batch[m->order[m->ready + k].at];
  memmove(m->batch, m->batch + total, waiting * sizeof *m->batch);
  m->batch_len = m->ready = m->handed = 0;
  size_t n = take_rings(m, waiting);
  if (n == 0) return;
  size_t ready = order_batch(m, n);
  for (int again = 0; ready < n && n <= total && again < 3; again++) {
    sched_yield();
    size_t more = take_rings(m, n);
    if (more > n) ready = order_batch(m, n = more);
  }
  if (ready < n && (last || n > total || (ready == 0 && ++m->missing_refills >= 3))) {
    /* Give up the missing numbers: everything is ready, in order. */
    ready = n;
  }
  if (ready > 0) {
    m->missing_refills = 0;
    m->next_seq = m->batch[m->order[ready - 1].at].seq + 1;
  }
  m->batch_len = n;
  m->ready = ready;
}

size_t recorder_merge_read(struct recorder_merge *m, uint8_t *dst, size_t cap, bool last) {
  size_t len = 0;
  if (m->handed == m->ready) refill(m, last);
  while (m->handed < m->ready && len + RECORDER_RECORD_SIZE <= cap) {
    memcpy(dst + len, &m->batch[m->order[m->handed].at], RECORDER_RECORD_SIZE);
    len += RECORDER_RECORD_SIZE;
    m->handed++;
  }
  return len;
}
