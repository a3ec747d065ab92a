/* Reading .safetensors files: validate, memory-map read-only, look tensors
 * up by name.
 *
 * File layout (https://github.com/huggingface/safetensors):
 *   u64 LE  header_len
 *   u8[header_len]  JSON object  { "name": {"dtype": "F32", "shape": [3, 3],
 *                                  "data_offsets": [begin, end]}, ...,
 *                                  "__metadata__": {"key": "value", ...} }
 *   u8[...]  data; offsets are relative to the start of the data (8 + header_len)
 *
 * Every file is untrusted.  sdc_st_open checks: the file holds at least 8
 * bytes; header_len <= SDC_ST_MAX_HEADER and <= file size - 8; the header is
 * a JSON object (trailing whitespace allowed); every entry has a known dtype
 * (F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL), a shape of at most SDC_MAX_DIMS
 * non-negative integer dims whose byte size fits in int64 and size_t, and
 * data_offsets [begin, end] with begin <= end <= data size and
 * end - begin == numel * dtype size; non-empty ranges do not overlap; names
 * are unique; "__metadata__" is a map of strings.  0-d tensors (shape [],
 * numel 1) and integer dtypes are kept.  Failures are SDC_ERR_IO (cannot
 * open/map) or SDC_ERR_FORMAT, with a message naming the file, the tensor
 * and the problem.
 *
 * Alignment: every returned sdc_weight's data is aligned to its dtype size,
 * so model code may read it as float / uint16_t arrays.  Tensors are used in
 * place in the mapping when already aligned (real files pad the header so
 * that they are); a tensor that is not is copied once, at open, into memory
 * owned by the file handle. */
#ifndef SDC_IO_SAFETENSORS_H
#define SDC_IO_SAFETENSORS_H

#include <stddef.h>

#include "core/weights.h"
#include "sdc.h"

#define SDC_ST_MAX_HEADER ((size_t)100 << 20) /* 100 MiB */

typedef struct sdc_st_file sdc_st_file;

/* Opens, validates and maps path.  On success *out owns the mapping until
 * sdc_st_close; on failure *out is NULL. */
sdc_status sdc_st_open(const char *path, sdc_st_file **out);
void sdc_st_close(sdc_st_file *f); /* NULL allowed */

/* Number of tensors (the "__metadata__" entry is not one). */
size_t sdc_st_count(const sdc_st_file *f);
/* Tensor i (0 <= i < count), in header order.  Valid until close. */
const sdc_weight *sdc_st_at(const sdc_st_file *f, size_t i);
/* The tensor stored under name, or NULL.  Valid until close. */
const sdc_weight *sdc_st_find(const sdc_st_file *f, const char *name);
/* __metadata__[key], or NULL.  Valid until close. */
const char *sdc_st_metadata(const sdc_st_file *f, const char *key);
/* The path given to sdc_st_open (owned by f). */
const char *sdc_st_path(const sdc_st_file *f);

/* Page residency of mapped tensor data.  The mapping is private, read-only
 * and never written, so every page of it is a clean copy of the file:
 * releasing one loses nothing (the next read faults it back in from the
 * page cache or the file) and only lowers the resident set. */
typedef enum sdc_page_advice {
    SDC_PAGES_RELEASE = 0, /* madvise(MADV_DONTNEED): drop from the resident set */
    SDC_PAGES_PREFETCH,    /* map in now (MADV_POPULATE_READ, else MADV_WILLNEED) */
    SDC_PAGES_EVICT        /* not wanted for long (a weight a LoRA merge replaced):
                              out of the resident set and, where no one else maps
                              them, the page cache too (MADV_PAGEOUT, else
                              MADV_DONTNEED), so that the kernel's fault-around
                              does not map them back in beside their neighbours */
} sdc_page_advice;

/* Applies advice to the whole pages that hold [p, p + n), when that range
 * lies inside f's mapping; returns 1 then, 0 for memory that is not in the
 * mapping (a heap copy of a misaligned tensor: left alone) or when the
 * system refuses (advice is a hint; nothing fails). */
int sdc_st_advise(const sdc_st_file *f, const void *p, size_t n, sdc_page_advice advice);
/* The same for [p, p + n) in any file mapping the caller owns whose whole
 * pages around the range are its own (a private read-only mapping, or a
 * shared one: what MADV_DONTNEED drops is kept by the file).  Never on
 * anonymous memory: dropped pages would come back zeroed.  1 if applied. */
int sdc_pages_advise(const void *p, size_t n, sdc_page_advice advice);

#endif
