/* kiln io: safetensors files (the format PyTorch and Hugging Face use), read through mmap
 * and written atomically, the atomic writer (temp file + fsync + rename) that every file
 * kiln writes goes through, and the CSV reader (RFC 4180) that image lists, text and tables
 * are read with.
 * safetensors:
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
/* PyTorch checkpoints (.pth / .pt as torch.save(model.state_dict()) writes them, e.g.
 * torchvision's resnet34-b627a593.pth): the zip format of torch >= 1.6 and the legacy format
 * before it, read into the same kiln_st_file, so every call below works on it. Tensors are named
 * by their state-dict keys, in the pickle's order; metadata "format" is "pth". A checkpoint dict
 * holding the state dict under "state_dict", "model" or "model_state_dict" gives that dict. The
 * pickle is read by a restricted unpickler that executes nothing: any global but
 * collections.OrderedDict, torch's tensor rebuilders and storage classes, and any opcode
 * torch.save does not write, is refused naming it and the file ("x.pth: data.pkl names global
 * 'posix.system', which a state dict never holds: refused (kiln never executes pickles)").
 * Tensors must be contiguous, inside their storages, of dtype float32 / float16 / bfloat16 /
 * int64 / int32 / uint8 (float64 is read as F32); errors name the file and the tensor. */
kiln_status kiln_pth_open(const char *path, kiln_st_file **out);
/* Opens a weight file of either format by its content: a zip archive or a legacy pickle is a
 * .pth (kiln_pth_open), anything else safetensors (kiln_st_open). */
kiln_status kiln_weights_open(const char *path, kiln_st_file **out);
void kiln_st_close(kiln_st_file *f);
size_t kiln_st_count(const kiln_st_file *f);
const char *kiln_st_name(const kiln_st_file *f, size_t i); /* in file order */
const char *kiln_st_path(const kiln_st_file *f);
const char *kiln_st_metadata(const kiln_st_file *f, const char *key); /* NULL when absent */
bool kiln_st_has(const kiln_st_file *f, const char *name);
/* Raw view of one tensor's bytes in the mapping (valid until close). */
kiln_status kiln_st_info(const kiln_st_file *f, const char *name, kiln_dtype *dtype, int *ndim,
                         int64_t shape[KILN_MAX_DIMS], const void **data, size_t *nbytes);
/* Tensor name as a reader needs it: present, of dtype dt and shape (ndim, shape); INVALID
 * naming the file and the tensor otherwise ("tensor \"optim.step\" is missing", "... is
 * U8, expected I64", "... has shape (3), expected (8)"). *data (may be NULL) views its bytes. */
kiln_status kiln_st_want(const kiln_st_file *f, const char *name, kiln_dtype dt, int ndim, const int64_t *shape,
                         const void **data);
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

/* A file built piece by piece: each owner of a part (model, optimizer, recorder, ...) adds
 * its tensors and metadata entries under its own names, then one atomic kiln_st_save writes
 * them. The first failure is kept: every later call, save included, returns it, so a series
 * of adds may be checked once. NULL + message when out of memory. */
typedef struct kiln_st_writer kiln_st_writer;
kiln_st_writer *kiln_st_writer_new(void);
void kiln_st_writer_free(kiln_st_writer *w);
/* Tensor name (copied) over data in row-major order: borrowed, it must stay valid until
 * save; the _copy form copies the bytes now. */
kiln_status kiln_st_writer_add(kiln_st_writer *w, const char *name, kiln_dtype dt, int ndim, const int64_t *shape,
                               const void *data);
kiln_status kiln_st_writer_add_copy(kiln_st_writer *w, const char *name, kiln_dtype dt, int ndim,
                                    const int64_t *shape, const void *data);
/* Metadata key = value (both copied); a key given again replaces its value. The f form
 * formats up to 127 characters. */
