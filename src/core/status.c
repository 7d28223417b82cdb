/* status.c - the per-process first-error message behind rt_errorf(). */
#include "ringtrain/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static char first_message[RT_ERROR_MAX];

int rt_errorf(int code, const char *fmt, ...)
{
    if (first_message[0] == '\0') {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(first_message, sizeof first_message, fmt, ap);
        va_end(ap);
        /* One line on stderr is the contract: fold any newline a caller let through. */
        for (char *p = first_message; *p; p++)
            if (*p == '\n' || *p == '\r') *p = ' ';
    }
    return code;
}

const char *rt_error_message(int code)
{
    if (first_message[0] != '\0') return first_message;
    return rt_status_name(code);
}

void rt_error_set_message(const char *msg)
{
    snprintf(first_message, sizeof first_message, "%s", msg);
}

void rt_error_clear(void)
{
    first_message[0] = '\0';
}

const char *rt_status_name(int code)
{
    switch (code) {
    case RT_OK:
        return "ok";
    case RT_ERR_NOMEM:
        return "out of memory";
    case RT_ERR_IO:
        return "i/o error";
    case RT_ERR_HDF5:
        return "hdf5 error";
    case RT_ERR_MPI:
        return "mpi error";
    case RT_ERR_INVAL:
        return "invalid argument";
    case RT_ERR_SHAPE:
        return "shape mismatch";
    case RT_ERR_NONFINITE:
        return "non-finite value";
    case RT_ERR_FORMAT:
        return "bad file format";
    case RT_ERR_INTERNAL:
        return "internal error";
    case RT_ERR_INCOMPAT:
        return "incompatible file";
    default:
        return "unknown error";
    }
}
