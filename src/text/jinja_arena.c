/* Memory for the Jinja engine: a compiled tree and each render's values live in an arena, freed
 * at once, so values can share parts freely and nothing is counted by reference. A render's
 * arena has a limit, which is how a template that builds without end is stopped. */
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include "text/jinja_internal.h"

#define BLOCK_SIZE (64 * 1024)

struct jblock {
    struct jblock *next;
    size_t used, cap;
    alignas(max_align_t) unsigned char data[];
};

static struct jblock *new_block(jarena *a, size_t need) {
    size_t cap = need > BLOCK_SIZE ? need : BLOCK_SIZE;
    if (a->limit && a->total + cap > a->limit) {
        a->failed = a->over_limit = true;
        return NULL;
    }
    struct jblock *b = calloc(1, sizeof *b + cap);
    if (!b) {
        a->failed = true;
        return NULL;
    }
    b->cap = cap;
    a->total += cap;
    /* A large piece gets a block of its own, kept behind the current one so that block's room
     * is not given up. */
    if (need > BLOCK_SIZE / 4 && a->head) {
        b->next = a->head->next;
        a->head->next = b;
    } else {
        b->next = a->head;
        a->head = b;
    }
    return b;
}

void *ja_alloc(jarena *a, size_t n) {
    if (a->failed) return NULL;
    size_t align = alignof(max_align_t);
    n = (n + align - 1) / align * align;
    if (n == 0) n = align;
    struct jblock *b = a->head;
    if (!b || b->cap - b->used < n || n > BLOCK_SIZE / 4) {
        b = new_block(a, n);
        if (!b) return NULL;
    }
    void *p = b->data + b->used;
    b->used += n;
    return p;
}

char *ja_strndup(jarena *a, const char *s, size_t n) {
    char *p = ja_alloc(a, n + 1);
    if (p && n) memcpy(p, s, n);
    return p;
}

void ja_free(jarena *a) {
    for (struct jblock *b = a->head, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    a->head = NULL;
    a->total = 0;
}
