/*
 * Issue 14's "10 000 threads in 20 processes": P processes of T threads each (the main thread
 * included), every thread asleep in pause(). Benchmark-only.
 *
 * Usage: threads P T
 * Prints "ready P T" once every thread of every process is started, then waits; the
 * processes die with it (PR_SET_PDEATHSIG), and it leads its own process group.
 */
#define _GNU_SOURCE
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
  if (argc != 3) {
    fprintf(stderr, "usage: threads P T\n");
    return 64;
  }
  int processes = atoi(argv[1]), threads = atoi(argv[2]);
  setpgid(0, 0);
  /* Share nothing with the process being measured: no descriptor inherited from whoever started
   * us (a test harness may pass a pipe to every process it starts) but stdin, stdout, stderr. */
  syscall(SYS_close_range, 3U, ~0U, 0U);
  int ready[2];
  if (pipe(ready) != 0) { perror("pipe"); return 2; }
  for (int i = 0; i < processes; i++) {
    pid_t pid = fork();
    if (pid < 0) { perror("fork"); return 2; }
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      close(ready[0]);
      pthread_attr_t attr;
      pthread_attr_init(&attr);
      pthread_attr_setstacksize(&attr, 64 * 1024);
      for (int t = 1; t < threads; t++) {
        pthread_t thread;
        if (pthread_create(&thread, &attr, sleep_forever, NULL) != 0) _exit(2);
      }
      /* Closing the write end tells the parent this process is set up. */
      close(ready[1]);
      for (;;) pause();
    }
  }
  close(ready[1]);
  char byte;
  while (read(ready[0], &byte, 1) > 0) {}
  close(ready[0]);
  printf("ready %d %d\n", processes, threads);
  fflush(stdout);
  for (;;) pause();
}
