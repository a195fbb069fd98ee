/*
 * Table IV's "loaded system" (paper 5.1.2): N idle processes, each holding two pipe
 * descriptors, one open file, and stdin, stdout and stderr: six descriptors each that every
 * pipe resolution must look at. With THREADS, each child runs that many threads (itself
 * included), every one asleep in pause(): issue 14's "10 000 threads in 20 processes" is
 * `crowd 20 FILE 500`. Benchmark-only.
 *
 * Usage: crowd N FILE [THREADS]
 * Prints "ready N" once every child is set up, then waits; the children die with it
 * (PR_SET_PDEATHSIG), and it leads its own process group for a group kill.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static void *sleep_forever(void *arg) {
  (void)arg;
  for (;;) pause();
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 3 && argc != 4) {
    fprintf(stderr, "usage: crowd N FILE [THREADS]\n");
    return 64;
  }
  int n = atoi(argv[1]);
  int threads = argc == 4 ? atoi(argv[3]) : 1;
  setpgid(0, 0);
  /* Share nothing with the process being measured: no descriptor inherited from whoever started
   * us (a test harness may pass a pipe to every process it starts) but stdin, stdout, stderr. */
  syscall(SYS_close_range, 3U, ~0U, 0U);
  int ready[2];
  if (pipe(ready) != 0) { perror("pipe"); return 2; }
  for (int i = 0; i < n; i++) {
    pid_t pid = fork();
    if (pid < 0) { perror("fork"); return 2; }
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      int null = open("/dev/null", O_RDWR);
      dup2(null, 0); dup2(null, 1); dup2(null, 2);
      if (null > 2) close(null);
      close(ready[0]);
      int p[2];
      if (pipe(p) != 0) _exit(2);
      int file = open(argv[2], O_RDONLY);
      if (file < 0) _exit(2);
      pthread_attr_t attr;
      pthread_attr_init(&attr);
      pthread_attr_setstacksize(&attr, 64 * 1024);
      for (int t = 1; t < threads; t++) {
        pthread_t thread;
        if (pthread_create(&thread, &attr, sleep_forever, NULL) != 0) _exit(2);
      }
      /* Closing the write end tells the parent this child is set up. */
      close(ready[1]);
      for (;;) pause();
    }
  }
  close(ready[1]);
  char byte;
  /* read() returns 0 once every child closed its copy of the write end. */
  while (read(ready[0], &byte, 1) > 0) {}
  close(ready[0]);
  printf("ready %d\n", n);
  fflush(stdout);
  for (;;) pause();
}
