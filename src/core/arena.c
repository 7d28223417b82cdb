/* arena.c - the bump allocator behind every long-lived buffer. */
#include "ringtrain/arena.h"
#include "ringtrain/status.h"

#include <stdlib.h>
#include <string.h>

size_t rt_arena_footprint(size_t bytes)
{
    return (bytes + RT_ARENA_ALIGN - 1) / RT_ARENA_ALIGN * RT_ARENA_ALIGN;
}

int rt_arena_init(struct rt_arena *a, const char *name, size_t cap)
{
    a->name = name;
    a->used = 0;
    a->cap = rt_arena_footprint(cap);
    a->base = NULL;
    if (a->cap == 0) return RT_OK;
    a->base = aligned_alloc(RT_ARENA_ALIGN, a->cap);
    if (!a->base) return rt_errorf(RT_ERR_NOMEM, "%s: cannot allocate %zu bytes", name, a->cap);
    memset(a->base, 0, a->cap);
    return RT_OK;
}

void *rt_arena_alloc(struct rt_arena *a, size_t bytes)
{
    size_t need = rt_arena_footprint(bytes);
    if (need > a->cap - a->used) {
        rt_errorf(RT_ERR_NOMEM, "%s: arena overflow: need %zu bytes, %zu available", a->name, need,
                  a->cap - a->used);
        return NULL;
    }
    void *p = a->base + a->used;
    a->used += need;
    return p;
}

void rt_arena_free(struct rt_arena *a)
{
    free(a->base);
    a->base = NULL;
    a->cap = a->used = 0;
}
