/* safetensors: round trips of every dtype and shape (scalar, empty, strided views),
 * metadata, atomic overwrite, files written by PyTorch (F16/BF16 conversions checked
 * against torch's own, bit for bit), the half conversions exhaustively, and one test per
 * kind of malformed file: each must fail with a status and a message naming the file and
 * the fault, never crash. Exact comparisons throughout (tolerance 0). */
#include "util/ku.h"
#include "io/half.h"

#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_dir[64];
static kiln_ctx *ctx;

static void setup(void)
{
    strcpy(g_dir, "/tmp/kiln_st_XXXXXX");
    cr_assert_not_null(mkdtemp(g_dir));
    ctx = ku_ctx();
}

static void teardown(void)
{
    ku_ctx_free(ctx);
    DIR *d = opendir(g_dir);
    struct dirent *e;
    char p[512];
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", g_dir, e->d_name);
            if (unlink(p)) rmdir(p);
        }
    if (d) closedir(d);
    rmdir(g_dir);
}

TestSuite(st, .init = setup, .fini = teardown);
TestSuite(st_bad, .init = setup, .fini = teardown);

static char *tpath(char *out, const char *name)
{
    snprintf(out, 512, "%s/%s", g_dir, name);
    return out;
}

static void write_bytes(const char *path, const void *p, size_t n)
{
    FILE *fp = fopen(path, "wb");
    cr_assert_not_null(fp);
    cr_assert_eq(fwrite(p, 1, n, fp), n);
    fclose(fp);
}

static unsigned char *read_all(const char *path, size_t *n)
{
    FILE *fp = fopen(path, "rb");
    cr_assert_not_null(fp, "cannot read %s", path);
    fseek(fp, 0, SEEK_END);
    *n = (size_t)ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *b = malloc(*n + 1);
    cr_assert_eq(fread(b, 1, *n, fp), *n);
    fclose(fp);
    return b;
}

/* A file with header length hlen (as stored), the JSON text and data_bytes zero bytes. */
static void write_st(const char *path, uint64_t hlen, const char *json, size_t data_bytes)
{
    size_t jl = strlen(json), n = 8 + jl + data_bytes;
    unsigned char *b = calloc(1, n);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(hlen >> (8 * i));
    memcpy(b + 8, json, jl);
    write_bytes(path, b, n);
    free(b);
}

static void expect_open_fails(const char *path, kiln_status want, const char *w1, const char *w2)
{
    kiln_st_file *f = (kiln_st_file *)1;
    kiln_status s = kiln_st_open(path, &f);
    const char *msg = kiln_last_error();
    cr_assert_eq(s, want, "open %s: status %d (%s), expected %d", path, s, msg, want);
    cr_assert_null(f, "a failed open must leave *out NULL");
    cr_assert(strstr(msg, path), "message '%s' does not name the file", msg);
    cr_assert(strstr(msg, w1), "message '%s' does not mention '%s'", msg, w1);
    cr_assert(!w2 || strstr(msg, w2), "message '%s' does not mention '%s'", msg, w2);
}

