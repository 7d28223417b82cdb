/* model_file.h - a trained model as one HDF5 file (architecture + parameters).
 *
 * Layout (h5py: f.attrs[...], f["layers/0/weight"][...]; README "Model files" in full):
 *   root attributes
 *     format          string "ringtrain-model"
 *     format_version  int32 2
 *     architecture    string, the layer list in the job-file syntax (block(...) * N for
 *                     transformer blocks)
 *     input_shape     int32 (rank): (D), (C, H, W) or (T) token ids
 *     loss, init      strings; config: the job config text (absent when none was given)
 *   /layers/<i>/weight  float32 in PyTorch's layout: nn.Linear (OUT, IN), nn.Conv2d
 *                       (OC, C, KH, KW), nn.Embedding (V, D), position embeddings (T, D),
 *                       nn.LayerNorm (D)
 *   /layers/<i>/bias    float32 (dims[0]); absent for the embeddings
 * Layers without parameters (activations, pooling, attention, residual, add and the head
 * tied to the embedding, whose weight is layer 0's) have no group: a tied weight is stored
 * once. Strings are variable-length UTF-8 (h5py returns str); readers also accept
 * fixed-length.
 *
 * No MPI: the caller decides which rank writes or reads. */
#ifndef RT_MODEL_FILE_H
#define RT_MODEL_FILE_H

#include "ringtrain/model.h"

#define RT_MODEL_FORMAT         "ringtrain-model"
#define RT_MODEL_FORMAT_VERSION 2

/* Writes m's architecture and parameters to path atomically: path.tmp is written, flushed,
 * closed and fsynced, then renamed over path and the directory fsynced, so path is always
 * either the old file or the complete new one. config_text (borrowed) may be NULL.
 * RT_ERR_IO (directory not writable, disk full, rename), RT_ERR_HDF5. */
int rt_model_save(const char *path, const struct rt_model *m, const char *config_text);

/* The same model with every layer's weights in compressed sparse rows (exact zeros dropped),
 * attribute storage = "csr" and, per layer, layers/<i>/shape int32 (2) = (OUT, IN),
 * indptr int64 (OUT+1), indices int32 (nnz), data float32 (nnz) (scipy's csr_matrix
 * arrays), bias float32 (OUT); layers pruning never thins (embeddings, layer norms) are
 * stored dense as above. Reading it with rt_model_file_load gives the dense weights
 * back exactly. m is used for its CSR form only during the call. */
int rt_model_save_csr(const char *path, struct rt_model *m, const char *config_text);

/* 1 when path holds a model stored as CSR (eval then multiplies with the sparse kernel). */
int rt_model_file_is_csr(const char *path);

/* Reads the architecture stored in path into *out. RT_ERR_IO (missing, unreadable),
 * RT_ERR_FORMAT (not HDF5, not a ringtrain model, a newer format_version, bad attributes). */
int rt_model_file_spec(const char *path, struct rt_model_spec *out);

/* Loads the parameters of path into m, which must already be initialised with the same
 * layer widths and activation (typically from rt_model_file_spec). Loss and init are not
 * compared. Errors as rt_model_file_spec, plus RT_ERR_SHAPE naming what differs. On failure
 * m's parameters are unspecified (possibly partly loaded). */
int rt_model_file_load(const char *path, struct rt_model *m);

#endif
