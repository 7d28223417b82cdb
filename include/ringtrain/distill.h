/* distill.h - the frozen teacher of a distillation phase and its outputs for the training
 * rows (soft targets), computed per batch or once and cached.
 *
 * Every rank holds the same teacher (rank 0 reads it and broadcasts, or it is the model
 * the previous phase left on every rank) and computes the teacher's outputs for its own
 * rows: no teacher traffic per step. The teacher runs row-wise (rt_model_use_rowwise): a
 * row's outputs depend on that row alone, so outputs computed once in a pass over the data
 * and cached are bit-identical to outputs computed again in every step's batch, whatever
 * the batch's other rows. That is what makes cache_teacher = on give the same student as
 * off.
 *
 * The cache holds the outputs for every row a rank can meet: its own rows (r, r + world,
 * ...) under shuffle = shard, all rows otherwise. Rank r computes the outputs of its own
 * rows only; with a global order the ranks then exchange them once (each rank's block
 * broadcast in chunks), so each row is computed once in the whole job. Kept in memory, or
 * in a per-rank HDF5 scratch file (rowstore.h) that is removed when the phase ends. */
#ifndef RT_DISTILL_H
#define RT_DISTILL_H

#include <stdint.h>

#include "ringtrain/comm.h"
#include "ringtrain/dataset.h"
#include "ringtrain/model.h"
#include "ringtrain/rowstore.h"

struct rt_teacher {
    struct rt_model model;     /* owned, frozen: row-wise inference */
    struct rt_rowstore *cache; /* owned; NULL: outputs computed per batch */
    int rank, world, shard;    /* the cache's row index (distill.c) */
    int64_t *offsets;          /* (world + 1) owned: first cache row of each rank's rows */
    int64_t *index;            /* (max_batch) owned scratch */
    float *out;                /* (max_batch, K) owned: a batch's outputs read from the cache */
};

/* Where rt_teacher_load reads: a model file or a checkpoint's /model, or a distillation
 * checkpoint's /distill/teacher. */
enum rt_teacher_source { RT_TEACHER_FILE, RT_TEACHER_CHECKPOINT };

/* distill.cache_teacher: where the frozen teacher's outputs are kept between epochs. */
enum rt_teacher_cache { RT_CACHE_OFF, RT_CACHE_ON, RT_CACHE_MEMORY, RT_CACHE_FILE };
int rt_teacher_cache_parse(const char *name, enum rt_teacher_cache *out);
const char *rt_teacher_cache_name(enum rt_teacher_cache c);

/* Takes m over (moved: the caller must not free it) as the teacher. Allocates the row-wise
 * weights; RT_ERR_NOMEM. On failure m is freed. */
int rt_teacher_adopt(struct rt_teacher *t, struct rt_model *m, int rank, int world);

/* Collective: rank 0 reads the teacher from path and broadcasts it; every rank returns the
 * same agreed status. max_batch: rows of the largest batch the teacher will see. */
int rt_teacher_load(struct rt_teacher *t, rt_comm_t *comm, const char *path,
                    enum rt_teacher_source from, int max_batch);

/* Collective: computes and keeps the teacher's outputs for the training rows this rank can
 * meet. source and o are the training set's (o->shuffle decides which rows); kind is where
 * they are kept, file the scratch file of RT_ROWSTORE_FILE (per rank). */
int rt_teacher_cache_build(struct rt_teacher *t, rt_comm_t *comm, const char *source,
                           const struct rt_data_opts *o, enum rt_rowstore_kind kind,
                           const char *file);

/* The teacher's outputs (b->local_rows, K) for batch b: from the cache when there is one,
 * else a forward pass. *out is valid until the next call. RT_ERR_IO from a cache file. */
int rt_teacher_outputs(struct rt_teacher *t, const struct rt_batch *b, const float **out);

/* Bytes the cache would hold on this rank for a training set of rows rows under shuffle. */
double rt_teacher_cache_bytes(const struct rt_teacher *t, int64_t rows, enum rt_shuffle shuffle);

/* Frees everything, the cache file included. A zeroed teacher is a no-op. */
void rt_teacher_free(struct rt_teacher *t);

#endif
