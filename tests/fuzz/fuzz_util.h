/* fuzz_util.h - what the libFuzzer targets share: the input bytes as a file that the code
 * under test opens by path, and a check that no HDF5 identifier outlives a call.
 *
 * The file lives in /dev/shm (tmpfs: no disk I/O), else in $TMPDIR or /tmp, named after the
 * process id, and is removed at exit (or, after a crash, by the next run). Not a memfd: HDF5
 * resolves the /proc/self/fd/N link and fails on "/memfd:... (deleted)". Header-only: each target
 * is one translation unit. */
#ifndef RT_FUZZ_UTIL_H
#define RT_FUZZ_UTIL_H

#include <hdf5.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include "ringtrain/status.h"

/* LeakSanitizer suppressions built into every target (so that they apply however the target
 * is started). HDF5 1.10.8 leaks a few hundred bytes of object-header cache entries when
 * H5Fopen fails on a corrupt file (H5F_open -> H5G_mkroot -> H5O_msg_exists -> H5O_protect ->
 * H5C_protect -> H5FL_reg_calloc; found by fuzz_dataset, issue 7). HDF5 is built without
 * frame pointers, so such a stack ends inside the library: it is matched by module. Our own
 * leaks stay visible (their stacks start in our code), and HDF5 identifiers that our code
 * leaves open are caught by fuzz_run_checked below. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:libhdf5_serial.so\nleak:libhdf5.so\n";
}

struct fuzz_file {
    int fd;
    char path[512];
};

static inline void fuzz_die(const char *what)
{
    fprintf(stderr, "fuzz harness: %s\n", what);
    abort();
}

/* FUZZ_VERBOSE=1 in the environment prints why each call failed (when replaying inputs). */
static inline int fuzz_note(const char *call, int st)
{
    static int verbose = -1;
    if (verbose < 0) verbose = getenv("FUZZ_VERBOSE") && *getenv("FUZZ_VERBOSE") == '1';
    if (verbose)
        fprintf(stderr, "  %s -> %d%s%s\n", call, st, st < 0 ? ": " : "",
                st < 0 ? rt_error_message(st) : "");
    return st;
}
#define FUZZ_CALL(expr) fuzz_note(#expr, (expr))

static char fuzz_files[4][512];
static int fuzz_n_files;

static void fuzz_remove_files(void)
{
    for (int i = 0; i < fuzz_n_files; i++)
        unlink(fuzz_files[i]);
}

/* Removes dir/name-<pid> files of processes that are gone (a crashed target, e.g. under
 * -fork, cannot remove its own). */
static inline void fuzz_remove_stale(const char *dir, const char *name)
{
    DIR *d = opendir(dir);
    if (!d) return;
    size_t len = strlen(name);
    for (struct dirent *e; (e = readdir(d));) {
        char *end;
        if (strncmp(e->d_name, name, len) != 0 || e->d_name[len] != '-') continue;
        long pid = strtol(e->d_name + len + 1, &end, 10);
        if (*end || pid <= 0 || kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
}

static inline void fuzz_file_open(struct fuzz_file *f, const char *name)
{
    const char *tmp = getenv("TMPDIR");
    const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : tmp && *tmp ? tmp : "/tmp";
    fuzz_remove_stale(dir, name);
    snprintf(f->path, sizeof f->path, "%s/%s-%ld", dir, name, (long)getpid());
    f->fd = open(f->path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (f->fd < 0 || fuzz_n_files == 4) fuzz_die("cannot create the input file");
    if (fuzz_n_files == 0) atexit(fuzz_remove_files);
    snprintf(fuzz_files[fuzz_n_files++], sizeof fuzz_files[0], "%s", f->path);
}

/* Replaces the file's contents with data[0..size). */
static inline void fuzz_file_set(struct fuzz_file *f, const uint8_t *data, size_t size)
{
    if (ftruncate(f->fd, 0) != 0) fuzz_die("ftruncate");
    size_t done = 0;
    while (done < size) {
        ssize_t w = pwrite(f->fd, data + done, size - done, (off_t)done);
        if (w <= 0) fuzz_die("pwrite");
        done += (size_t)w;
    }
}

/* HDF5 identifiers of every kind our code opens. A reader that returns with one still open
 * leaks it for the life of the process (and HDF5 then keeps the file itself open). */
static const H5I_type_t fuzz_h5_kinds[] = {H5I_FILE,    H5I_GROUP, H5I_DATATYPE,   H5I_DATASPACE,
                                           H5I_DATASET, H5I_ATTR,  H5I_GENPROP_LST};
#define FUZZ_H5_KINDS (sizeof fuzz_h5_kinds / sizeof fuzz_h5_kinds[0])

static inline void fuzz_h5_count(hsize_t *n)
{
    for (size_t i = 0; i < FUZZ_H5_KINDS; i++)
        if (H5Inmembers(fuzz_h5_kinds[i], &n[i]) < 0) n[i] = 0;
}

/* Runs one input through fn; when HDF5 identifiers are left over, runs it again (the first
 * call may create library-internal ones once) and aborts if their number grows again. */
static inline void fuzz_run_checked(void (*fn)(const char *path), const char *path)
{
    hsize_t a[FUZZ_H5_KINDS], b[FUZZ_H5_KINDS], c[FUZZ_H5_KINDS];
    fuzz_h5_count(a);
    fn(path);
    fuzz_h5_count(b);
    if (memcmp(a, b, sizeof a) == 0) return;
    for (size_t i = 0; i < FUZZ_H5_KINDS; i++)
        if (a[i] != b[i])
            fuzz_note("HDF5 identifiers changed (first run)",
                      (int)fuzz_h5_kinds[i] * 100000 + (int)b[i] - (int)a[i]);
    fn(path);
    fuzz_h5_count(c);
    for (size_t i = 0; i < FUZZ_H5_KINDS; i++)
        if (c[i] > b[i]) {
            fprintf(stderr, "fuzz harness: HDF5 identifiers of type %d leaked: %llu -> %llu\n",
                    (int)fuzz_h5_kinds[i], (unsigned long long)b[i], (unsigned long long)c[i]);
            abort();
        }
}

/* Dimensions of dataset `name` without reading it (-1 when HDF5 cannot tell): the targets
 * use it to skip files that declare more data than a fuzz iteration should touch. */
static inline int fuzz_h5_dims(const char *path, const char *name, hsize_t *dims)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return -1;
    int rank = -1;
    if (H5Lexists(f, name, H5P_DEFAULT) > 0) {
        hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
        hid_t sp = ds < 0 ? -1 : H5Dget_space(ds);
        if (sp >= 0 && H5Sget_simple_extent_ndims(sp) <= H5S_MAX_RANK)
            rank = H5Sget_simple_extent_dims(sp, dims, NULL);
        if (sp >= 0) H5Sclose(sp);
        if (ds >= 0) H5Dclose(ds);
    }
    H5Fclose(f);
    return rank;
}

#endif
