/* replicas.c - replica checksums: every rank's parameters (and masks) compared bit for bit,
 * every train.check_every steps and after every decision rank 0 broadcast (masks, shrink). */
#include "ringtrain/status.h"
#include "train/trainer.h"

#include <stdio.h>
#include <string.h>

/* Fletcher-style sums over the parameters' bits: order-sensitive, so a swapped or
 * changed value shows, and cheap next to a training step. */
static uint64_t params_checksum(const float *p, size_t n)
{
    uint64_t a = 1, b = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, &p[i], sizeof bits);
        a += bits;
        b += a;
    }
    return a ^ (b << 1) ^ (b >> 63);
}

/* Replicas must stay bit-identical; a difference means a bug or a hardware fault, and
 * training on would silently average different models. The gathered list is the same on
 * every rank, so every rank takes the same branch without a further agreement. */
int trainer_check_replicas(struct trainer *t)
{
    trainer_params_ready(t);
    uint64_t sum = params_checksum(t->model.params, t->model.n_params);
    if (t->has_masks) { /* the masks are part of the replica */
        const uint8_t *b = t->masks.packed;
        uint64_t h = 1469598103934665603ULL; /* FNV-1a */
        for (size_t i = 0; i < t->masks.packed_bytes; i++)
            h = (h ^ b[i]) * 1099511628211ULL;
        sum ^= h << 1 | h >> 63;
    }
    rt_comm_allgather_u64(t->comm, sum, t->checksums);
    char ranks[256] = "";
    size_t len = 0;
    int differ = 0;
    for (int r = 1; r < t->world; r++)
        if (t->checksums[r] != t->checksums[0]) {
            if (len < sizeof ranks - 16)
                len += (size_t)snprintf(ranks + len, sizeof ranks - len, "%s%d", differ ? ", " : "",
                                        r);
            differ++;
        }
    if (!differ) return RT_OK;
    return rt_errorf(RT_ERR_INTERNAL,
                     "replicas diverged at step %lld: the parameters of rank%s %s differ from "
                     "rank 0's (checksums compared every %lld steps)",
                     (long long)t->step, differ > 1 ? "s" : "", ranks,
                     (long long)t->cfg->check_every);
}
