/* Shards for data-parallel training (data.h, kiln_data_shard; issue 13): DistributedSampler
 * semantics for the in-memory tensor data and the vision loader. Every check compares with a
 * reference written here from the definition (padded[i] = order[i % n], rank r takes padded
 * positions r, r + world, ...; valid: items r, r + world, ... without padding), not with the
 * code under test:
 *   - shards of every rank are disjoint in positions and cover the padded order; valid shards
 *     partition the split;
 *   - the union over ranks of train batch k (per-rank batch b) is, as a set of rows, batch k
 *     of the one-rank run with batch world*b, for every k whose batch is full (no padding);
 *   - world 1 gives the unsharded batches bit for bit (rows of kiln_data_permutation in order);
 *   - the vision loader on an IDX set written here (label i = item i), with threads, and its
 *     TTA passes; the tabular source (tensor data underneath) on a CSV written here;
 *   - rank and world out of range are INVALID naming the field.
 * Exact comparisons throughout (rows are copied, never computed). */
#include "util/ku.h"
#include "util/ku_cli.h"

#include "kiln/tabular.h"
#include "kiln/vision.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const int64_t g_ns[] = {0, 1, 2, 3, 5, 7, 8, 10, 13, 24};
#define N_NS ((int)(sizeof g_ns / sizeof g_ns[0]))

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* ---- kiln_data_shard -------------------------------------------------------------------------- */

Test(shard, train_shards_are_disjoint_and_cover_the_padded_order)
{
    for (int w = 1; w <= 4; w++)
        for (int t = 0; t < N_NS; t++) {
            int64_t n = g_ns[t], total = ceil_div(n, w) * w;
            int64_t *perm = malloc((size_t)(n + 1) * sizeof *perm), *out = malloc((size_t)(n + 4) * sizeof *out);
            int *seen = calloc((size_t)total + 1, sizeof *seen); /* per padded position */
            cr_assert(perm && out && seen);
            kiln_data_permutation(7, 3, n, perm);
            int64_t sum = 0;
            for (int r = 0; r < w; r++) {
                int64_t len = kiln_data_shard(n, r, w, true, perm, out);
                cr_assert_eq(len, n ? ceil_div(n, w) : 0, "n %lld world %d rank %d: len %lld", (long long)n, w, r,
                             (long long)len);
                cr_assert_eq(kiln_data_shard(n, r, w, true, perm, NULL), len, "length-only call");
                for (int64_t j = 0; j < len; j++) {
                    int64_t pos = r + j * w;
                    cr_assert_lt(pos, total);
                    cr_assert_eq(seen[pos], 0, "position %lld taken twice", (long long)pos);
                    seen[pos] = 1;
                    cr_assert_eq(out[j], perm[pos % n], "n %lld world %d rank %d item %lld", (long long)n, w, r,
                                 (long long)j);
                }
                sum += len;
            }
            cr_assert_eq(sum, n ? total : 0, "n %lld world %d: shards cover %lld of %lld positions", (long long)n, w,
                         (long long)sum, (long long)total);
            /* the first n positions are the permutation itself: every item once, the padding
             * repeats the first total - n items */
            if (n) {
                for (int64_t q = 0; q < total; q++) cr_assert(seen[q], "position %lld not covered", (long long)q);
            }
            free(perm), free(out), free(seen);
        }
}

Test(shard, valid_shards_partition_the_split_in_order)
{
    for (int w = 1; w <= 4; w++)
        for (int t = 0; t < N_NS; t++) {
            int64_t n = g_ns[t], *out = malloc((size_t)(n + 4) * sizeof *out);
            int *seen = calloc((size_t)n + 1, sizeof *seen);
            cr_assert(out && seen);
            int64_t sum = 0;
            for (int r = 0; r < w; r++) {
                int64_t len = kiln_data_shard(n, r, w, false, NULL, out);
                int64_t want = n > r ? ceil_div(n - r, w) : 0;
                cr_assert_eq(len, want, "n %lld world %d rank %d: %lld items, want %lld", (long long)n, w, r,
                             (long long)len, (long long)want);
                for (int64_t j = 0; j < len; j++) {
                    cr_assert_eq(out[j], r + j * w);
                    cr_assert_eq(seen[out[j]], 0, "item %lld in two shards", (long long)out[j]);
                    seen[out[j]] = 1;
                }
                sum += len;
            }
            cr_assert_eq(sum, n, "n %lld world %d: valid shards hold %lld items", (long long)n, w, (long long)sum);
            free(out), free(seen);
        }
}

