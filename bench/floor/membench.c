/*
 * Table V's workload (paper 5.2): floating point arithmetic on random elements of a
 * 1 000 000-element float array, so both the CPU and memory accesses are loaded. Benchmark-only.
 *
 * Usage: membench ROUNDS
 * Prints one JSON line: the wall-clock seconds the rounds took and a checksum (so the
 * compiler keeps the work).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define SIZE 1000000

int main(int argc, char **argv) {
  long rounds = argc > 1 ? atol(argv[1]) : 50;
  float *a = malloc(SIZE * sizeof *a);
  if (a == NULL) return 2;
  uint64_t x = 88172645463325252ull;
  for (int i = 0; i < SIZE; i++) a[i] = (float)(i % 1000) / 1000.0f;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (long r = 0; r < rounds; r++) {
    for (int k = 0; k < SIZE; k++) {
      /* xorshift64: cheap, so memory latency and the float work dominate. */
      x ^= x << 13; x ^= x >> 7; x ^= x << 17;
      uint32_t i = (uint32_t)(x % SIZE), j = (uint32_t)((x >> 32) % SIZE);
      a[i] = a[i] * 0.999f + a[j] * 0.5f + 0.25f;
      if (a[i] > 1e6f) a[i] = 0.5f;
    }
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double sum = 0;
  for (int i = 0; i < SIZE; i += 997) sum += a[i];
  printf("{\"seconds\":%.6f,\"checksum\":%.3f}\n", (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9, sum);
  return 0;
}
