/* Shared by the .pth reader's parts: pth.c (the state dict in the pickle, its tensors and
 * their checks, the storages read into one buffer, kiln_pth_open / kiln_weights_open),
 * pth_zip.c (torch >= 1.6: a zip archive, read with libzip) and pth_legacy.c (torch < 1.6:
 * pickles and raw storages one after the other). */
#ifndef KILN_IO_PTH_H
#define KILN_IO_PTH_H

#include "io/pickle.h"
#include "io/safetensors.h"

/* Most tensors in one state dict (resnet152 has about a thousand). */
#define KILN_PTH_MAX_TENSORS 100000

/* One storage the state dict's tensors view. */
typedef struct kiln__pth_storage {
    const char *key;         /* the persistent id's key (the archive's data/<key>) */
    int type;                /* kiln__pk_storage_type index */
    int64_t numel;           /* elements, as the persistent id says */
    const char *tensor;      /* the first tensor viewing it, for messages */
    uint64_t at;             /* where it starts in the data buffer */
    /* where its bytes are (set by the format's reader): */
    const unsigned char *src;  /* legacy: in the file */
    int64_t zindex;            /* zip: the archive entry */
    uint64_t src_bytes;        /* bytes there */
} kiln__pth_storage;

typedef struct kiln__pth {
    kiln_st_file *f;
    const char *pkl;         /* the object pickle's name in messages ("data.pkl") */
    kiln__pk_heap heap;
    const kiln__pk *root;    /* the object pickle's value */
    kiln__pth_storage *st;   /* sorted by key */
    size_t n_st;
    size_t *t_storage;       /* per tensor of f: its storage index */
    int64_t *t_offset;       /* per tensor: its storage offset in elements */
    void *zip;               /* pth_zip.c's archive (zip_t) */
} kiln__pth;

/* From the object pickle's value P->root: fills P->f's tensors (names, dtypes, shapes) and
 * P->st (which storages, in what types), checking every tensor's arguments. */
kiln_status kiln__pth_tensors(kiln__pth *P);
/* Once the reader has set each storage's src/zindex and src_bytes: checks the sizes, reads the
 * storages into f's data buffer (through read_zip for zip entries) and places the tensors. */
kiln_status kiln__pth_place(kiln__pth *P, kiln_status (*read_zip)(kiln__pth *P, const kiln__pth_storage *s,
                                                                unsigned char *dst));
/* The storage called key, or NULL. */
kiln__pth_storage *kiln__pth_find_storage(const kiln__pth *P, const char *key);
/* The two formats: from the whole file buf[0, n), fill P (and through the two calls above,
 * P->f). */
kiln_status kiln__pth_zip(kiln__pth *P, const unsigned char *buf, size_t n);
kiln_status kiln__pth_legacy(kiln__pth *P, const unsigned char *buf, size_t n);

/* The legacy format's first bytes: PROTO 2, LONG1 of 10 bytes (the magic number). */
#define KILN_PTH_LEGACY_MAGIC "\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
#define KILN_PTH_LEGACY_MAGIC_LEN 14

#endif
