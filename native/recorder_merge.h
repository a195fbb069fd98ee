/*
 * recorder_merge: the reading side of the connection recorder's per-CPU rings
 * (bpf/connection-recorder.bpf.c). The program writes each record into the ring of the CPU it
 * runs on, numbered by one counter shared by all CPUs; a read takes everything the rings hold
 * into a batch, orders it by number, and hands out the records up to the first number that has
 * not arrived yet: the rest waits for the next read. So records come out in the order they were
 * made, across CPUs, and a connection's `open` always before its `close` (the close is made
 * after the open, so it has a larger number), even when the close's CPU was read before the
 * open's record was written.
 *
 * Plain C over memory it is given (the rings are mapped by bpf_recorder.c; the test driver,
 * test/support/recorder-merge-driver.c, gives it ordinary memory and plays the program).
 * Not thread-safe: one reader.
 */
#ifndef STOPD_RECORDER_MERGE_H
#define STOPD_RECORDER_MERGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bytes per record: `struct record` of bpf/connection-recorder.bpf.c. */
#define RECORDER_RECORD_SIZE 120

/* `struct record` of bpf/connection-recorder.bpf.c (the same natural alignment here). */
struct recorder_record {
  uint8_t kind, family; /* kind: 1 open, 2 close */
  uint16_t local_port, remote_port;
  uint8_t pad[2];
  uint32_t tid, pid, uid, gid, loginuid, sessionid;
  uint32_t netns;
  uint32_t seq; /* the record's number, counted over all CPUs in the order records were made */
  uint64_t socket;
  uint64_t connect_ns, established_ns, close_ns;
  uint8_t local[16], remote[16];
  char comm[16];
};

/* `struct cursor` of bpf/connection-recorder.bpf.c: `head` (records written on that CPU, ever)
 * is the program's, `tail` (records taken) the reader's, each in a cache line of its own. */
struct recorder_cursor {
  uint64_t head;
  uint64_t mask; /* records a CPU - 1 */
  uint64_t pad1[6];
  uint64_t tail;
  uint64_t pad2[7];
};

/* A record of the batch by its number, counted from the next number to hand out. */
struct recorder_merge_key {
  uint32_t distance;
  uint32_t at;
};

struct recorder_merge {
  uint32_t cpus, per_cpu;
  /* The rings: cursors[cpus]; rings[cpu * per_cpu + (n & (per_cpu - 1))] is record n of cpu. */
  struct recorder_cursor *cursors;
  struct recorder_record *rings;
  /* The batch: records taken from the rings (room for 2 * cpus * per_cpu), `order` the ready
   * ones by number; `ready` of them can be handed out (`handed` have been), the rest of
   * `batch_len` wait for a missing number. */
  struct recorder_record *batch;
  struct recorder_merge_key *order;
  size_t batch_len, ready, handed;
  /* The number of the next record to hand out; how many refills in a row found it missing. */
  uint32_t next_seq;
  unsigned missing_refills;
};

/* Prepares `m` for rings of `per_cpu` records (a power of two) on `cpus` CPUs at `cursors`,
 * `rings`, and allocates its batch. Returns 0 or ENOMEM. */
int recorder_merge_init(struct recorder_merge *m, uint32_t cpus, uint32_t per_cpu, struct recorder_cursor *cursors, struct recorder_record *rings);

/* Frees the batch (not the rings). */
void recorder_merge_free(struct recorder_merge *m);

/* Moves ready records into `dst` (`cap` bytes, at least one record), back to back, taking from
 * the rings first when none is ready; returns the bytes written (`cap` rounded down to records:
 * full, more may wait). `last`: the reader will not read again (the recorder closes), so
 * records waiting for a missing number are handed out too, in order, rather than lost. */
size_t recorder_merge_read(struct recorder_merge *m, uint8_t *dst, size_t cap, bool last);

#endif
