/* Internal to src/learn: what checkpoint.c shares with checkpoint_v1.c, which converts the
 * first layout in memory. */
#ifndef KILN_LEARN_CHECKPOINT_INTERNAL_H
#define KILN_LEARN_CHECKPOINT_INTERNAL_H

#include "learn_internal.h"
#include "kiln/io.h"

#define KILN__CK_FORMAT "kiln-checkpoint"
#define KILN__CK_VERSION "2"

/* Metadata key as an integer (kind 'i' into int64_t), unsigned ('u', uint64_t) or double
 * ('d'); FORMAT "checkpoint_load: <path>: metadata \"key\" is missing / not a number". */
kiln_status kiln__ck_meta_num(const kiln_st_file *f, const char *key, char kind, void *out);
/* Puts "checkpoint_load: <path>: metadata \"key\": " before the current message. */
kiln_status kiln__ck_prefix(kiln_status st, const kiln_st_file *f, const char *key);
/* Turns an open version-1 checkpoint into version 2 in memory (kiln_st_set_metadata): the
 * parts that were struct bytes or packed tensors become the owners' JSON entries. FORMAT
 * naming the file and key when a version-1 entry is missing or malformed. */
kiln_status kiln__ck_v1_upgrade(kiln_st_file *f);

#endif
