/* File-system predicates shared by the loaders. */
#ifndef SDC_IO_FS_UTIL_H
#define SDC_IO_FS_UTIL_H

/* 1 if path names a directory (a regular file), following links; else 0. */
int sdc_is_dir(const char *path);
int sdc_is_file(const char *path);

#endif