Test(shard, world_one_is_the_order_itself)
{
    int64_t perm[13], out[13];
    kiln_data_permutation(99, 5, 13, perm);
    cr_assert_eq(kiln_data_shard(13, 0, 1, true, perm, out), 13);
    cr_assert_eq(memcmp(out, perm, sizeof perm), 0);
    cr_assert_eq(kiln_data_shard(13, 0, 1, false, perm, out), 13);
    cr_assert_eq(memcmp(out, perm, sizeof perm), 0);
}

Test(shard, bad_rank_or_world_is_invalid)
{
    int64_t out[4];
    cr_assert_eq(kiln_data_shard(4, 0, 0, true, NULL, out), KILN_STATUS_INVALID);
    ku_expect_error("world", "world 0");
    cr_assert_eq(kiln_data_shard(4, -1, 2, true, NULL, out), KILN_STATUS_INVALID);
    ku_expect_error("rank", "rank -1");
    cr_assert_eq(kiln_data_shard(4, 2, 2, false, NULL, out), KILN_STATUS_INVALID);
    ku_expect_error("rank", "rank == world");
    cr_assert_eq(kiln_data_shard(-1, 0, 1, false, NULL, out), KILN_STATUS_INVALID);
}

/* ---- tensor data -------------------------------------------------------------------------------- */

/* x (n, 2) f32 with row i = (i, -0.5 i), y (n) i64 = i: a row names its item. */
typedef struct rows {
    float *x;
    int64_t *y;
    kiln_tensor tx, ty;
} rows;

static rows make_rows(int64_t n, int64_t first)
{
    rows r = {.x = malloc((size_t)(2 * n + 2) * sizeof(float)), .y = malloc((size_t)(n + 1) * sizeof(int64_t))};
    cr_assert(r.x && r.y);
    for (int64_t i = 0; i < n; i++) {
        r.x[2 * i] = (float)(first + i);
        r.x[2 * i + 1] = -0.5f * (float)(first + i);
        r.y[i] = first + i;
    }
    kiln_tensor_wrap(&r.tx, KILN_DTYPE_F32, 2, (int64_t[]){n, 2}, r.x);
    kiln_tensor_wrap(&r.ty, KILN_DTYPE_I64, 1, (int64_t[]){n}, r.y);
    return r;
}

static void free_rows(rows *r) { free(r->x), free(r->y); }

static kiln_data *tensor_data(rows *tr, rows *va, int64_t b, bool drop_last, int rank, int world)
{
    kiln_tensor_data_params p = kiln_tensor_data_default_params();
    p.batch_size = b;
    p.valid_batch_size = b + 1; /* not a divisor of much: short last valid batches */
    p.drop_last = drop_last;
    p.rank = rank, p.world = world;
    kiln_data *d = kiln_tensor_data_new(&tr->tx, &tr->ty, va ? &va->tx : NULL, va ? &va->ty : NULL, &p);
    cr_assert(d, "tensor_data_new: %s", kiln_last_error());
    return d;
}

/* The y column of batch k of split into out (sorted when sort); checks x agrees with y. Returns
 * the batch's rows. */
static int64_t batch_items(kiln_data *d, kiln_ctx *ctx, kiln_data_split split, int64_t k, int64_t *out)
{
    kiln_tensor *x, *y;
    cr_assert_eq(kiln_data_get_batch(d, split, k, ctx, &x, &y), KILN_STATUS_OK, "%s", kiln_last_error());
    int64_t m = y->shape[0];
    const float *px = x->data;
    const int64_t *py = y->data;
    for (int64_t i = 0; i < m; i++) {
        cr_assert_eq(px[2 * i], (float)py[i], "x and y disagree");
        cr_assert_eq(px[2 * i + 1], -0.5f * (float)py[i], "x and y disagree");
        out[i] = py[i];
    }
    return m;
}

