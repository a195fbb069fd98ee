/*
 * The connection recorder's loader (bpf_recorder.h), over libbpf opened at run time
 * (libbpf_dl.h).
 *
 * The program writes each record into the ring of the CPU it runs on (bpf/connection-
 * recorder.bpf.c: `records`, `cursors`, both mapped here), numbered by one counter shared by
 * all CPUs. A read takes everything the rings hold into a batch, orders it by number, and hands
 * out the records up to the first number that has not arrived yet: the rest waits for the next
 * read. So records come out in the order they were made, across CPUs, and a connection's
 * `open` always before its `close` (the close is made after the open, so it has a larger
 * number), even when the close's CPU was read before the open's record was written.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/bpf.h>

#include "bpf_recorder.h"
#include "libbpf_dl.h"

const char *recorder_libbpf_error(void) {
  return libbpf_dl_error();
}

/* `struct record` of bpf/connection-recorder.bpf.c (the same natural alignment here). */
struct record {
  uint8_t kind, family;
  uint16_t local_port, remote_port;
  uint8_t pad[2];
  uint32_t tid, pid, uid, gid, loginuid, sessionid;
  uint32_t netns;
  uint32_t seq;
  uint64_t socket;
  uint64_t connect_ns, established_ns, close_ns;
  uint8_t local[16], remote[16];
  char comm[16];
};
_Static_assert(sizeof(struct record) == RECORDER_RECORD_SIZE, "struct record of connection-recorder.bpf.c");

/* `struct cursor` of bpf/connection-recorder.bpf.c: `head` is the program's, `tail` ours. */
struct cursor {
  uint64_t head;
  uint64_t mask;
  uint64_t pad1[6];
  uint64_t tail;
  uint64_t pad2[7];
};
_Static_assert(sizeof(struct cursor) == 128, "struct cursor of connection-recorder.bpf.c");

/* A record of the batch by its number, counted from the next number to hand out. */
struct order_key {
  uint32_t distance;
  uint32_t at;
};

struct bpf_recorder {
  struct bpf_object *obj;
  struct bpf_link *link;
  struct bpf_map *losses;
  int prog_fd;
  /* The program's wake-ups (its `wakeups` ring buffer), and that map's descriptor. */
  struct ring_buffer *wakeups;
  int wake_fd;
  uint32_t cpus, per_cpu;
  struct cursor *cursors;
  size_t cursors_bytes;
  struct record *rings;
  size_t rings_bytes;
  /* The batch: records taken from the rings, `order` the ready ones by number; `ready` of them
   * can be handed out (`handed` have been), the rest of `batch_len` wait for a missing number. */
  struct record *batch;
  struct order_key *order;
  size_t batch_len, ready, handed;
  /* The number of the next record to hand out; how many refills in a row found it missing. */
  uint32_t next_seq;
  unsigned missing_refills;
};

void recorder_close(struct bpf_recorder *r) {
  if (r == NULL) return;
  if (r->wakeups != NULL) libbpf.ring_free(r->wakeups);
  if (r->link != NULL) libbpf.link_destroy(r->link);
  if (r->cursors != NULL) munmap(r->cursors, r->cursors_bytes);
  if (r->rings != NULL) munmap(r->rings, r->rings_bytes);
  if (r->obj != NULL) libbpf.object_close(r->obj);
  free(r->batch);
  free(r->order);
  free(r);
}

/* Records the failing step (libbpf_dl_failure) and frees what was made. */
static int fail(struct bpf_recorder *r, int err, const char *what, char *why, size_t why_len) {
  err = libbpf_dl_failure(err, what, why, why_len);
  recorder_close(r);
  return err;
}

/* Sizes the rings before the object is loaded: one cursor per possible CPU, per_cpu records each. */
static int size_rings(struct bpf_object *obj, void *ctx, char *why, size_t why_len) {
  struct bpf_recorder *r = ctx;
  struct bpf_map *cursors = libbpf.find_map(obj, "cursors");
  struct bpf_map *records = libbpf.find_map(obj, "records");
  if (cursors == NULL || records == NULL) {
    snprintf(why, why_len, "the BPF object lacks its rings (cursors, records)");
    return ENOENT;
  }
  if (libbpf.map_set_max_entries(cursors, r->cpus) != 0 || libbpf.map_set_max_entries(records, r->cpus * r->per_cpu) != 0) {
    return libbpf_dl_failure(errno, "cannot size the recorder's rings", why, why_len);
  }
  return 0;
}

/* The map's values, mapped shared into this process; NULL with errno set. */
static void *map_values(struct bpf_map *map, size_t bytes) {
  void *at = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, libbpf.map_fd(map), 0);
  return at == MAP_FAILED ? NULL : at;
}

