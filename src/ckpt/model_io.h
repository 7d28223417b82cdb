/* model_io.h - the model layout (architecture attributes + layers/<i>/weight, bias) written
 * into, and read from, any HDF5 group: the root of a model file, or /model of a checkpoint.
 * Private to src/ckpt. */
#ifndef RT_CKPT_MODEL_IO_H
#define RT_CKPT_MODEL_IO_H

#include <hdf5.h>

#include "ringtrain/model.h"

/* Writes the format attributes, the architecture and every layer under loc. config_text may
 * be NULL. 0 or -1 (the caller reports the file). */
int rt_model_write_loc(hid_t loc, const struct rt_model *m, const char *config_text);

/* Checks loc's format attributes and reads its architecture. path names the file in
 * messages. RT_ERR_FORMAT. */
int rt_model_read_spec_loc(hid_t loc, const char *path, struct rt_model_spec *out);

/* Reads the parameters under loc into m (same widths and activation, checked: RT_ERR_SHAPE
 * names what differs). Fletcher32 failures are RT_ERR_IO. */
int rt_model_read_params_loc(hid_t loc, const char *path, struct rt_model *m);

#endif