Test(shard, tensor_data_rank_batches_union_to_the_one_rank_batch)
{
    kiln_ctx *ctx = ku_ctx();
    const int64_t ns[] = {1, 3, 5, 10, 13, 24};
    for (int w = 1; w <= 4; w++)
        for (size_t t = 0; t < sizeof ns / sizeof ns[0]; t++)
            for (int64_t b = 1; b <= 3; b++)
                for (int dl = 0; dl < 2; dl++) {
                    int64_t n = ns[t], shard = ceil_div(n, w);
                    rows tr = make_rows(n, 0);
                    kiln_data *one = tensor_data(&tr, NULL, w * b, dl, 0, 1);
                    kiln_data *d[4];
                    for (int r = 0; r < w; r++) {
                        d[r] = tensor_data(&tr, NULL, b, dl, r, w);
                        cr_assert_eq(kiln_data_n_items(d[r], KILN_DATA_SPLIT_TRAIN), shard);
                        cr_assert_eq(kiln_data_n_batches(d[r], KILN_DATA_SPLIT_TRAIN), dl ? shard / b : ceil_div(shard, b),
                                     "n %lld world %d b %lld drop_last %d", (long long)n, w, (long long)b, dl);
                    }
                    int64_t *perm = malloc((size_t)n * sizeof *perm), u[16], v[16];
                    cr_assert(perm);
                    for (int64_t e = 0; e < 3; e++) {
                        cr_assert_eq(kiln_data_set_epoch(one, 42, e), KILN_STATUS_OK);
                        for (int r = 0; r < w; r++) cr_assert_eq(kiln_data_set_epoch(d[r], 42, e), KILN_STATUS_OK);
                        kiln_data_permutation(42, e, n, perm);
                        int64_t nb = kiln_data_n_batches(d[0], KILN_DATA_SPLIT_TRAIN);
                        int64_t full = 0;
                        for (int64_t k = 0; k < nb; k++) {
                            kiln_step_reset(ctx);
                            int64_t m = 0;
                            for (int r = 0; r < w; r++) {
                                int64_t got = batch_items(d[r], ctx, KILN_DATA_SPLIT_TRAIN, k, u + m);
                                /* rank r's row i of batch k is padded position r + (k b + i) world */
                                for (int64_t i = 0; i < got; i++)
                                    cr_assert_eq(u[m + i], perm[(r + (k * b + i) * w) % n]);
                                m += got;
                            }
                            if (w * (k + 1) * b <= n) { /* a full batch: no padding in it */
                                full++;
                                cr_assert_eq(m, w * b);
                                int64_t m1 = batch_items(one, ctx, KILN_DATA_SPLIT_TRAIN, k, v);
                                cr_assert_eq(m1, m, "n %lld world %d b %lld batch %lld: %lld rows vs %lld", (long long)n,
                                             w, (long long)b, (long long)k, (long long)m1, (long long)m);
                                qsort(u, (size_t)m, sizeof *u, cmp_i64);
                                qsort(v, (size_t)m, sizeof *v, cmp_i64);
                                for (int64_t i = 0; i < m; i++)
                                    cr_assert_eq(u[i], v[i], "n %lld world %d b %lld epoch %lld batch %lld: rows differ",
                                                 (long long)n, w, (long long)b, (long long)e, (long long)k);
                            }
                        }
                        cr_assert_eq(full, n / (w * b) < nb ? n / (w * b) : nb, "every full one-rank batch compared");
                    }
                    kiln_data_free(one);
                    for (int r = 0; r < w; r++) kiln_data_free(d[r]);
                    free(perm);
                    free_rows(&tr);
                }
    ku_ctx_free(ctx);
}

Test(shard, tensor_data_valid_shards_partition_the_valid_split)
{
    kiln_ctx *ctx = ku_ctx();
    const int64_t ns[] = {1, 2, 3, 7, 12};
    for (int w = 1; w <= 4; w++)
        for (size_t t = 0; t < sizeof ns / sizeof ns[0]; t++) {
            int64_t nv = ns[t];
            rows tr = make_rows(5, 0), va = make_rows(nv, 100);
            int *seen = calloc((size_t)nv, sizeof *seen);
            cr_assert(seen);
            int64_t total = 0, buf[16];
            for (int r = 0; r < w; r++) {
                kiln_data *d = tensor_data(&tr, &va, 2, true, r, w);
                int64_t want = nv > r ? ceil_div(nv - r, w) : 0;
                cr_assert_eq(kiln_data_n_items(d, KILN_DATA_SPLIT_VALID), want);
                cr_assert_eq(kiln_data_n_batches(d, KILN_DATA_SPLIT_VALID), ceil_div(want, 3));
                int64_t j = 0;
                for (int64_t k = 0; k < kiln_data_n_batches(d, KILN_DATA_SPLIT_VALID); k++) {
                    kiln_step_reset(ctx);
                    int64_t m = batch_items(d, ctx, KILN_DATA_SPLIT_VALID, k, buf);
                    for (int64_t i = 0; i < m; i++, j++) {
                        cr_assert_eq(buf[i], 100 + r + j * w, "world %d rank %d valid row %lld", w, r, (long long)j);
                        cr_assert_eq(seen[buf[i] - 100], 0, "valid item in two shards");
                        seen[buf[i] - 100] = 1;
                    }
                }
                cr_assert_eq(j, want);
                total += j;
                kiln_data_free(d);
            }
            cr_assert_eq(total, nv, "world %d: valid shards hold %lld of %lld items", w, (long long)total, (long long)nv);
            free(seen);
            free_rows(&tr), free_rows(&va);
        }
    ku_ctx_free(ctx);
}

