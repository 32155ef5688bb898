/* kiln io: safetensors files (the format PyTorch and Hugging Face use), read through mmap
 * and written atomically, and the atomic writer (temp file + fsync + rename) that every file
 * kiln writes goes through.
 * Layout: u64 little-endian header length N, N bytes of JSON
 * {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
 *  "__metadata__": {"key": "value"}}, then the data (offsets are relative to its start). */
#ifndef KILN_IO_H
#define KILN_IO_H

#include "kiln/core.h"

#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kiln_st_file kiln_st_file;

/* Opens and validates the whole header: JSON syntax, known dtypes, shapes that match the
 * byte ranges, ranges inside the file and not overlapping. Errors name the file and the
 * tensor or field at fault. */
kiln_status kiln_st_open(const char *path, kiln_st_file **out);
void kiln_st_close(kiln_st_file *f);
size_t kiln_st_count(const kiln_st_file *f);
const char *kiln_st_name(const kiln_st_file *f, size_t i); /* in file order */
const char *kiln_st_path(const kiln_st_file *f);
const char *kiln_st_metadata(const kiln_st_file *f, const char *key); /* NULL when absent */
bool kiln_st_has(const kiln_st_file *f, const char *name);
/* Raw view of one tensor's bytes in the mapping (valid until close). */
kiln_status kiln_st_info(const kiln_st_file *f, const char *name, kiln_dtype *dtype, int *ndim,
                         int64_t shape[KILN_MAX_DIMS], const void **data, size_t *nbytes);
/* Copies a tensor into the step arena: F16/BF16/F32 become f32, I64/I32/U8 keep their dtype. */
kiln_tensor *kiln_st_load(kiln_ctx *ctx, const kiln_st_file *f, const char *name);
/* Copies into an existing contiguous f32 tensor (a parameter), checking the shape. */
kiln_status kiln_st_load_into(const kiln_st_file *f, const char *name, kiln_tensor *dst);

typedef struct kiln_st_entry {
    const char *name;
    const kiln_tensor *t; /* any strides; written contiguous in its own dtype */
} kiln_st_entry;
/* meta: NULL or a NULL-terminated list of key, value, key, value, ... */
kiln_status kiln_st_save(const char *path, const kiln_st_entry *entries, size_t n,
                         const char *const *meta);

/* mkdir -p dir: IO naming the part of the path that could not be made, or when dir exists but
 * is not a folder. */
kiln_status kiln_mkdirs(const char *dir);

/* ---- atomic file writes ------------------------------------------------------------------------
 * Every file kiln writes goes through these. The bytes go to "<path>.tmp.<pid>" in the same
 * folder; every write, flush, fsync and close is checked (ENOSPC, EIO, ...); the temp file is
 * fsynced, renamed over path, and the folder fsynced. On any failure the temp file is removed,
 * the file already at path is left byte for byte as it was, and the error (kiln_last_error)
 * names path and the cause, e.g. "cannot write out/model.json: write of out/model.json.tmp.42
 * failed: No space left on device (the previous file is kept)". */
typedef struct kiln_atomic kiln_atomic;

/* The whole file from one buffer. */
kiln_status kiln_atomic_write(const char *path, const void *data, size_t n);

/* Streaming: begin creates the temp file and gives a stream to write into (stdio calls on it
 * may fail; commit reports the first failure with its errno). A writer that must write by
 * file name (PLplot) writes kiln_atomic_temp_path(a) itself, checks what it wrote, then
 * commits. commit and abort both free a; abort removes the temp file and keeps path as it was. */
kiln_status kiln_atomic_begin(const char *path, kiln_atomic **out);
FILE *kiln_atomic_stream(kiln_atomic *a);
const char *kiln_atomic_temp_path(const kiln_atomic *a);
kiln_status kiln_atomic_commit(kiln_atomic *a);
void kiln_atomic_abort(kiln_atomic *a);

/* Removes the temp files ("<name>.tmp.<pid>", regular files) in dir that a killed process left:
 * those whose pid is no live process. *removed (may be NULL) counts them. */
kiln_status kiln_atomic_clean_stale(const char *dir, int *removed);

#ifdef __cplusplus
}
#endif
#endif
