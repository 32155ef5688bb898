/* Shared by the safetensors reader (safetensors_read.c validates and maps a file,
 * safetensors_load.c copies tensors out of it) and the writer: the open file's layout, the
 * dtype names of the format and the limits every side enforces. */
#ifndef KILN_IO_SAFETENSORS_H
#define KILN_IO_SAFETENSORS_H

#include "core/internal.h"
#include "kiln/io.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "kiln safetensors: tensor data is little-endian; big-endian hosts need byte swaps"
/* Sorts f->by_name and refuses duplicate names (FORMAT naming the file and the name). */
kiln_status kiln__st_index(kiln_st_file *f);
/* Maps path whole, read-only: *map NULL for an empty file. IO errors read "WHO: PATH: ...". */
kiln_status kiln__io_map(const char *who, const char *path, unsigned char **map, size_t *size);
/* kiln_st_file's message prefix for names from files: at most KILN_ST_NAME_MAX bytes. */
#define KILN_ST_NAMEF "%.*s"
#define KILN_ST_NAMEA(s) KILN_ST_NAME_MAX, (s)

#endif

/* The reference implementation refuses headers above 100 MB; so do we. */
#define KILN_ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000)
/* Largest integer a JSON number (a double) holds exactly. */
#define KILN_ST_MAX_INT ((uint64_t)1 << 53)
/* Longest tensor name or key quoted in a message; names come from files and may be huge. */
#define KILN_ST_NAME_MAX 160

typedef struct kiln__st_tensor {
    char *name;                       /* owned */
    kiln_dtype dtype;
    int ndim;
    int64_t shape[KILN_MAX_DIMS];
    uint64_t begin, end;              /* byte range relative to the data area */
} kiln__st_tensor;

struct kiln_st_file {
    char *path;                       /* owned copy, for messages */
    unsigned char *map;               /* the whole file, read-only (mmap); for a .pth, the
                                         storages read out of it (malloc) */
    size_t map_size;
    bool heap;                        /* map is malloc'd (free), not mapped (munmap) */
    const unsigned char *data;        /* map + 8 + header length */
    uint64_t data_size;
    kiln__st_tensor *t;               /* in header order */
    size_t n;
    size_t *by_name;                  /* indices into t sorted by name, for lookup */
    char **meta;                      /* key, value, key, value, ... (owned) */
    size_t n_meta;                    /* number of pairs */
};

/* "F32" ... for the dtypes kiln reads; NULL for others. */
const char *kiln__st_dtype_str(kiln_dtype d);
/* The tensor called name, or NULL. */
const kiln__st_tensor *kiln__st_find(const kiln_st_file *f, const char *name);

/* Sorts f->by_name and refuses duplicate names (FORMAT naming the file and the name). */
kiln_status kiln__st_index(kiln_st_file *f);
/* Maps path whole, read-only: *map NULL for an empty file. IO errors read "WHO: PATH: ...". */
kiln_status kiln__io_map(const char *who, const char *path, unsigned char **map, size_t *size);
/* kiln_st_file's message prefix for names from files: at most KILN_ST_NAME_MAX bytes. */
#define KILN_ST_NAMEF "%.*s"
#define KILN_ST_NAMEA(s) KILN_ST_NAME_MAX, (s)

#endif