/* world 1 (the default) is today's data: train batch k is rows perm[k b ..] of the epoch's
 * permutation, valid in order, compared byte for byte. */
Test(shard, tensor_data_world_one_is_unchanged)
{
    kiln_ctx *ctx = ku_ctx();
    rows tr = make_rows(23, 0), va = make_rows(9, 50);
    for (int dl = 0; dl < 2; dl++) {
        kiln_tensor_data_params p = kiln_tensor_data_default_params();
        cr_assert_eq(p.rank, 0);
        cr_assert_eq(p.world, 1);
        p.batch_size = 4, p.valid_batch_size = 5, p.drop_last = dl;
        kiln_data *d = kiln_tensor_data_new(&tr.tx, &tr.ty, &va.tx, &va.ty, &p);
        cr_assert(d, "%s", kiln_last_error());
        cr_assert_eq(kiln_data_n_items(d, KILN_DATA_SPLIT_TRAIN), 23);
        cr_assert_eq(kiln_data_n_items(d, KILN_DATA_SPLIT_VALID), 9);
        cr_assert_eq(kiln_data_n_batches(d, KILN_DATA_SPLIT_TRAIN), dl ? 5 : 6);
        cr_assert_eq(kiln_data_n_batches(d, KILN_DATA_SPLIT_VALID), 2);
        int64_t perm[23];
        for (int64_t e = 0; e < 2; e++) {
            cr_assert_eq(kiln_data_set_epoch(d, 5, e), KILN_STATUS_OK);
            kiln_data_permutation(5, e, 23, perm);
            for (int64_t k = 0; k < kiln_data_n_batches(d, KILN_DATA_SPLIT_TRAIN); k++) {
                kiln_step_reset(ctx);
                kiln_tensor *x, *y;
                cr_assert_eq(kiln_data_get_batch(d, KILN_DATA_SPLIT_TRAIN, k, ctx, &x, &y), KILN_STATUS_OK);
                int64_t m = y->shape[0];
                cr_assert_eq(m, 23 - 4 * k < 4 ? 23 - 4 * k : 4);
                for (int64_t i = 0; i < m; i++) {
                    int64_t it = perm[4 * k + i];
                    cr_assert_eq(memcmp((float *)x->data + 2 * i, tr.x + 2 * it, 2 * sizeof(float)), 0);
                    cr_assert_eq(((int64_t *)y->data)[i], it);
                }
            }
        }
        for (int64_t k = 0; k < 2; k++) {
            kiln_step_reset(ctx);
            kiln_tensor *x, *y;
            cr_assert_eq(kiln_data_get_batch(d, KILN_DATA_SPLIT_VALID, k, ctx, &x, &y), KILN_STATUS_OK);
            int64_t m = y->shape[0];
            cr_assert_eq(m, k ? 4 : 5);
            cr_assert_eq(memcmp(x->data, va.x + 2 * 5 * k, (size_t)m * 2 * sizeof(float)), 0);
            cr_assert_eq(memcmp(y->data, va.y + 5 * k, (size_t)m * sizeof(int64_t)), 0);
        }
        kiln_data_free(d);
    }
    free_rows(&tr), free_rows(&va);
    ku_ctx_free(ctx);
}

