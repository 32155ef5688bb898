/* A small disk for the disk-full tests: a tmpfs mounted on a fresh folder (root, or
 * CAP_SYS_ADMIN, needed), filled up to a chosen number of free bytes, and the checks that
 * a failed write left the previous file as it was. */
#ifndef KILN_TESTS_KU_DISK_H
#define KILN_TESTS_KU_DISK_H

#include "util/ku.h"

/* Makes a temp folder and mounts a tmpfs of size_kb on it; false (the folder still made,
 * why in why) when mounting is not permitted: the caller skips with cr_skip_test. */
bool ku_tmpfs_mount(char *dir, size_t dir_cap, size_t size_kb, char *why, size_t why_cap);
/* Unmounts and removes the folder (also when the mount failed). */
void ku_tmpfs_unmount(const char *dir);
/* Fills the file system of dir with dir/filler until about `leave` bytes (a multiple of the
 * page size) are free. Call again to change it. */
void ku_fill_disk(const char *dir, size_t leave);
/* A malloc'd copy of path's bytes (asserts it exists); *n its size. */
unsigned char *ku_read_all(const char *path, size_t *n);
/* Asserts path holds exactly want (n bytes). */
void ku_expect_same_file(const char *path, const unsigned char *want, size_t n);
/* Asserts dir holds no "*.tmp.*" file. */
void ku_expect_no_temp(const char *dir);

#endif
