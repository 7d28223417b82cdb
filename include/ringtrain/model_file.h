/* model_file.h - a trained model as one HDF5 file (architecture + parameters).
 *
 * Layout (h5py: f.attrs[...], f["layers/0/weight"][...]):
 *   root attributes
 *     format          string "ringtrain-model"
 *     format_version  int32 1
 *     layers          int32 (n_layers + 1): the widths, input first, output last
 *     activation      string, hidden activation ("relu", ...)
 *     loss            string ("ce" or "mse")
 *     init            string ("torch", "xavier" or "he")
 *     config          string, the job config text (absent when none was given)
 *   /layers/<i>/weight  float32 (OUT_i, IN_i), exactly torch nn.Linear.weight
 *   /layers/<i>/bias    float32 (OUT_i)
 * Strings are variable-length UTF-8 (h5py returns str); readers also accept fixed-length.
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
 * arrays), bias float32 (OUT). Reading it with rt_model_file_load gives the dense weights
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