/* One test per malformed header: json with data_bytes of data after it. */
#define BAD(tname, json, data_bytes, status, w1, w2)                                              \
    Test(st_bad, tname)                                                                           \
    {                                                                                             \
        char p[512];                                                                              \
        tpath(p, #tname ".safetensors");                                                          \
        write_st(p, strlen(json), json, data_bytes);                                              \
        expect_open_fails(p, status, w1, w2);                                                     \
    }
#define F KILN_STATUS_FORMAT
#define W(rest) "{\"w\":{" rest "}}"
#define OK_ENTRY "\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]"

BAD(invalid_json, "{\"w\":{\"dtype\":", 0, F, "JSON", NULL)
BAD(trailing_garbage, "{} x", 0, F, "JSON", NULL)
BAD(empty_header, "", 0, F, "JSON", NULL)
BAD(header_not_object, "[1,2]", 0, F, "not a JSON object", NULL)
BAD(entry_not_object, "{\"w\":5}", 8, F, "\"w\"", "not an object")
BAD(missing_dtype, W("\"shape\":[2],\"data_offsets\":[0,8]"), 8, F, "\"w\"", "missing dtype")
BAD(dtype_not_string, W("\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]"), 8, F, "\"w\"", "dtype")
BAD(unknown_dtype, W("\"dtype\":\"F99\",\"shape\":[2],\"data_offsets\":[0,8]"), 8, F, "unknown dtype", "F99")
BAD(unsupported_dtype, W("\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]"), 8,
    KILN_STATUS_UNSUPPORTED, "F64", "\"w\"")
BAD(missing_shape, W("\"dtype\":\"F32\",\"data_offsets\":[0,8]"), 8, F, "\"w\"", "missing shape")
BAD(shape_not_array, W("\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]"), 8, F, "shape", "array")
BAD(negative_dim, W("\"dtype\":\"F32\",\"shape\":[2,-1],\"data_offsets\":[0,8]"), 8, F, "shape[1]", "negative")
BAD(fractional_dim, W("\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,8]"), 8, F, "shape[0]", "integer")
BAD(string_dim, W("\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]"), 8, F, "shape[0]", "number")
BAD(huge_dim, W("\"dtype\":\"F32\",\"shape\":[1e300],\"data_offsets\":[0,8]"), 8, F, "shape[0]", "too large")
BAD(too_many_dims, W("\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,2],\"data_offsets\":[0,8]"), 8, F,
    "\"w\"", "9 dims")
BAD(numel_overflow, W("\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]"), 8,
    F, "\"w\"", "overflow")
BAD(bytes_overflow, W("\"dtype\":\"I64\",\"shape\":[2147483648,2147483648],\"data_offsets\":[0,8]"), 8,
    F, "\"w\"", "overflow")
BAD(missing_offsets, W("\"dtype\":\"F32\",\"shape\":[2]"), 8, F, "\"w\"", "missing data_offsets")
BAD(offsets_one_value, W("\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]"), 8, F, "\"w\"", "data_offsets")
BAD(offsets_negative, W("\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[-4,-4]"), 8, F, "data_offsets[0]",
    "negative")
BAD(offsets_fraction, W("\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8.5]"), 8, F, "data_offsets[1]",
    "integer")
BAD(shape_bytes_mismatch, W("\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]"), 24, F, "\"w\"",
    "24 bytes")
BAD(begin_after_end, W("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]"), 8, F, "\"w\"", "begin 8 > end 4")
BAD(truncated_body, W("\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]"), 8, F, "\"w\"", "truncated")
BAD(offsets_past_end, W("\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[9007199254740000,9007199254740004]"),
    8, F, "\"w\"", "past the end")
BAD(overlap, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
             "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}", 24, F, "overlap", "\"b\"")
BAD(overlap_same_range, "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]},"
                        "\"b\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, F, "overlap", "\"a\"")
BAD(duplicate_name, "{\"w\":{" OK_ENTRY "},\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
    16, F, "duplicate", "\"w\"")
BAD(metadata_not_object, "{\"__metadata__\":[\"a\"]}", 0, F, "__metadata__", "not an object")
BAD(metadata_value_number, "{\"__metadata__\":{\"epoch\":3}}", 0, F, "__metadata__", "\"epoch\" is not a string")
BAD(metadata_value_null, "{\"__metadata__\":{\"k\":null}," "\"w\":{" OK_ENTRY "}}", 8, F, "__metadata__", "\"k\"")
BAD(metadata_duplicate_key, "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, F, "duplicate", "\"k\"")
BAD(metadata_twice, "{\"__metadata__\":{},\"__metadata__\":{}}", 0, F, "duplicate __metadata__", NULL)

Test(st_bad, file_shorter_than_8_bytes)
{
    char p[512];
    write_bytes(tpath(p, "short.safetensors"), "\x02\0\0\0\0", 5);
    expect_open_fails(p, F, "5 bytes", "too short");
    write_bytes(p, "", 0);
    expect_open_fails(p, F, "0 bytes", "too short");
}

Test(st_bad, header_longer_than_file)
{
    char p[512];
    write_st(tpath(p, "long.safetensors"), 1000, "{}", 10);
    expect_open_fails(p, F, "header length 1000", "truncated");
    write_st(p, 3, "{}", 0); /* one byte short */
    expect_open_fails(p, F, "header length 3", "truncated");
}

Test(st_bad, header_length_absurd)
{
    char p[512];
    write_st(tpath(p, "absurd.safetensors"), UINT64_MAX, "{}", 0);
    expect_open_fails(p, F, "absurd", NULL);
    write_st(p, 200u * 1000 * 1000, "{}", 0);
    expect_open_fails(p, F, "absurd", "200000000");
}

Test(st_bad, control_bytes_in_header)
{
    char p[512];
    unsigned char b[8 + 8] = {8, 0, 0, 0, 0, 0, 0, 0, '{', '}', 0, ' ', ' ', 'x', ' ', ' '};
    write_bytes(tpath(p, "nul.safetensors"), b, sizeof b);
    expect_open_fails(p, F, "JSON", "byte 0x00 at byte 2");
    unsigned char pad[8 + 8] = {8, 0, 0, 0, 0, 0, 0, 0, '{', '}', 0, 0, 0, 0, 0, 0}; /* NUL padding */
    write_bytes(p, pad, sizeof pad);
    expect_open_fails(p, F, "JSON", "byte 0x00 at byte 2");
    pad[10] = '\n', pad[11] = '\t', pad[12] = '\r', pad[13] = ' ', pad[14] = 0x1f, pad[15] = ' ';
    write_bytes(p, pad, sizeof pad);
    expect_open_fails(p, F, "JSON", "byte 0x1f at byte 6");
    pad[14] = ' ';
    write_bytes(p, pad, sizeof pad);
    kiln_st_file *f;
    cr_assert_eq(kiln_st_open(p, &f), KILN_STATUS_OK, "JSON whitespace is fine: %s", kiln_last_error());
    kiln_st_close(f);
}

Test(st_bad, missing_file_and_directory)
{
    char p[512];
    expect_open_fails(tpath(p, "does_not_exist.safetensors"), KILN_STATUS_IO, "cannot open", NULL);
    mkdir(tpath(p, "adir"), 0700);
    expect_open_fails(p, KILN_STATUS_IO, "regular file", NULL);
    kiln_st_file *f;
    cr_assert_eq(kiln_st_open(NULL, &f), KILN_STATUS_INVALID);
    cr_assert_eq(kiln_st_open(p, NULL), KILN_STATUS_INVALID);
}

Test(st, unusual_but_valid_headers)
{
    char p[512];
    kiln_st_file *f = NULL;
    write_st(tpath(p, "empty.safetensors"), 8, "{}      ", 0); /* space padding, no tensors */
    cr_assert_eq(kiln_st_open(p, &f), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert_eq(kiln_st_count(f), 0);
    cr_assert_null(kiln_st_metadata(f, "x"));
    kiln_st_close(f);
    /* Whitespace, unknown fields, a hole in the data, an empty tensor inside another's bytes. */
    const char *j = "{\n \"b\": {\"dtype\": \"U8\", \"shape\": [2], \"data_offsets\": [6, 8], \"x\": 1},\n"
                    " \"e\": {\"dtype\": \"F32\", \"shape\": [0, 7], \"data_offsets\": [7, 7]},\n"
                    " \"a\": {\"dtype\": \"I32\", \"shape\": [], \"data_offsets\": [0, 4]} }";
    write_st(p, strlen(j), j, 8);
    cr_assert_eq(kiln_st_open(p, &f), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert_eq(kiln_st_count(f), 3);
    cr_assert_str_eq(kiln_st_name(f, 0), "b"); /* header order */
    cr_assert_str_eq(kiln_st_name(f, 2), "a");
    cr_assert_null(kiln_st_name(f, 3));
    cr_assert(kiln_st_has(f, "e") && !kiln_st_has(f, "c"));
    kiln_tensor *e = kiln_st_load(ctx, f, "e");
    cr_assert(e && e->ndim == 2 && e->shape[1] == 7 && kiln_numel(e) == 0);
    kiln_st_close(f);
}

/* Every truncation of a valid file fails cleanly; corrupting any header byte never crashes
 * (run under KILN_SANITIZE=ON to catch out-of-bounds reads). */
Test(st_bad, truncations_and_corruptions_never_crash)
{
    char p[512], q[512];
    float v[6] = {1, 2, 3, 4, 5, 6};
    kiln_tensor a, b;
    kiln_tensor_wrap(&a, KILN_DTYPE_F32, 2, (int64_t[]){2, 3}, v);
    kiln_tensor_wrap(&b, KILN_DTYPE_U8, 1, (int64_t[]){3}, v);
    kiln_st_entry ent[] = {{"a", &a}, {"b", &b}};
    const char *meta[] = {"k", "v", NULL};
    cr_assert_eq(kiln_st_save(tpath(p, "good.safetensors"), ent, 2, meta), KILN_STATUS_OK);
    size_t n;
    unsigned char *buf = read_all(p, &n);
    tpath(q, "cut.safetensors");
    kiln_st_file *f;
    for (size_t len = 0; len < n; len++) {
        write_bytes(q, buf, len);
        kiln_status s = kiln_st_open(q, &f);
        cr_assert_lt(s, 0, "a file cut to %zu of %zu bytes opened", len, n);
        cr_assert(strstr(kiln_last_error(), q), "%s", kiln_last_error());
    }
    const unsigned char subst[] = {0, 'x', '"', '}', '{', '[', ',', '-', '9', '.', 0xff, ' '};
    size_t hlen = buf[0] | (size_t)buf[1] << 8;
    for (size_t i = 8; i < 8 + hlen; i++)
        for (size_t k = 0; k < sizeof subst; k++) {
            unsigned char old = buf[i];
            buf[i] = subst[k];
            write_bytes(q, buf, n);
            kiln_status s = kiln_st_open(q, &f);
            if (s == KILN_STATUS_OK) { /* then every tensor it describes must be readable */
                for (size_t j = 0; j < kiln_st_count(f); j++)
                    cr_assert_not_null(kiln_st_load(ctx, f, kiln_st_name(f, j)), "%s", kiln_last_error());
                kiln_st_close(f);
                kiln_step_reset(ctx);
            } else cr_assert(strstr(kiln_last_error(), q), "%s", kiln_last_error());
            buf[i] = old;
        }
    free(buf);
}

/* ---- round trips ------------------------------------------------------------------------ */

static void expect_info(kiln_st_file *f, const char *name, kiln_dtype dt, int nd, const int64_t *shape)
{
    kiln_dtype d;
    int n;
    int64_t sh[KILN_MAX_DIMS];
    const void *data;
    size_t nb;
    cr_assert_eq(kiln_st_info(f, name, &d, &n, sh, &data, &nb), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert_eq(d, dt, "%s: dtype %d, expected %d", name, d, dt);
    cr_assert_eq(n, nd, "%s: ndim %d, expected %d", name, n, nd);
    size_t numel = 1;
    for (int i = 0; i < nd; i++) {
        cr_assert_eq(sh[i], shape[i], "%s: dim %d is %lld", name, i, (long long)sh[i]);
        numel *= (size_t)shape[i];
    }
    cr_assert_eq(nb, numel * kiln_dtype_size(dt), "%s: %zu bytes", name, nb);
    cr_assert_eq((uintptr_t)data % kiln_dtype_size(dt), 0, "%s: data not aligned to its element size", name);
}

/* got (loaded) equals the strided tensor want element by element, compared as bytes. */
static void expect_same(const kiln_tensor *got, const kiln_tensor *want, const char *name)
{
    cr_assert_not_null(got, "%s: %s", name, kiln_last_error());
    cr_assert(kiln_same_shape(got, want), "%s: shape differs", name);
    cr_assert_eq(got->dtype, want->dtype, "%s: dtype %d, expected %d", name, got->dtype, want->dtype);
    cr_assert(kiln_is_contiguous(got), "%s: loaded tensor not contiguous", name);
    size_t es = kiln_dtype_size(want->dtype);
    for (int64_t i = 0, n = kiln_numel(want); i < n; i++) {
        int64_t off = 0, r = i;
        for (int d = want->ndim - 1; d >= 0; d--) {
            off += (r % want->shape[d]) * want->stride[d];
            r /= want->shape[d];
        }
        cr_assert(!memcmp((char *)got->data + i * (int64_t)es, (char *)want->data + off * (int64_t)es, es),
                  "%s: element %lld differs", name, (long long)i);
    }
}

Test(st, round_trip_dtypes_shapes_and_views)
{
    float af[6] = {-1, 0.5f, 2, -0.0f, 1e-30f, 3e38f}, base[12], sc = 42.25f;
    int64_t bi[4] = {0, -1, INT64_MAX, INT64_MIN}, base64[6] = {1, 2, 3, 4, 5, 6};
    int32_t ci[8] = {0, 1, -1, INT32_MAX, INT32_MIN, 7, 8, 9};
    uint8_t du[5] = {0, 1, 127, 128, 255};
    uint16_t eh[3] = {0x3c00, 0x0001, 0xfc00}, gb[2] = {0x3f80, 0xc000};
    for (int i = 0; i < 12; i++) base[i] = (float)i;
    kiln_tensor a, b, c, d, e, g, s, z, tr, sl, bc, t64;
    kiln_tensor_wrap(&a, KILN_DTYPE_F32, 2, (int64_t[]){2, 3}, af);
    kiln_tensor_wrap(&b, KILN_DTYPE_I64, 1, (int64_t[]){4}, bi);
    kiln_tensor_wrap(&c, KILN_DTYPE_I32, 3, (int64_t[]){2, 2, 2}, ci);
    kiln_tensor_wrap(&d, KILN_DTYPE_U8, 1, (int64_t[]){5}, du);
    kiln_tensor_wrap(&e, KILN_DTYPE_F16, 1, (int64_t[]){3}, eh);
    kiln_tensor_wrap(&g, KILN_DTYPE_BF16, 2, (int64_t[]){1, 2}, gb);
    kiln_tensor_wrap(&s, KILN_DTYPE_F32, 0, NULL, &sc);
    kiln_tensor_wrap(&z, KILN_DTYPE_F32, 2, (int64_t[]){0, 3}, NULL);
    /* Views over base (3, 4): transpose (4, 3), every other column (3, 2), broadcast (2, 4). */
    kiln_tensor_wrap(&tr, KILN_DTYPE_F32, 2, (int64_t[]){4, 3}, base);
    tr.stride[0] = 1, tr.stride[1] = 4;
    kiln_tensor_wrap(&sl, KILN_DTYPE_F32, 2, (int64_t[]){3, 2}, base + 1);
    sl.stride[0] = 4, sl.stride[1] = 2;
    kiln_tensor_wrap(&bc, KILN_DTYPE_F32, 2, (int64_t[]){2, 4}, base + 4);
    bc.stride[0] = 0;
    kiln_tensor_wrap(&t64, KILN_DTYPE_I64, 2, (int64_t[]){3, 2}, base64); /* transpose of (2, 3) */
    t64.stride[0] = 1, t64.stride[1] = 3;
    cr_assert(!kiln_is_contiguous(&tr) && !kiln_is_contiguous(&sl) && !kiln_is_contiguous(&bc));
    kiln_st_entry ent[] = {{"u8", &d}, {"f32", &a}, {"i64", &b}, {"i32", &c}, {"f16", &e},
                           {"bf16", &g}, {"scalar", &s}, {"empty", &z}, {"transposed", &tr},
                           {"sliced", &sl}, {"broadcast", &bc}, {"i64.t", &t64}};
    size_t n = sizeof ent / sizeof *ent;
    char p[512];
    cr_assert_eq(kiln_st_save(tpath(p, "rt.safetensors"), ent, n, NULL), KILN_STATUS_OK, "%s", kiln_last_error());

    kiln_st_file *f = NULL;
    cr_assert_eq(kiln_st_open(p, &f), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert_str_eq(kiln_st_path(f), p);
    cr_assert_eq(kiln_st_count(f), n);
    for (size_t i = 0; i < n; i++) {
        cr_assert_str_eq(kiln_st_name(f, i), ent[i].name, "names keep the caller's order");
        expect_info(f, ent[i].name, ent[i].t->dtype, ent[i].t->ndim, ent[i].t->shape);
    }
    for (size_t i = 0; i < n; i++) {
        const kiln_tensor *t = ent[i].t;
        if (t->dtype == KILN_DTYPE_F16 || t->dtype == KILN_DTYPE_BF16) continue;
        kiln_tensor *x = kiln_st_load(ctx, f, ent[i].name);
        expect_same(x, t, ent[i].name);
        cr_assert_str_eq(x->name, ent[i].name);
    }
    /* Half types come back as f32. */
    kiln_tensor *eh32 = kiln_st_load(ctx, f, "f16"), *gb32 = kiln_st_load(ctx, f, "bf16");
    cr_assert(eh32 && eh32->dtype == KILN_DTYPE_F32 && gb32 && gb32->dtype == KILN_DTYPE_F32);
    const float *ev = eh32->data, *gv = gb32->data;
    cr_assert(ev[0] == 1.0f && ev[1] == ldexpf(1, -24) && isinf(ev[2]) && ev[2] < 0);
    cr_assert(gv[0] == 1.0f && gv[1] == -2.0f && gb32->ndim == 2 && gb32->shape[1] == 2);
    cr_assert_eq(kiln_item(kiln_st_load(ctx, f, "scalar")), 42.25f);
    cr_assert_eq(kiln_st_load(ctx, f, "scalar")->ndim, 0);
    cr_assert_null(kiln_st_load(ctx, f, "nope"));
    ku_expect_error("nope", "missing tensor");
    ku_expect_error(p, "missing tensor names the file");
    cr_assert_eq(kiln_st_info(f, "nope", NULL, NULL, NULL, NULL, NULL), KILN_STATUS_INVALID);
    kiln_st_close(f);

    /* File layout: 8-byte header length, multiple of 8, no holes, data after it. */
    size_t sz;
    unsigned char *raw = read_all(p, &sz);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | raw[i];
    cr_assert_eq(hlen % 8, 0);
    size_t data = 0;
    for (size_t i = 0; i < n; i++) data += (size_t)kiln_numel(ent[i].t) * kiln_dtype_size(ent[i].t->dtype);
    cr_assert_eq(sz, 8 + hlen + data, "file size %zu", sz);
    cr_assert(raw[8] == '{' && (raw[8 + hlen - 1] == '}' || raw[8 + hlen - 1] == ' '));
    free(raw);
}

Test(st, metadata_round_trip_and_big_integers)
{
    const char *meta[] = {"format", "pt", "epoch", "3", "note", "quote \" backslash \\ newline \n tab \t \xe2\x9c\x93",
                          "empty", "", NULL};
    kiln_tensor z;
    kiln_tensor_wrap(&z, KILN_DTYPE_U8, 2, (int64_t[]){0, 1234567890123456}, NULL);
    kiln_st_entry ent[] = {{"weird \"name\"\n\xe2\x9c\x93", &z}};
    char p[512];
    cr_assert_eq(kiln_st_save(tpath(p, "meta.safetensors"), ent, 1, meta), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_st_file *f;
    cr_assert_eq(kiln_st_open(p, &f), KILN_STATUS_OK, "%s", kiln_last_error());
    for (int i = 0; meta[i]; i += 2) {
        const char *v = kiln_st_metadata(f, meta[i]);
        cr_assert(v && !strcmp(v, meta[i + 1]), "metadata %s = '%s'", meta[i], v ? v : "(null)");
    }
    cr_assert_null(kiln_st_metadata(f, "absent"));
    cr_assert_str_eq(kiln_st_name(f, 0), ent[0].name);
    expect_info(f, ent[0].name, KILN_DTYPE_U8, 2, z.shape);
    kiln_st_close(f);
    size_t sz;
    char *raw = (char *)read_all(p, &sz);
    raw[sz] = 0;
    cr_assert(strstr(raw + 8, "1234567890123456]"), "dims are written as plain integers: %s", raw + 8);
    free(raw);
}

Test(st, save_replaces_atomically_and_reports_errors)
{
    char p[512], q[512];
    float v1[2] = {1, 2}, v2[3] = {7, 8, 9};
    kiln_tensor t1, t2;
    kiln_tensor_wrap(&t1, KILN_DTYPE_F32, 1, (int64_t[]){2}, v1);
    kiln_tensor_wrap(&t2, KILN_DTYPE_F32, 1, (int64_t[]){3}, v2);
    tpath(p, "ckpt.safetensors");
    cr_assert_eq(kiln_st_save(p, (kiln_st_entry[]){{"w", &t1}}, 1, NULL), KILN_STATUS_OK);
    cr_assert_eq(kiln_st_save(p, (kiln_st_entry[]){{"w", &t2}}, 1, NULL), KILN_STATUS_OK);
    kiln_st_file *f;
    cr_assert_eq(kiln_st_open(p, &f), KILN_STATUS_OK);
    expect_same(kiln_st_load(ctx, f, "w"), &t2, "w");
    kiln_st_close(f);
    int files = 0;
    DIR *d = opendir(g_dir);
    for (struct dirent *e; (e = readdir(d));) files += e->d_name[0] != '.';
    closedir(d);
    cr_assert_eq(files, 1, "no temp file may be left behind");

    /* Errors: each names the path and leaves the old file alone. */
    const kiln_st_entry dup[] = {{"w", &t1}, {"w", &t2}};
    cr_assert_eq(kiln_st_save(p, dup, 2, NULL), KILN_STATUS_INVALID);
    ku_expect_error("duplicate", "duplicate names");
    ku_expect_error(p, "duplicate names");
    cr_assert_eq(kiln_st_save(p, (kiln_st_entry[]){{"__metadata__", &t1}}, 1, NULL), KILN_STATUS_INVALID);
    cr_assert_eq(kiln_st_save(p, (kiln_st_entry[]){{"x", NULL}}, 1, NULL), KILN_STATUS_INVALID);
    cr_assert_eq(kiln_st_save(p, (kiln_st_entry[]){{"\xff", &t1}}, 1, NULL), KILN_STATUS_INVALID);
    ku_expect_error("UTF-8", "bad name");
    const char *meta_bad[] = {"k", NULL, NULL};
    cr_assert_eq(kiln_st_save(p, (kiln_st_entry[]){{"x", &t1}}, 1, meta_bad), KILN_STATUS_INVALID);
    ku_expect_error("no value", "metadata without value");
    cr_assert_eq(kiln_st_open(p, &f), KILN_STATUS_OK);
    expect_same(kiln_st_load(ctx, f, "w"), &t2, "w after failed saves");
    kiln_st_close(f);
    cr_assert_eq(kiln_st_save(tpath(q, "no/such/dir.safetensors"), (kiln_st_entry[]){{"w", &t1}}, 1, NULL),
                 KILN_STATUS_IO);
    ku_expect_error(q, "unwritable path");
    mkdir(tpath(q, "adir"), 0700);
    cr_assert_eq(kiln_st_save(q, (kiln_st_entry[]){{"w", &t1}}, 1, NULL), KILN_STATUS_IO);
    ku_expect_error(q, "rename over a directory");
    cr_assert_eq(kiln_st_save(tpath(q, "none.safetensors"), NULL, 0, NULL), KILN_STATUS_OK, "zero tensors is valid");
}

Test(st, load_into_checks_destination)
{
    float v[6] = {1, 2, 3, 4, 5, 6}, out[6] = {0};
    uint16_t h[2] = {0x3800, 0x8001}; /* 0.5, -2^-24 */
    kiln_tensor w, hh, dst;
    kiln_tensor_wrap(&w, KILN_DTYPE_F32, 2, (int64_t[]){2, 3}, v);
    kiln_tensor_wrap(&hh, KILN_DTYPE_F16, 1, (int64_t[]){2}, h);
    char p[512];
    cr_assert_eq(kiln_st_save(tpath(p, "into.safetensors"), (kiln_st_entry[]){{"w", &w}, {"h", &hh}}, 2, NULL),
                 KILN_STATUS_OK);
    kiln_st_file *f;
    cr_assert_eq(kiln_st_open(p, &f), KILN_STATUS_OK);
    kiln_tensor_wrap(&dst, KILN_DTYPE_F32, 2, (int64_t[]){2, 3}, out);
    cr_assert_eq(kiln_st_load_into(f, "w", &dst), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert(!memcmp(out, v, sizeof v));
    kiln_tensor_wrap(&dst, KILN_DTYPE_F32, 1, (int64_t[]){2}, out);
    cr_assert_eq(kiln_st_load_into(f, "h", &dst), KILN_STATUS_OK);
    cr_assert(out[0] == 0.5f && out[1] == -ldexpf(1, -24));
    kiln_tensor_wrap(&dst, KILN_DTYPE_F32, 2, (int64_t[]){3, 2}, out);
    cr_assert_eq(kiln_st_load_into(f, "w", &dst), KILN_STATUS_INVALID);
    ku_expect_error("(2, 3)", "shape mismatch");
    ku_expect_error(p, "shape mismatch");
    dst.stride[0] = 1, dst.stride[1] = 3; /* a transposed (non-contiguous) destination */
    dst.shape[0] = 2, dst.shape[1] = 3;
    cr_assert_eq(kiln_st_load_into(f, "w", &dst), KILN_STATUS_INVALID);
    ku_expect_error("contiguous", "strided destination");
    kiln_tensor_wrap(&dst, KILN_DTYPE_I32, 2, (int64_t[]){2, 3}, out);
    cr_assert_eq(kiln_st_load_into(f, "w", &dst), KILN_STATUS_INVALID);
    ku_expect_error("f32", "i32 destination");
    cr_assert_eq(kiln_st_load_into(f, "missing", &dst), KILN_STATUS_INVALID);
    ku_expect_error("missing", "missing tensor");
    cr_assert_eq(kiln_st_load_into(f, "w", NULL), KILN_STATUS_INVALID);
    kiln_st_close(f);
}

/* ---- files written by PyTorch, and the half conversions --------------------------------- */

static bool same_float(float a, float b)
{
    return isnan(a) ? isnan(b) && signbit(a) == signbit(b) : kiln__f32_bits(a) == kiln__f32_bits(b);
}

/* The raw 16-bit values of a F16/BF16 fixture tensor. */
static const uint16_t *raw16(kiln_st_file *f, const char *name, kiln_dtype want, size_t *n)
{
    kiln_dtype d;
    const void *data;
    size_t nb;
    cr_assert_eq(kiln_st_info(f, name, &d, NULL, NULL, &data, &nb), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert_eq(d, want, "%s has dtype %d", name, d);
    *n = nb / 2;
    uint16_t *out = malloc(nb + 2);
    memcpy(out, data, nb); /* the fixture packs tensors unaligned */
    return out;
}

Test(st, reads_pytorch_file)
{
    kiln_st_file *f = ku_fixture("safetensors_torch");
    cr_assert_eq(kiln_st_count(f), 15);
    cr_assert_str_eq(kiln_st_name(f, 0), "bf16.special"); /* stwrite.py sorts names */
    cr_assert_str_eq(kiln_st_metadata(f, "note"), "unicode \xe2\x9c\x93 \"quoted\"\nline");
    cr_assert_not_null(kiln_st_metadata(f, "torch"));
    int64_t want_i64[5] = {0, -1, ((int64_t)1 << 62) + 1, INT64_MIN, INT64_MAX};
    kiln_tensor *i64 = kiln_st_load(ctx, f, "i64.vals");
    cr_assert(i64 && i64->dtype == KILN_DTYPE_I64 && !memcmp(i64->data, want_i64, sizeof want_i64));
    int32_t want_i32[4] = {0, -1, INT32_MAX, INT32_MIN};
    kiln_tensor *i32 = kiln_st_load(ctx, f, "i32.vals");
    cr_assert(i32 && i32->dtype == KILN_DTYPE_I32 && i32->ndim == 2 && !memcmp(i32->data, want_i32, 16));
    kiln_tensor *u8 = kiln_st_load(ctx, f, "u8.vals");
    cr_assert(u8 && u8->dtype == KILN_DTYPE_U8 && u8->shape[0] == 16);
    for (int i = 0; i < 16; i++) cr_assert_eq(((uint8_t *)u8->data)[i], 17 * i);
    kiln_tensor *sc = kiln_st_load(ctx, f, "f32.scalar"), *em = kiln_st_load(ctx, f, "f32.empty");
    cr_assert(sc && sc->ndim == 0 && kiln_item(sc) == 3.5f);
    cr_assert(em && em->ndim == 2 && em->shape[0] == 0 && em->shape[1] == 3);
    kiln_tensor *t4 = kiln_st_load(ctx, f, "f32.4d");
    cr_assert(t4 && t4->ndim == 4 && t4->shape[3] == 5 && isfinite(kiln_get_flat(t4, 119)));

    /* F16/BF16 -> f32 agrees bit for bit with torch's .float(). */
    const char *pairs[][2] = {{"f16.special", "f16.special.f32"}, {"bf16.special", "bf16.special.f32"}};
    for (int k = 0; k < 2; k++) {
        kiln_tensor *got = kiln_st_load(ctx, f, pairs[k][0]), *want = kiln_st_load(ctx, f, pairs[k][1]);
        cr_assert(got && want && got->dtype == KILN_DTYPE_F32 && kiln_same_shape(got, want));
        for (int64_t i = 0; i < kiln_numel(want); i++) {
            float g = ((float *)got->data)[i], w = ((float *)want->data)[i];
            cr_assert(same_float(g, w), "%s[%lld] = %a, torch says %a", pairs[k][0], (long long)i, g, w);
        }
        kiln_tensor dst;
        float buf[128];
        kiln_tensor_wrap(&dst, KILN_DTYPE_F32, 1, want->shape, buf);
        cr_assert_eq(kiln_st_load_into(f, pairs[k][0], &dst), KILN_STATUS_OK, "%s", kiln_last_error());
        cr_assert(!memcmp(buf, got->data, (size_t)kiln_numel(got) * 4), "load_into converts like load");
    }
    /* f32 -> F16/BF16 rounding (ties to even, overflow, subnormals) agrees with torch. */
    kiln_tensor *src = kiln_st_load(ctx, f, "round.src");
    size_t n16, nb16;
    const uint16_t *h = raw16(f, "round.f16", KILN_DTYPE_F16, &n16), *b = raw16(f, "round.bf16", KILN_DTYPE_BF16, &nb16);
    cr_assert(src && n16 == (size_t)kiln_numel(src) && nb16 == n16);
    for (size_t i = 0; i < n16; i++) {
        float x = ((float *)src->data)[i];
        if (isnan(x)) { /* torch's vectorised bf16 path writes NaN as 0xffff, its scalar one 0x7fc0 */
            cr_assert((kiln__f32_to_f16(x) & 0x7fff) > 0x7c00 && (h[i] & 0x7fff) > 0x7c00);
            cr_assert((kiln__f32_to_bf16(x) & 0x7fff) > 0x7f80 && (b[i] & 0x7fff) > 0x7f80);
            continue;
        }
        cr_assert_eq(kiln__f32_to_f16(x), h[i], "f16(%a): kiln %#x, torch %#x", x, kiln__f32_to_f16(x), h[i]);
        cr_assert_eq(kiln__f32_to_bf16(x), b[i], "bf16(%a): kiln %#x, torch %#x", x, kiln__f32_to_bf16(x), b[i]);
    }
    free((void *)h);
    free((void *)b);
    kiln_st_close(f);
}

/* The value of an f16 bit pattern from its definition, with libm. */
static float f16_ref(unsigned h)
{
    int e = (h >> 10) & 31, m = h & 1023;
    float v = e == 0 ? ldexpf((float)m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexpf((float)(m | 1024), e - 25);
    return h & 0x8000 ? -v : v;
}

Test(st, half_conversions_exhaustive)
{
    for (unsigned h = 0; h < 65536; h++) {
        float f = kiln__f16_to_f32((uint16_t)h), r = f16_ref(h);
        if (isnan(r)) {
            cr_assert(isnan(f) && !!signbit(f) == !!(h & 0x8000), "f16 %#x should be NaN", h);
            cr_assert_eq((kiln__f32_bits(f) >> 13) & 1023, h & 1023, "f16 %#x: NaN payload lost", h);
            uint16_t back = kiln__f32_to_f16(f);
            cr_assert((back & 0x7e00) == 0x7e00 && (back & 0x8000) == (h & 0x8000), "NaN %#x -> %#x", h, back);
            continue;
        }
        cr_assert(same_float(f, r), "f16 %#x -> %a, expected %a", h, f, r);
        cr_assert_eq(kiln__f32_to_f16(f), h, "f16 %#x does not round trip", h);
        /* Halfway to the next f16 up (in magnitude) rounds to the even one of the two. */
        if ((h & 0x7fff) < 0x7bff) {
            float next = f16_ref(h + 1), mid = (f + next) / 2; /* exact in f32 */
            uint16_t even = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
            cr_assert_eq(kiln__f32_to_f16(mid), even, "tie between %#x and %#x", h, h + 1);
            cr_assert_eq(kiln__f32_to_f16(nextafterf(mid, 0)), h, "just below the tie above %#x", h);
            cr_assert_eq(kiln__f32_to_f16(nextafterf(mid, next)), h + 1, "just above the tie above %#x", h);
        }
    }
    for (unsigned b = 0; b < 65536; b++) {
        float f = kiln__bf16_to_f32((uint16_t)b);
        cr_assert_eq(kiln__f32_bits(f), (uint32_t)b << 16);
        if (isnan(f)) cr_assert(isnan(kiln__bf16_to_f32(kiln__f32_to_bf16(f))));
        else cr_assert_eq(kiln__f32_to_bf16(f), b, "bf16 %#x does not round trip", b);
    }
    cr_assert_eq(kiln__f32_to_f16(65519.996f), 0x7bff);
    cr_assert_eq(kiln__f32_to_f16(65520.0f), 0x7c00);
    cr_assert_eq(kiln__f32_to_f16(-1e30f), 0xfc00);
    cr_assert_eq(kiln__f32_to_f16(ldexpf(1, -25)), 0x0000);
    cr_assert_eq(kiln__f32_to_f16(-ldexpf(1, -25)), 0x8000);
    cr_assert_eq(kiln__f32_to_f16(nextafterf(ldexpf(1, -25), 1)), 0x0001);
    cr_assert_eq(kiln__f32_to_f16(ldexpf(1, -14) - ldexpf(1, -25)), 0x0400, "ties up to the smallest normal");
    cr_assert_eq(kiln__f32_to_bf16(3.4028235e38f), 0x7f80, "f32 max rounds to bf16 inf");
}

/* ---- the writer filled part by part, kiln_st_want, in-memory metadata ------------------------- */

Test(st, writer_parts_want_and_set_metadata)
{
    char path[512];
    tpath(path, "parts.safetensors");
    kiln_st_writer *w = kiln_st_writer_new();
    cr_assert_not_null(w);
    float a[6] = {1, 2, 3, 4, 5, 6};
    int64_t b[2] = {-7, 1LL << 60}, sa[2] = {2, 3}, sb[1] = {2};
    cr_assert(!kiln_st_writer_add(w, "part.a", KILN_DTYPE_F32, 2, sa, a));
    cr_assert(!kiln_st_writer_add_copy(w, "part.b", KILN_DTYPE_I64, 1, sb, b));
    b[0] = 0; /* the copy was taken when added */
    cr_assert(!kiln_st_writer_meta(w, "k", "first"));
    cr_assert(!kiln_st_writer_meta(w, "k", "second"), "a key given again replaces its value");
    cr_assert(!kiln_st_writer_metaf(w, "n", "%d", 42));
    cr_assert(!kiln_st_writer_save(w, path), "%s", kiln_last_error());
    kiln_st_writer_free(w);

    kiln_st_file *f;
    cr_assert(!kiln_st_open(path, &f), "%s", kiln_last_error());
    cr_assert_str_eq(kiln_st_metadata(f, "k"), "second");
    cr_assert_str_eq(kiln_st_metadata(f, "n"), "42");
    const void *d;
    cr_assert(!kiln_st_want(f, "part.a", KILN_DTYPE_F32, 2, sa, &d) && !memcmp(d, a, sizeof a));
    cr_assert(!kiln_st_want(f, "part.b", KILN_DTYPE_I64, 1, sb, &d));
    int64_t got[2];
    memcpy(got, d, sizeof got);
    cr_assert(got[0] == -7 && got[1] == 1LL << 60);
    cr_assert_eq(kiln_st_want(f, "part.c", KILN_DTYPE_F32, 2, sa, NULL), KILN_STATUS_INVALID);
    ku_expect_error("\"part.c\" is missing", "names the missing tensor");
    ku_expect_error(path, "names the file");
    cr_assert_eq(kiln_st_want(f, "part.b", KILN_DTYPE_F32, 1, sb, NULL), KILN_STATUS_INVALID);
    ku_expect_error("\"part.b\" is i64, expected f32", "names the dtypes");
    cr_assert_eq(kiln_st_want(f, "part.a", KILN_DTYPE_F32, 2, (int64_t[]){3, 2}, NULL), KILN_STATUS_INVALID);
    ku_expect_error("has shape (2, 3), expected (3, 2)", "names the shapes");
    /* metadata changed in memory only */
    cr_assert(!kiln_st_set_metadata(f, "k", "third") && !kiln_st_set_metadata(f, "new", "v"));
    cr_assert_str_eq(kiln_st_metadata(f, "k"), "third");
    cr_assert_str_eq(kiln_st_metadata(f, "new"), "v");
    kiln_st_close(f);
    cr_assert(!kiln_st_open(path, &f));
    cr_assert_str_eq(kiln_st_metadata(f, "k"), "second");
    cr_assert_null(kiln_st_metadata(f, "new"));
    kiln_st_close(f);
}

Test(st_bad, writer_keeps_its_first_error)
{
    char path[512];
    tpath(path, "never.safetensors");
    kiln_st_writer *w = kiln_st_writer_new();
    float x = 1;
    cr_assert_eq(kiln_st_writer_add(w, NULL, KILN_DTYPE_F32, 0, NULL, &x), KILN_STATUS_INVALID);
    cr_assert_eq(kiln_st_writer_meta(w, "k", "v"), KILN_STATUS_INVALID, "later calls return the first error");
    cr_assert_eq(kiln_st_writer_save(w, path), KILN_STATUS_INVALID);
    cr_assert(access(path, F_OK) != 0, "nothing written");
    kiln_st_writer_free(w);
    /* duplicate tensor names are the file writer's to refuse */
    w = kiln_st_writer_new();
    cr_assert(!kiln_st_writer_add(w, "x", KILN_DTYPE_F32, 0, NULL, &x) && !kiln_st_writer_add(w, "x", KILN_DTYPE_F32, 0, NULL, &x));
    cr_assert_eq(kiln_st_writer_save(w, path), KILN_STATUS_INVALID);
    ku_expect_error("duplicate tensor name \"x\"", "names the tensor");
    kiln_st_writer_free(w);
}
