/* arena.h - one aligned block, handed out front to back, freed all at once.
 *
 * Every long-lived buffer (parameters, gradients, moments, activations, data batches) comes
 * from an arena sized before training starts, so the step loop never allocates. */
#ifndef RT_ARENA_H
#define RT_ARENA_H

#include <stddef.h>

#define RT_ARENA_ALIGN 64 /* bytes: a cache line, and enough for AVX-512 loads */

struct rt_arena {
    char *base;       /* owned; NULL until rt_arena_init */
    size_t cap;       /* bytes in base */
    size_t used;      /* bytes handed out, a multiple of RT_ARENA_ALIGN */
    const char *name; /* borrowed; for error messages */
};

/* Bytes an allocation of `bytes` takes in an arena (rounded up to the alignment). Use it to
 * size an arena by adding up what will be asked of it. */
size_t rt_arena_footprint(size_t bytes);

/* Allocates cap bytes (zeroed). Fails with RT_ERR_NOMEM and a message naming the arena. */
int rt_arena_init(struct rt_arena *a, const char *name, size_t cap);

/* Returns a zeroed, 64-byte aligned block of `bytes` from a, or NULL and records an
 * RT_ERR_NOMEM message with the needed and available byte counts. */
void *rt_arena_alloc(struct rt_arena *a, size_t bytes);

/* Frees the block; a zeroed or already freed arena is a no-op. */
void rt_arena_free(struct rt_arena *a);

#endif
