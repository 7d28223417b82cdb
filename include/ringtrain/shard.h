/* shard.h - the shard contract: which range of a flat block each of `size` ranks owns.
 *
 * One rule, used by comm (a reduce-scatter leaves shard j complete on rank j, an allgather
 * sends rank j's shard j to everyone), optim (with optim.shard = on a rank keeps moments for
 * its shards only) and ckpt (rank 0 writes and reads the moments shard by shard, so files
 * stay independent of the rank count). No MPI here: plain arithmetic on (n, size, j).
 *
 * A block of n elements is cut into `size` nearly equal shards: with q = n / size and
 * r = n % size, shard j has q + 1 elements for j < r and q for j >= r, and starts at
 * j q + min(j, r). Example, n = 10, size = 4: [0,3) [3,6) [6,8) [8,10). With n < size some
 * shards are empty. Offsets are size_t: n may exceed 2^31. */
#ifndef RT_SHARD_H
#define RT_SHARD_H

#include <stddef.h>

static inline size_t rt_shard_off(size_t n, int size, int j)
{
    size_t q = n / (size_t)size, r = n % (size_t)size, uj = (size_t)j;
    return uj * q + (uj < r ? uj : r);
}

static inline size_t rt_shard_len(size_t n, int size, int j)
{
    return n / (size_t)size + ((size_t)j < n % (size_t)size);
}

#endif