Test(shard, tensor_data_rejects_bad_rank_and_world)
{
    rows tr = make_rows(4, 0);
    kiln_tensor_data_params p = kiln_tensor_data_default_params();
    p.world = 0;
    cr_assert_null(kiln_tensor_data_new(&tr.tx, &tr.ty, NULL, NULL, &p));
    ku_expect_error("world", "world 0");
    p.world = 2, p.rank = 2;
    cr_assert_null(kiln_tensor_data_new(&tr.tx, &tr.ty, NULL, NULL, &p));
    ku_expect_error("rank", "rank 2 of 2");
    p.rank = -1;
    cr_assert_null(kiln_tensor_data_new(&tr.tx, &tr.ty, NULL, NULL, &p));
    ku_expect_error("rank", "rank -1");
    free_rows(&tr);
}

/* ---- vision loader ------------------------------------------------------------------------------ */

static char g_dir[256];

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

/* g_dir/{train,t10k}-*-ubyte: n 6x6 images, item i all pixels 5 i + first and label i + first
 * (so the label names the item). */
static void write_idx(const char *pre, int n, int first)
{
    uint8_t img[64 * 36], lab[64];
    cr_assert(n <= 64);
    for (int i = 0; i < n; i++) {
        lab[i] = (uint8_t)(first + i);
        memset(img + i * 36, 5 * (first + i), 36);
    }
    char a[512], b[512];
    snprintf(a, sizeof a, "%s/%s-images-idx3-ubyte", g_dir, pre);
    snprintf(b, sizeof b, "%s/%s-labels-idx1-ubyte", g_dir, pre);
    ku_write_idx(a, 0x803, (uint32_t[]){(uint32_t)n, 6, 6}, 3, img, (size_t)n * 36);
    ku_write_idx(b, 0x801, (uint32_t[]){(uint32_t)n}, 1, lab, (size_t)n);
}

static void make_dir(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/kiln_shard_XXXXXX");
    cr_assert(mkdtemp(g_dir));
}

