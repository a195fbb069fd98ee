/*
 * fd_index_map: inode -> the descriptors holding it, an open-addressing hash map (struct
 * inode_map in fd_index.h).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "fd_index_parts.h"

uint64_t mix64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

struct inode_slot *map_find(const struct inode_map *m, uint64_t inode) {
  if (m->cap == 0 || inode == 0) return NULL;
  for (size_t i = mix64(inode) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
    struct inode_slot *s = &m->slots[i];
    if (s->inode == inode) return s;
    if (s->inode == 0) return NULL; /* the table is never full, so a probe always ends */
  }
}

/* Rebuilds the table at most a third full, dropping keys that no descriptor holds any more. */
static int map_rehash(struct inode_map *m) {
  size_t live = 0;
  for (size_t i = 0; i < m->cap; i++)
    if (m->slots[i].count > 0) live++;
  size_t cap = 64;
  while (cap / 3 < live + 1) cap *= 2;
  struct inode_slot *slots = calloc(cap, sizeof *slots);
  if (slots == NULL) return ENOMEM;
  for (size_t i = 0; i < m->cap; i++) {
    struct inode_slot *old = &m->slots[i];
    if (old->count == 0) {
      free(old->items);
      continue;
    }
    size_t j = mix64(old->inode) & (cap - 1);
    while (slots[j].inode != 0) j = (j + 1) & (cap - 1);
    slots[j] = *old;
  }
  free(m->slots);
  m->slots = slots;
  m->cap = cap;
  m->used = live;
  return 0;
}

int map_add(struct inode_map *m, uint64_t inode, struct holder h) {
  if (inode == 0) return 0;
  struct inode_slot *s = map_find(m, inode);
  if (s == NULL) {
    if ((m->used + 1) * 3 > m->cap * 2) { /* keep it at most two thirds full */
      int err = map_rehash(m);
      if (err != 0) return err;
    }
    size_t i = mix64(inode) & (m->cap - 1);
    while (m->slots[i].inode != 0) i = (i + 1) & (m->cap - 1);
    s = &m->slots[i];
    s->inode = inode;
    m->used++;
  }
  if (s->count == s->cap) {
    uint32_t cap = s->cap == 0 ? 2 : s->cap * 2;
    if (cap < s->cap) return ENOMEM;
    struct holder *items = realloc(s->items, cap * sizeof *items);
    if (items == NULL) return ENOMEM;
    s->items = items;
    s->cap = cap;
  }
  s->items[s->count++] = h;
  return 0;
}

void map_remove(struct inode_map *m, uint64_t inode, int32_t pid, int32_t fd) {
  struct inode_slot *s = map_find(m, inode);
  if (s == NULL) return;
  for (uint32_t i = 0; i < s->count; i++) {
    if (s->items[i].pid == pid && s->items[i].fd == fd) {
      s->items[i] = s->items[--s->count];
      return;
    }
  }
}

void map_free(struct inode_map *m) {
  for (size_t i = 0; i < m->cap; i++) free(m->slots[i].items);
  free(m->slots);
  memset(m, 0, sizeof *m);
}
