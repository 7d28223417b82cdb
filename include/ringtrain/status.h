/* status.h - error values and the per-process error message.
 *
 * Fallible functions return an int: RT_OK (0) or a negative enum rt_status. The first
 * failure on a process also records a one-line human message ("<what>: <why>") with
 * rt_errorf(); later failures on the way up keep the first message, because the first is
 * the cause and the rest are consequences. rt_comm_agree() later spreads the message of the
 * lowest failing rank to every rank, and main() prints it once as
 *   ringtrain: error: <message>
 * Nothing here touches MPI, so every module may include it. */
#ifndef RT_STATUS_H
#define RT_STATUS_H

#include <stddef.h>

enum rt_status {
    RT_OK = 0,
    RT_ERR_NOMEM = -1,     /* allocation failed or an arena overflowed */
    RT_ERR_IO = -2,        /* open/read/write/fsync/rename failed */
    RT_ERR_HDF5 = -3,      /* the HDF5 library refused a call */
    RT_ERR_MPI = -4,       /* an MPI call failed */
    RT_ERR_INVAL = -5,     /* a bad argument, option or config value */
    RT_ERR_SHAPE = -6,     /* data or model shapes that do not fit together */
    RT_ERR_NONFINITE = -7, /* NaN or Inf in data, loss or gradients */
    RT_ERR_FORMAT = -8,    /* a file that is not what it claims to be */
    RT_ERR_INTERNAL = -9,  /* a bug: an invariant did not hold */
    RT_ERR_INCOMPAT = -10, /* a valid file that does not fit: other architecture, newer format */
};

/* Not a failure: the run stopped early on request (a signal) after writing a checkpoint.
 * Positive, so RT_TRY and rt_comm_agree let it pass; the trainer returns it explicitly. */
#define RT_STOPPED 1

#define RT_ERROR_MAX 512 /* bytes of one error message, NUL included */

/* Records "fmt..." as this process's error message unless one is already recorded, and
 * returns code, so that `return rt_errorf(RT_ERR_IO, "%s: %s", path, strerror(errno));`
 * reads as one statement. code must be negative. */
int rt_errorf(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The recorded message, or a generic text for `code` when none was recorded. Never NULL. */
const char *rt_error_message(int code);

/* Replaces the recorded message (used when another rank's message is adopted). */
void rt_error_set_message(const char *msg);

/* Forgets the recorded message (tests that provoke several failures in a row). */
void rt_error_clear(void);

/* Short name of a status code ("io", "shape", ...). */
const char *rt_status_name(int code);

/* Propagate a failure: evaluates expr once and returns its status if negative. */
#define RT_TRY(expr)                                                                               \
    do {                                                                                           \
        int rt_try_st_ = (expr);                                                                   \
        if (rt_try_st_ < 0) return rt_try_st_;                                                     \
    } while (0)

#endif