static void drop_dir(void) { nftw(g_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

/* A transform that adds a value drawn from (seed, item_counter) to every pixel: batches show
 * whether an item got its own draw whichever rank made it. */
static kiln_status add_draw(void *user, float *img, int c, int h, int w, uint64_t seed, uint64_t ctr, bool train)
{
    (void)user;
    float a = kiln_philox_uniform(seed, ctr) * (train ? 1.0f : 0.0f);
    for (int q = 0; q < c * h * w; q++) img[q] += a;
    return KILN_STATUS_OK;
}

static kiln_data *vision(int64_t b, int rank, int world, int workers)
{
    char ti[512], tl[512], vi[512], vl[512];
    snprintf(ti, sizeof ti, "%s/train-images-idx3-ubyte", g_dir);
    snprintf(tl, sizeof tl, "%s/train-labels-idx1-ubyte", g_dir);
    snprintf(vi, sizeof vi, "%s/t10k-images-idx3-ubyte", g_dir);
    snprintf(vl, sizeof vl, "%s/t10k-labels-idx1-ubyte", g_dir);
    kiln_vision_params p = kiln_vision_default_params();
    p.norm = KILN_VISION_NORM_NONE;
    p.batch_size = b;
    p.valid_batch_size = 2;
    p.drop_last = false;
    p.n_workers = workers;
    p.prefetch = 3;
    p.tfm = add_draw;
    p.rank = rank, p.world = world;
    kiln_data *d = kiln_vision_idx_new(ti, tl, vi, vl, &p);
    cr_assert(d, "vision_idx_new: %s", kiln_last_error());
    return d;
}

/* Batch k of split: labels into lab, and the batch's x into xs (items of 36 floats). */
static int64_t vbatch(kiln_data *d, kiln_ctx *ctx, kiln_data_split split, int64_t k, int64_t *lab, float *xs)
{
    kiln_tensor *x, *y;
    cr_assert_eq(kiln_data_get_batch(d, split, k, ctx, &x, &y), KILN_STATUS_OK, "%s", kiln_last_error());
    int64_t m = y->shape[0];
    cr_assert_eq(x->shape[1], 1);
    cr_assert_eq(x->shape[2], 6);
    memcpy(lab, y->data, (size_t)m * sizeof *lab);
    memcpy(xs, x->data, (size_t)m * 36 * sizeof *xs);
    return m;
}

Test(shard, vision_loader_shards_train_valid_and_tta)
{
    make_dir();
    const int nt = 11, nv = 7;
    write_idx("train", nt, 0);
    write_idx("t10k", nv, 20);
    kiln_ctx *ctx = ku_ctx();
    int64_t perm[11], lab[64], lab1[64];
    float xs[64 * 36], xs1[64 * 36];
    for (int w = 1; w <= 4; w++) {
        const int64_t b = 2, shard = ceil_div(nt, w);
        kiln_data *one = vision(w * b, 0, 1, 0);
        kiln_data *d[4];
        for (int r = 0; r < w; r++) {
            d[r] = vision(b, r, w, r % 2 ? 2 : 0); /* threads or not: the same batches */
            cr_assert_eq(kiln_data_n_items(d[r], KILN_DATA_SPLIT_TRAIN), shard);
            cr_assert_eq(kiln_data_n_batches(d[r], KILN_DATA_SPLIT_TRAIN), ceil_div(shard, b));
            cr_assert_eq(kiln_data_n_items(d[r], KILN_DATA_SPLIT_VALID), nv > r ? ceil_div(nv - r, w) : 0);
        }
        for (int64_t e = 0; e < 2; e++) {
            kiln_data_permutation(8, e, nt, perm);
            cr_assert_eq(kiln_data_set_epoch(one, 8, e), KILN_STATUS_OK);
            for (int r = 0; r < w; r++) cr_assert_eq(kiln_data_set_epoch(d[r], 8, e), KILN_STATUS_OK);
            for (int64_t k = 0; k < kiln_data_n_batches(d[0], KILN_DATA_SPLIT_TRAIN); k++) {
                kiln_step_reset(ctx);
                int64_t m = 0;
                for (int r = 0; r < w; r++) {
                    int64_t got = vbatch(d[r], ctx, KILN_DATA_SPLIT_TRAIN, k, lab + m, xs + 36 * m);
                    for (int64_t i = 0; i < got; i++)
                        cr_assert_eq(lab[m + i], perm[(r + (k * b + i) * w) % nt], "world %d rank %d batch %lld",
                                     w, r, (long long)k);
                    m += got;
                }
                if (w * (k + 1) * b > nt) continue; /* padding: no one-rank batch to compare */
                int64_t m1 = vbatch(one, ctx, KILN_DATA_SPLIT_TRAIN, k, lab1, xs1);
                cr_assert_eq(m1, m);
                /* the same rows, pixels and transform draws included, in rank-interleaved order */
                for (int64_t i = 0; i < m; i++) {
                    int64_t j = 0;
                    while (j < m1 && lab1[j] != lab[i]) j++;
                    cr_assert_lt(j, m1, "world %d batch %lld: item %lld is not in the one-rank batch", w,
                                 (long long)k, (long long)lab[i]);
                    cr_assert_eq(memcmp(xs + 36 * i, xs1 + 36 * j, 36 * sizeof(float)), 0, "item %lld pixels",
                                 (long long)lab[i]);
                }
            }
        }
        /* valid, plain and as a TTA pass: rank r has items r, r + w, ... in order */
        for (int pass = -1; pass <= 0; pass++) {
            int seen[7] = {0}, total = 0;
            for (int r = 0; r < w; r++) {
                cr_assert_eq(kiln_data_set_tta_pass(d[r], pass), KILN_STATUS_OK);
                int64_t j = 0;
                for (int64_t k = 0; k < kiln_data_n_batches(d[r], KILN_DATA_SPLIT_VALID); k++) {
                    kiln_step_reset(ctx);
                    int64_t m = vbatch(d[r], ctx, KILN_DATA_SPLIT_VALID, k, lab, xs);
                    for (int64_t i = 0; i < m; i++, j++) {
                        cr_assert_eq(lab[i], 20 + r + j * w, "world %d rank %d valid %lld (pass %d)", w, r,
                                     (long long)j, pass);
                        cr_assert_eq(seen[lab[i] - 20]++, 0);
                        float base = 5.0f * (float)lab[i] / 255.0f;
                        if (pass < 0) cr_assert_eq(xs[36 * i], base, "valid: no training transform");
                        else cr_assert_neq(xs[36 * i], base, "TTA: the training transform runs");
                    }
                }
                total += (int)j;
            }
            cr_assert_eq(total, nv, "world %d: valid shards hold %d of %d items (pass %d)", w, total, nv, pass);
        }
        /* TTA on the train split too: still this rank's shard */
        for (int r = 0; r < w; r++) {
            cr_assert_eq(kiln_data_set_tta_pass(d[r], 1), KILN_STATUS_OK);
            kiln_step_reset(ctx);
            int64_t m = vbatch(d[r], ctx, KILN_DATA_SPLIT_TRAIN, 0, lab, xs);
            for (int64_t i = 0; i < m; i++) cr_assert_eq(lab[i], perm[(r + i * w) % nt]);
        }
        kiln_data_free(one);
        for (int r = 0; r < w; r++) kiln_data_free(d[r]);
    }
    ku_ctx_free(ctx);
    drop_dir();
}

/* world 1 is today's loader: train batch k is items perm[k b ..], byte for byte the same as a
 * source made without touching rank and world. */
Test(shard, vision_world_one_is_unchanged)
{
    make_dir();
    write_idx("train", 9, 0);
    write_idx("t10k", 5, 30);
    kiln_ctx *ctx = ku_ctx();
    kiln_vision_params dp = kiln_vision_default_params();
    cr_assert_eq(dp.rank, 0);
    cr_assert_eq(dp.world, 1);
    kiln_data *d = vision(4, 0, 1, 2);
    int64_t perm[9], lab[8];
    float xs[8 * 36];
    cr_assert_eq(kiln_data_n_items(d, KILN_DATA_SPLIT_TRAIN), 9);
    cr_assert_eq(kiln_data_n_batches(d, KILN_DATA_SPLIT_TRAIN), 3);
    cr_assert_eq(kiln_data_n_items(d, KILN_DATA_SPLIT_VALID), 5);
    cr_assert_eq(kiln_data_set_epoch(d, 3, 1), KILN_STATUS_OK);
    kiln_data_permutation(3, 1, 9, perm);
    for (int64_t k = 0; k < 3; k++) {
        kiln_step_reset(ctx);
        int64_t m = vbatch(d, ctx, KILN_DATA_SPLIT_TRAIN, k, lab, xs);
        cr_assert_eq(m, k < 2 ? 4 : 1);
        for (int64_t i = 0; i < m; i++) {
            cr_assert_eq(lab[i], perm[4 * k + i]);
            float want = 5.0f * (float)lab[i] / 255.0f +
                         kiln_philox_uniform(3, kiln_vision_item_counter(1, KILN_DATA_SPLIT_TRAIN, lab[i]));
            for (int q = 0; q < 36; q++) cr_assert_eq(xs[36 * i + q], want, "train item %lld", (long long)lab[i]);
        }
    }
    for (int64_t k = 0; k < 3; k++) {
        kiln_step_reset(ctx);
        int64_t m = vbatch(d, ctx, KILN_DATA_SPLIT_VALID, k, lab, xs);
        cr_assert_eq(m, k < 2 ? 2 : 1);
        for (int64_t i = 0; i < m; i++) cr_assert_eq(lab[i], 30 + 2 * k + i);
    }
    kiln_data_free(d);
    ku_ctx_free(ctx);
    drop_dir();
}

Test(shard, vision_rejects_bad_rank_and_world)
{
    make_dir();
    write_idx("train", 4, 0);
    char ti[512], tl[512];
    snprintf(ti, sizeof ti, "%s/train-images-idx3-ubyte", g_dir);
    snprintf(tl, sizeof tl, "%s/train-labels-idx1-ubyte", g_dir);
    kiln_vision_params p = kiln_vision_default_params();
    p.world = 0;
    cr_assert_null(kiln_vision_idx_new(ti, tl, NULL, NULL, &p));
    ku_expect_error("world", "world 0");
    p.world = 3, p.rank = 3;
    cr_assert_null(kiln_vision_idx_new(ti, tl, NULL, NULL, &p));
    ku_expect_error("rank", "rank 3 of 3");
    p.rank = -2;
    cr_assert_null(kiln_vision_idx_new(ti, tl, NULL, NULL, &p));
    ku_expect_error("rank", "rank -2");
    drop_dir();
}

/* ---- tabular: tensor data underneath ----------------------------------------------------------- */

/* Batch k's x rows (n_cols floats each) of d appended to rows; returns the count. */
static int64_t tab_rows(kiln_data *d, kiln_ctx *ctx, kiln_data_split split, int64_t k, float *rows, int64_t *cols)
{
    kiln_tensor *x, *y;
    cr_assert_eq(kiln_data_get_batch(d, split, k, ctx, &x, &y), KILN_STATUS_OK, "%s", kiln_last_error());
    *cols = x->shape[1];
    memcpy(rows, x->data, (size_t)(x->shape[0] * x->shape[1]) * sizeof *rows);
    return x->shape[0];
}

Test(shard, tabular_data_shards_through_tensor_data)
{
    char path[] = "/tmp/kiln_shard_tab_XXXXXX", csv[2048];
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    size_t len = (size_t)sprintf(csv, "c,x,y\n");
    for (int i = 0; i < 20; i++) len += (size_t)sprintf(csv + len, "%c,%d.25,%d\n", 'a' + i % 3, i, i % 4);
    ku_write_bytes(path, csv, len);
    kiln_tab_params p = kiln_tab_default_params();
    cr_assert_eq(p.rank, 0);
    cr_assert_eq(p.world, 1);
    p.target = "y";
    p.batch_size = 4;
    kiln_tab_procs *pr[3];
    kiln_data *one = kiln_tabular_data_open(path, NULL, &p, &pr[2], NULL), *d[2];
    cr_assert(one, "%s", kiln_last_error());
    p.batch_size = 2, p.world = 2;
    for (int r = 0; r < 2; r++) {
        p.rank = r;
        cr_assert((d[r] = kiln_tabular_data_open(path, NULL, &p, &pr[r], NULL)), "%s", kiln_last_error());
        cr_assert_eq(kiln_data_n_items(d[r], KILN_DATA_SPLIT_TRAIN), 8, "16 train rows over 2 ranks");
        cr_assert_eq(kiln_data_n_items(d[r], KILN_DATA_SPLIT_VALID), 2, "4 valid rows over 2 ranks");
        cr_assert_eq(kiln_data_n_batches(d[r], KILN_DATA_SPLIT_TRAIN), 4);
    }
    cr_assert_eq(kiln_data_n_batches(one, KILN_DATA_SPLIT_TRAIN), 4);
    kiln_ctx *ctx = ku_ctx();
    float a[8 * 16], b[8 * 16];
    int64_t ca = 0, cb = 0;
    cr_assert_eq(kiln_data_set_epoch(one, 11, 2), KILN_STATUS_OK);
    for (int r = 0; r < 2; r++) cr_assert_eq(kiln_data_set_epoch(d[r], 11, 2), KILN_STATUS_OK);
    for (int split = 0; split < 2; split++) {
        int64_t nb = kiln_data_n_batches(one, (kiln_data_split)split);
        for (int64_t k = 0; k < nb; k++) {
            kiln_step_reset(ctx);
            int64_t m1 = tab_rows(one, ctx, (kiln_data_split)split, k, b, &cb), m = 0;
            if (split == KILN_DATA_SPLIT_TRAIN) { /* rank batch k: half of one-rank batch k each */
                for (int r = 0; r < 2; r++) m += tab_rows(d[r], ctx, KILN_DATA_SPLIT_TRAIN, k, a + m * cb, &ca);
            } else { /* valid: the one-rank split's rows, spread over the ranks */
                for (int r = 0; r < 2; r++)
                    for (int64_t q = 0; q < kiln_data_n_batches(d[r], KILN_DATA_SPLIT_VALID); q++)
                        m += tab_rows(d[r], ctx, KILN_DATA_SPLIT_VALID, q, a + m * cb, &ca);
            }
            cr_assert_eq(ca, cb);
            cr_assert_eq(m, m1, "%s batch %lld: %lld rows over the ranks, %lld in one", split ? "valid" : "train",
                         (long long)k, (long long)m, (long long)m1);
            bool used[16] = {false};
            for (int64_t i = 0; i < m; i++) {
                int64_t j = 0;
                while (j < m1 && (used[j] || memcmp(a + i * ca, b + j * cb, (size_t)ca * sizeof(float)))) j++;
                cr_assert_lt(j, m1, "%s batch %lld: a rank's row is not in the one-rank batch", split ? "valid" : "train",
                             (long long)k);
                used[j] = true;
            }
        }
    }
    ku_ctx_free(ctx);
    for (int r = 0; r < 3; r++) kiln_tab_procs_free(pr[r]);
    kiln_data_free(one), kiln_data_free(d[0]), kiln_data_free(d[1]);
    p.rank = 2;
    kiln_tab_procs *bad = NULL;
    cr_assert_null(kiln_tabular_data_open(path, NULL, &p, &bad, NULL));
    ku_expect_error("rank", "tabular rank 2 of 2");
    unlink(path);
}
