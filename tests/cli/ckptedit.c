/* ckptedit.c - damages checkpoint files the way disks, versions and users do, for the
 * command-line tests. Not part of ringtrain.
 *   ckptedit FILE version N      set the root format_version attribute to N
 *   ckptedit FILE corrupt DSET   flip one byte inside the first stored chunk of DSET (the
 *                                file stays valid HDF5; only the checksum can notice) */
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int set_version(const char *path, int version)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    if (f < 0) return 1;
    hid_t a = H5Aopen(f, "format_version", H5P_DEFAULT);
    int rc = a < 0 || H5Awrite(a, H5T_NATIVE_INT, &version) < 0;
    if (a >= 0) H5Aclose(a);
    H5Fclose(f);
    return rc;
}

static int corrupt(const char *path, const char *dset)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = f < 0 ? -1 : H5Dopen2(f, dset, H5P_DEFAULT);
    hid_t sp = d < 0 ? -1 : H5Dget_space(d);
    hsize_t offset[2] = {0, 0}, size = 0;
    haddr_t addr = HADDR_UNDEF;
    unsigned mask = 0;
    int ok = sp >= 0 && H5Dget_chunk_info(d, sp, 0, offset, &mask, &addr, &size) >= 0 &&
             addr != HADDR_UNDEF && size > 8;
    if (sp >= 0) H5Sclose(sp);
    if (d >= 0) H5Dclose(d);
    if (f >= 0) H5Fclose(f);
    if (!ok) return 1;
    FILE *fp = fopen(path, "r+b");
    if (!fp) return 1;
    long at = (long)(addr + size / 2);
    int c = fseek(fp, at, SEEK_SET) == 0 ? fgetc(fp) : EOF;
    ok = c != EOF && fseek(fp, at, SEEK_SET) == 0 && fputc(c ^ 0x5a, fp) != EOF;
    return fclose(fp) != 0 || !ok;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: ckptedit FILE version N | ckptedit FILE corrupt DATASET\n");
        return 2;
    }
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    int rc = strcmp(argv[2], "version") == 0   ? set_version(argv[1], atoi(argv[3]))
             : strcmp(argv[2], "corrupt") == 0 ? corrupt(argv[1], argv[3])
                                               : 2;
    if (rc) fprintf(stderr, "ckptedit: %s %s %s failed\n", argv[1], argv[2], argv[3]);
    return rc;
}
