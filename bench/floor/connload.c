/*
 * A connect-heavy client for the recorder benchmark (bench/sections/recorder.ts): for
 * DURATION_MS it opens a TCP connection to its own loopback listener, accepts it and closes
 * both ends with a reset (SO_LINGER 0: no TIME_WAIT, so ports never run out), as fast as it
 * can, in one thread. Each connection goes SYN_SENT -> ESTABLISHED -> CLOSE, every transition
 * the recorder's program runs on. Prints {"connections": N, "seconds": S} on one line.
 *
 *   connload DURATION_MS
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: connload DURATION_MS\n");
    return 2;
  }
  double duration = atof(argv[1]) / 1000.0;
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof addr;
  if (listener < 0 || bind(listener, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(listener, 128) != 0 ||
      getsockname(listener, (struct sockaddr *)&addr, &len) != 0) {
    perror("connload: listener");
    return 1;
  }
  struct linger reset = {.l_onoff = 1, .l_linger = 0};
  long count = 0;
  double start = now_s(), end = start + duration, t = start;
  while (t < end) {
    for (int i = 0; i < 64; i++) {
      int c = socket(AF_INET, SOCK_STREAM, 0);
      if (c < 0 || connect(c, (struct sockaddr *)&addr, sizeof addr) != 0) {
        perror("connload: connect");
        return 1;
      }
      int a = accept(listener, NULL, NULL);
      if (a < 0) {
        perror("connload: accept");
        return 1;
      }
      setsockopt(c, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
      close(c);
      close(a);
      count++;
    }
    t = now_s();
  }
  printf("{\"connections\": %ld, \"seconds\": %.6f}\n", count, t - start);
  return 0;
}