static size_t page_round(size_t bytes) {
  long page = sysconf(_SC_PAGESIZE);
  size_t p = page > 0 ? (size_t)page : 4096;
  return (bytes + p - 1) / p * p;
}

/* A wake-up's content (the CPU) does not matter: the reader drains every ring. */
static int ignore_wakeup(void *ctx, void *data, size_t size) {
  (void)ctx;
  (void)data;
  (void)size;
  return 0;
}

int recorder_open(const char *path, uint32_t records_per_cpu, struct bpf_recorder **out, char *why, size_t why_len) {
  *out = NULL;
  const char *no_lib = recorder_libbpf_error();
  if (no_lib != NULL) {
    snprintf(why, why_len, "%s", no_lib);
    return ELIBACC;
  }
  if (records_per_cpu < RECORDER_MIN_RECORDS_PER_CPU || records_per_cpu > RECORDER_MAX_RECORDS_PER_CPU ||
      (records_per_cpu & (records_per_cpu - 1)) != 0) {
    snprintf(why, why_len, "records per CPU must be a power of two from %u to %u, not %u", RECORDER_MIN_RECORDS_PER_CPU,
             RECORDER_MAX_RECORDS_PER_CPU, records_per_cpu);
    return EINVAL;
  }
  int cpus = libbpf.possible_cpus();
  if (cpus <= 0) {
    snprintf(why, why_len, "cannot count the possible CPUs (/sys/devices/system/cpu/possible)");
    return cpus < 0 ? -cpus : EIO;
  }
  /* The map's index is a u32, and the rings (and the batch, as large) stay below 4 GiB each. */
  if ((uint64_t)cpus * records_per_cpu * RECORDER_RECORD_SIZE >= (1ULL << 32)) {
    snprintf(why, why_len, "rings of %u records for each of %d CPUs would need more than 4 GiB; ask for fewer records per CPU", records_per_cpu, cpus);
    return EINVAL;
  }
  struct bpf_recorder *r = calloc(1, sizeof *r);
  if (r == NULL) return ENOMEM;
  r->cpus = (uint32_t)cpus;
  r->per_cpu = records_per_cpu;
  size_t total = (size_t)r->cpus * r->per_cpu;
  /* The batch: what the rings hold, and as many records waiting from the last read (refill
   * keeps them fewer). Untouched pages cost no memory, so a quiet host pays for what it records. */
  r->batch = malloc(2 * total * sizeof *r->batch);
  r->order = malloc(2 * total * sizeof *r->order);
  if (r->batch == NULL || r->order == NULL) {
    recorder_close(r);
    return ENOMEM;
  }
  libbpf_dl_begin_load();
  int err = libbpf_dl_load_object(path, &r->obj, size_rings, r, why, why_len);
  if (err != 0) {
    recorder_close(r);
    goto out;
  }
  struct bpf_program *prog = libbpf.find_program(r->obj, "record_state");
  struct bpf_map *cursors = libbpf.find_map(r->obj, "cursors");
  struct bpf_map *records = libbpf.find_map(r->obj, "records");
  struct bpf_map *wakeups = libbpf.find_map(r->obj, "wakeups");
  r->losses = libbpf.find_map(r->obj, "losses");
  if (prog == NULL || cursors == NULL || records == NULL || wakeups == NULL || r->losses == NULL) {
    err = fail(r, ENOENT, "the BPF object lacks record_state, cursors, records, wakeups or losses", why, why_len);
    goto out;
  }
  r->wake_fd = libbpf.map_fd(wakeups);
  r->wakeups = libbpf.ring_new(r->wake_fd, ignore_wakeup, NULL, NULL);
  if (r->wakeups == NULL) {
    err = fail(r, errno, "cannot map the recorder's wake-up ring buffer", why, why_len);
    goto out;
  }
  r->prog_fd = libbpf.program_fd(prog);
  r->cursors_bytes = page_round((size_t)r->cpus * sizeof *r->cursors);
  r->rings_bytes = page_round(total * sizeof *r->rings);
  r->cursors = map_values(cursors, r->cursors_bytes);
  r->rings = map_values(records, r->rings_bytes);
  if (r->cursors == NULL || r->rings == NULL) {
    err = fail(r, errno, "cannot map the recorder's rings", why, why_len);
    goto out;
  }
  /* The program writes nothing before its ring has a mask: set them all before attaching. */
  for (uint32_t cpu = 0; cpu < r->cpus; cpu++) r->cursors[cpu].mask = r->per_cpu - 1;
  r->link = libbpf.program_attach(prog);
  if (r->link == NULL) {
    err = fail(r, errno, "cannot attach to sock:inet_sock_set_state", why, why_len);
    goto out;
  }
  *out = r;
out:
  libbpf_dl_end_load();
  return err;
}