kiln_status kiln_st_writer_meta(kiln_st_writer *w, const char *key, const char *value);
kiln_status kiln_st_writer_metaf(kiln_st_writer *w, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Writes the file (kiln_st_save: atomic); the writer may be saved again or freed. */
kiln_status kiln_st_writer_save(kiln_st_writer *w, const char *path);

/* Replaces or adds a metadata entry of an open file, in memory only (the file is not
 * touched): for readers that convert an older layout before the usual reading code sees it. */
kiln_status kiln_st_set_metadata(kiln_st_file *f, const char *key, const char *value);

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

/* ---- CSV (RFC 4180) ----------------------------------------------------------------------------
 * A streaming reader: one record at a time, from a file (read in chunks, so a file of any size
 * takes constant memory) or from a buffer. Fields are separated by p.sep (','); a field in
 * double quotes may hold the separator, line breaks and doubled quotes ("" is one "); records
 * end at LF, CRLF or CR; a UTF-8 BOM at the start is skipped; empty lines are skipped (a line
 * holding "" is a record with one empty field, not an empty line). A quote inside an unquoted
 * field is kept as text (as Python's csv does).
 * Errors (FORMAT) name the file and the line: a record whose number of fields differs from
 * the header's (unless p.ragged), a quoted field that never closes (the line it opened on),
 * text after a closing quote, a record over p.max_record_bytes or p.max_fields; IO errors
 * name the file. After an error every kiln_csv_next returns it again.
 *   kiln_csv *c;
 *   if (kiln_csv_open("labels.csv", NULL, &c)) return kiln_last_status();
 *   int name = kiln_csv_col(c, "name");            // from the header row
 *   bool more;
 *   while (!(st = kiln_csv_next(c, &more)) && more) use(kiln_csv_field(c, name));
 *   kiln_csv_close(c); */
typedef struct kiln_csv kiln_csv;

#define KILN_CSV_MAX_RECORD ((size_t)16 << 20) /* bytes of one record (its fields unescaped) */
#define KILN_CSV_MAX_FIELDS 65536              /* fields of one record */

typedef struct kiln_csv_params {
    char sep;                /* ',' ('\t' for TSV, ';' for some locales); not '"', CR or LF */
    bool header;             /* true: the first record names the columns (kiln_csv_col) */
    bool ragged;             /* false: every record has the header's (or first record's) width */
    size_t max_record_bytes; /* 0: KILN_CSV_MAX_RECORD */
    int max_fields;          /* 0: KILN_CSV_MAX_FIELDS */
} kiln_csv_params;

kiln_csv_params kiln_csv_default_params(void); /* sep ',', header, not ragged, default caps */
/* p NULL: the defaults. With p.header, the header is read here: an input with no record is
 * an error ("empty file (no header row)"). */
kiln_status kiln_csv_open(const char *path, const kiln_csv_params *p, kiln_csv **out);
/* data (len bytes, not copied: it must outlive the reader); name is used in messages. */
kiln_status kiln_csv_open_buffer(const char *name, const void *data, size_t len, const kiln_csv_params *p,
                                 kiln_csv **out);
void kiln_csv_close(kiln_csv *c);
const char *kiln_csv_name(const kiln_csv *c); /* the path or buffer name */
/* The header (or, without one, the width of the first record once read): n_cols and names. */
int kiln_csv_n_cols(const kiln_csv *c);
const char *kiln_csv_col_name(const kiln_csv *c, int j); /* NULL without a header or out of range */
int kiln_csv_col(const kiln_csv *c, const char *name);  /* first column called name; -1 if none */

/* Reads the next record: *more is false at the end of the input (and after an error). */
kiln_status kiln_csv_next(kiln_csv *c, bool *more);
/* The current record. A field is NUL-terminated (len: its length, as it may hold NUL
 * bytes); j >= kiln_csv_n_fields (a ragged record's missing field) gives NULL, an empty field
 * gives "", so the two are told apart; quoted says whether it was written in quotes (""
 * versus nothing between two separators). */
int kiln_csv_n_fields(const kiln_csv *c);
const char *kiln_csv_field(const kiln_csv *c, int j);
size_t kiln_csv_field_len(const kiln_csv *c, int j); /* 0 when missing */
bool kiln_csv_field_quoted(const kiln_csv *c, int j);
int64_t kiln_csv_line(const kiln_csv *c);    /* the line the current record starts on (1-based) */
int64_t kiln_csv_n_records(const kiln_csv *c); /* data records read so far (not the header) */

#ifdef __cplusplus
}
#endif
#endif
