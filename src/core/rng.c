/* rng.c - xoshiro256** (Blackman & Vigna) seeded by splitmix64. */
#include "ringtrain/rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t rt_rng_derive(uint64_t seed, uint64_t stream, uint64_t index)
{
    uint64_t x = seed;
    uint64_t h = splitmix64(&x);
    x = h ^ (stream * 0xd1342543de82ef95ULL);
    h = splitmix64(&x);
    x = h ^ (index * 0xaf251af3b0f025b5ULL + 0x2545f4914f6cdd1dULL);
    return splitmix64(&x);
}

void rt_rng_seed(struct rt_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t rt_rng_u64(struct rt_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double rt_rng_uniform(struct rt_rng *r)
{
    return (double)(rt_rng_u64(r) >> 11) * 0x1.0p-53;
}

uint64_t rt_rng_below(struct rt_rng *r, uint64_t n)
{
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do
        x = rt_rng_u64(r);
    while (x >= limit);
    return x % n;
}

double rt_rng_normal(struct rt_rng *r)
{
    double u1 = 1.0 - rt_rng_uniform(r); /* (0, 1]: log is finite */
    double u2 = rt_rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}
