/* rng.h - seeded, portable random numbers (xoshiro256** seeded through splitmix64).
 *
 * Everything random in a job (initial weights, shuffles, synthetic data) derives from the
 * job seed through rt_rng_derive(), so a run is reproducible on any machine and rank count:
 * the state is four plain words, saved in checkpoints as they are. */
#ifndef RT_RNG_H
#define RT_RNG_H

#include <stdint.h>

struct rt_rng {
    uint64_t s[4];
};

/* Mixes a seed with two stream ids into an independent 64-bit seed, e.g.
 * rt_rng_derive(seed, RT_STREAM_SHUFFLE, epoch). Pure function. */
uint64_t rt_rng_derive(uint64_t seed, uint64_t stream, uint64_t index);

/* Stream ids, so that two uses of one seed never share numbers. */
enum rt_rng_stream {
    RT_STREAM_INIT = 1,    /* parameter initialisation, index = layer */
    RT_STREAM_SHUFFLE = 2, /* epoch permutation, index = epoch */
    RT_STREAM_SYNTH_X = 3, /* synthetic inputs, index = row */
    RT_STREAM_SYNTH_TEACHER = 4,
    RT_STREAM_SHARD = 5,   /* per-rank shuffles in shard mode, index = epoch*2^20+rank */
    RT_STREAM_DROPOUT = 6, /* dropout masks, index = global step (then row, layer) */
};

void rt_rng_seed(struct rt_rng *r, uint64_t seed);
uint64_t rt_rng_u64(struct rt_rng *r);
/* Uniform in [0, 1) with 53 random bits. */
double rt_rng_uniform(struct rt_rng *r);
/* Uniform integer in [0, n), unbiased (rejection). n > 0. */
uint64_t rt_rng_below(struct rt_rng *r, uint64_t n);
/* Standard normal (Box-Muller, both values used in turn is avoided: one per call keeps
 * the stream position simple to reason about). */
double rt_rng_normal(struct rt_rng *r);

#endif
