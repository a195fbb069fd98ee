/*
 * Drives native/recorder_merge.c over ordinary memory, for test/recorder-merge.test.ts: this
 * program plays the BPF program (it writes numbered records into per-CPU rings) and the daemon
 * (it reads), following commands on standard input, one per line:
 *
 *   rings CPUS PER_CPU   first: CPUS rings of PER_CPU records (a power of two)
 *   write CPU SEQ        the program writes a record numbered SEQ on CPU (refused: "full")
 *   read N               the reader reads into a buffer of N records
 *   last N               the same, as the last read before the recorder closes
 *
 * For each read it prints the numbers it got, in order, on one line ("read" then the numbers).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "recorder_merge.h"

int main(void) {
  struct recorder_merge m;
  struct recorder_cursor *cursors = NULL;
  struct recorder_record *rings = NULL;
  uint32_t cpus = 0, per_cpu = 0;
  char line[256];
  while (fgets(line, sizeof line, stdin) != NULL) {
    unsigned long a = 0, b = 0;
    if (sscanf(line, "rings %lu %lu", &a, &b) == 2) {
      cpus = (uint32_t)a;
      per_cpu = (uint32_t)b;
      cursors = calloc(cpus, sizeof *cursors);
      rings = calloc((size_t)cpus * per_cpu, sizeof *rings);
      if (cursors == NULL || rings == NULL || recorder_merge_init(&m, cpus, per_cpu, cursors, rings) != 0) return 1;
      for (uint32_t cpu = 0; cpu < cpus; cpu++) cursors[cpu].mask = per_cpu - 1;
    } else if (sscanf(line, "write %lu %lu", &a, &b) == 2 && cursors != NULL && a < cpus) {
      struct recorder_cursor *c = &cursors[a];
      if (c->head - c->tail > c->mask) {
        printf("full\n");
        continue;
      }
      struct recorder_record *r = &rings[a * per_cpu + (c->head & c->mask)];
      memset(r, 0, sizeof *r);
      r->kind = 1;
      r->seq = (uint32_t)b;
      c->head++;
    } else if ((sscanf(line, "read %lu", &a) == 1 || sscanf(line, "last %lu", &a) == 1) && cursors != NULL && a > 0) {
      uint8_t *dst = malloc(a * RECORDER_RECORD_SIZE);
      if (dst == NULL) return 1;
      size_t len = recorder_merge_read(&m, dst, a * RECORDER_RECORD_SIZE, line[0] == 'l');
      printf("read");
      for (size_t at = 0; at < len; at += RECORDER_RECORD_SIZE) {
        struct recorder_record r;
        memcpy(&r, dst + at, sizeof r);
        printf(" %u", r.seq);
      }
      printf("\n");
      free(dst);
    } else {
      fprintf(stderr, "recorder-merge-driver: cannot read the command: %s", line);
      return 2;
    }
  }
  return 0;
}