static struct record *slot(struct bpf_recorder *r, uint32_t cpu, uint64_t n) {
  return &r->rings[(size_t)cpu * r->per_cpu + (n & (r->per_cpu - 1))];
}

int recorder_wake_fd(struct bpf_recorder *r) {
  return r->wake_fd;
}

int recorder_take_wakeups(struct bpf_recorder *r) {
  int n = libbpf.ring_consume(r->wakeups);
  return n < 0 ? -n : 0;
}

static int by_number(const void *a, const void *b) {
  const struct order_key *x = a, *y = b;
  return x->distance < y->distance ? -1 : x->distance > y->distance;
}

/* Appends what the rings hold to the batch's first `n` records; returns the new count. */
static size_t take_rings(struct bpf_recorder *r, size_t n) {
  for (uint32_t cpu = 0; cpu < r->cpus; cpu++) {
    struct cursor *c = &r->cursors[cpu];
    /* Acquire: the records up to the head are whole (the program publishes with an exchange). */
    uint64_t head = __atomic_load_n(&c->head, __ATOMIC_ACQUIRE);
    for (uint64_t i = c->tail; i != head; i++) r->batch[n++] = *slot(r, cpu, i);
    /* Release: the copies are done before the program may write these slots again. */
    __atomic_store_n(&c->tail, head, __ATOMIC_RELEASE);
  }
  return n;
}

/* Orders the batch's `n` records by number; returns how many come before the first missing one. */
static size_t order_batch(struct bpf_recorder *r, size_t n) {
  for (size_t k = 0; k < n; k++) r->order[k] = (struct order_key){r->batch[k].seq - r->next_seq, (uint32_t)k};
  qsort(r->order, n, sizeof *r->order, by_number);
  size_t ready = 0;
  while (ready < n && r->order[ready].distance == ready) ready++;
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
 * the batch.
 *
 * Bounds: the batch holds 2 * total records (total: what all rings hold). What waits is at most
 * total (beyond, everything is handed out), and each reading of the rings adds at most total, so
 * the rings are read again only while the batch holds at most total.
 */
static void refill(struct bpf_recorder *r) {
  size_t total = (size_t)r->cpus * r->per_cpu;
  /* What waits, moved to the front through the batch's second half (it may sit anywhere). */
  size_t waiting = r->batch_len - r->ready;
  for (size_t k = 0; k < waiting; k++) r->batch[total + k] = r->batch[r->order[r->ready + k].at];
  memmove(r->batch, r->batch + total, waiting * sizeof *r->batch);
  r->batch_len = r->ready = r->handed = 0;
  size_t n = take_rings(r, waiting);
  if (n == 0) return;
  size_t ready = order_batch(r, n);
  for (int again = 0; ready < n && n <= total && again < 3; again++) {
    sched_yield();
    size_t more = take_rings(r, n);
    if (more > n) ready = order_batch(r, n = more);
  }
  if (ready < n && (n > total || (ready == 0 && ++r->missing_refills >= 3))) {
    /* Give up the missing numbers: everything is ready, in order. */
    ready = n;
  }
  if (ready > 0) {
    r->missing_refills = 0;
    r->next_seq = r->batch[r->order[ready - 1].at].seq + 1;
  }
  r->batch_len = n;
  r->ready = ready;
}

int recorder_drain(struct bpf_recorder *r, uint8_t *dst, size_t cap, size_t *len) {
  *len = 0;
  if (cap < RECORDER_RECORD_SIZE) return EINVAL;
  if (r->handed == r->ready) refill(r);
  while (r->handed < r->ready && *len + RECORDER_RECORD_SIZE <= cap) {
    memcpy(dst + *len, &r->batch[r->order[r->handed].at], RECORDER_RECORD_SIZE);
    *len += RECORDER_RECORD_SIZE;
    r->handed++;
  }
  return 0;
}

int recorder_losses(struct bpf_recorder *r, uint64_t totals[RECORDER_LOSS_KINDS]) {
  for (uint32_t i = 0; i < RECORDER_LOSS_RECURSION; i++) {
    if (libbpf.map_lookup(r->losses, &i, sizeof i, &totals[i], sizeof totals[i], 0) != 0) return errno > 0 ? errno : EIO;
  }
  /* A kernel older than the field leaves it 0 (it fills only the part of the struct it knows). */
  struct bpf_prog_info info;
  uint32_t info_len = sizeof info;
  memset(&info, 0, sizeof info);
  if (libbpf.obj_get_info_by_fd(r->prog_fd, &info, &info_len) != 0) return errno > 0 ? errno : EIO;
  totals[RECORDER_LOSS_RECURSION] = info.recursion_misses;
  return 0;
}
