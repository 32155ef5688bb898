/* .pth (PyTorch checkpoint) reading: files torch.save wrote (zip, legacy and protocol-4
 * pickles, a training checkpoint, nn.Parameter values) read back bit for bit against the
 * same tensors in safetensors; kiln_model_load of a .pth gives the model the safetensors file
 * gives it; and one crafted file per way a checkpoint can be broken or hostile, each refused
 * with a message naming the file and the fault. The hostile pickles' payloads create a file
 * under Python's pickle (tests/fixtures/gen_pth.py checks that): here the file must not
 * appear. Fixtures: tests/fixtures/pth/ (gen_pth.py). */
#include "util/ku.h"
#include "io/pickle.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PTH(name) KILN_FIXTURE_DIR "/pth/" name

static char *fx(const char *name)
{
    static char p[512];
    snprintf(p, sizeof p, "%s/pth/%s", KILN_FIXTURE_DIR, name);
    return p;
}

static kiln_st_file *open_ok(const char *path)
{
    kiln_st_file *f = NULL;
    cr_assert_eq(kiln_weights_open(path, &f), KILN_STATUS_OK, "%s: %s", path, kiln_last_error());
    return f;
}

/* Tensor name of f: its bytes (asserts it is there); shape into sh when not NULL. */
static const void *bytes_of(kiln_st_file *f, const char *name, size_t *n, int *nd, int64_t *sh)
{
    kiln_dtype dt;
    int d;
    int64_t s[KILN_MAX_DIMS];
    const void *p = NULL;
    cr_assert_eq(kiln_st_info(f, name, &dt, nd ? nd : &d, sh ? sh : s, &p, n), KILN_STATUS_OK, "%s: %s", name,
                 kiln_last_error());
    return p;
}

/* Every tensor of want is in got with the same dtype, shape and bytes. */
static void expect_same_tensors(kiln_st_file *got, kiln_st_file *want)
{
    cr_assert_eq(kiln_st_count(got), kiln_st_count(want), "%s has %zu tensors, %s %zu", kiln_st_path(got),
                 kiln_st_count(got), kiln_st_path(want), kiln_st_count(want));
    for (size_t i = 0; i < kiln_st_count(want); i++) {
        const char *name = kiln_st_name(want, i);
        kiln_dtype d1, d2;
        int n1, n2;
        int64_t s1[KILN_MAX_DIMS], s2[KILN_MAX_DIMS];
        const void *b1, *b2;
        size_t z1, z2;
        cr_assert_eq(kiln_st_info(got, name, &d1, &n1, s1, &b1, &z1), KILN_STATUS_OK, "%s: %s", name,
                     kiln_last_error());
        cr_assert_eq(kiln_st_info(want, name, &d2, &n2, s2, &b2, &z2), KILN_STATUS_OK);
        cr_assert_eq(d1, d2, "%s: dtype %s, expected %s", name, kiln_dtype_name(d1), kiln_dtype_name(d2));
        cr_assert_eq(n1, n2, "%s: %d dims, expected %d", name, n1, n2);
        for (int d = 0; d < n1; d++) cr_assert_eq(s1[d], s2[d], "%s: dim %d", name, d);
        cr_assert_eq(z1, z2, "%s: %zu bytes, expected %zu", name, z1, z2);
        cr_assert(z1 == 0 || !memcmp(b1, b2, z1), "%s: bytes differ", name);
    }
}

/* The state dict's keys in the order gen_pth.py put them. */
static const char *const g_order[] = {"a.f32", "a.conv", "b.f16", "c.bf16", "d.i64", "bn.num_batches_tracked",
                                      "e.f64", "g.i32", "h.u8", "v.base", "v.tail", "z.empty"};

static void check_real(const char *name)
{
    kiln_st_file *f = open_ok(fx(name)), *want = open_ok(PTH("real_expected.safetensors"));
    cr_assert_str_eq(kiln_st_metadata(f, "format"), "pth");
    cr_assert_null(kiln_st_metadata(want, "format"));
    size_t n = sizeof g_order / sizeof *g_order;
    cr_assert_eq(kiln_st_count(f), n);
    for (size_t i = 0; i < n; i++) cr_assert_str_eq(kiln_st_name(f, i), g_order[i], "%s: tensor %zu", name, i);
    expect_same_tensors(f, want);
    /* the view: v.tail is v.base[2:] */
    size_t nb, nt;
    const void *base = bytes_of(f, "v.base", &nb, NULL, NULL), *tail = bytes_of(f, "v.tail", &nt, NULL, NULL);
    cr_assert_eq(nb, 6 * sizeof(float));
    cr_assert_eq(nt, 4 * sizeof(float));
    cr_assert(!memcmp((const float *)base + 2, tail, nt));
    /* the loaders' calls: load widens F16/BF16 as from safetensors, want checks */
    kiln_ctx *ctx = ku_ctx();
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(g_order[i], "z.empty")) continue;
        kiln_tensor *a = kiln_st_load(ctx, f, g_order[i]), *b = kiln_st_load(ctx, want, g_order[i]);
        cr_assert(a && b, "%s: %s", g_order[i], kiln_last_error());
        cr_assert_eq(a->dtype, b->dtype);
        cr_assert(!memcmp(a->data, b->data, (size_t)kiln_numel(a) * kiln_dtype_size(a->dtype)), "%s",
                  g_order[i]);
    }
    int64_t shape[1] = {3};
    cr_assert_eq(kiln_st_want(f, "d.i64", KILN_DTYPE_I64, 1, shape, NULL), KILN_STATUS_OK);
    ku_ctx_free(ctx);
    kiln_st_close(f);
    kiln_st_close(want);
}

Test(pth, zip_as_torch_writes_it) { check_real("real_zip.pth"); }
Test(pth, legacy_as_torch_writes_it) { check_real("real_legacy.pth"); }
Test(pth, pickle_protocol_4) { check_real("real_proto4.pth"); }

Test(pth, pth_open_and_weights_open_agree)
{
    kiln_st_file *a = NULL, *b = open_ok(PTH("real_zip.pth"));
    cr_assert_eq(kiln_pth_open(PTH("real_zip.pth"), &a), KILN_STATUS_OK, "%s", kiln_last_error());
    expect_same_tensors(a, b);
    kiln_st_close(a);
    kiln_st_close(b);
    /* a safetensors file through kiln_pth_open is not a checkpoint; through weights_open it is read */
    cr_assert_neq(kiln_pth_open(PTH("mlp.safetensors"), &a), KILN_STATUS_OK);
    ku_expect_error("not a PyTorch checkpoint", "pth_open of safetensors");
    cr_assert_null(a);
    a = open_ok(PTH("mlp.safetensors"));
    cr_assert_null(kiln_st_metadata(a, "format"));
    kiln_st_close(a);
    cr_assert_neq(kiln_weights_open("/nonexistent/w.pth", &a), KILN_STATUS_OK);
    ku_expect_error("/nonexistent/w.pth", "a missing file is named");
}

Test(pth, checkpoint_dict_and_parameters)
{
    kiln_st_file *ck = open_ok(PTH("checkpoint.pth")), *par = open_ok(PTH("param.pth"));
    cr_assert_eq(kiln_st_count(ck), 2);
    cr_assert_str_eq(kiln_st_name(ck, 0), "w");
    cr_assert_str_eq(kiln_st_name(ck, 1), "b");
    cr_assert_eq(kiln_st_count(par), 1);
    size_t nx, ny;
    int nd;
    int64_t sh[KILN_MAX_DIMS];
    const void *x = bytes_of(ck, "w", &nx, &nd, sh), *y = bytes_of(par, "w", &ny, NULL, NULL);
    cr_assert(nd == 2 && sh[0] == 3 && sh[1] == 2);
    cr_assert(nx == ny && !memcmp(x, y, nx), "the Parameter holds the checkpoint's w");
    kiln_st_close(ck);
    kiln_st_close(par);
}

Test(pth, crafted_file_values)
{
    /* a hand-made archive with another top folder name; one laid out as torch 2.x does */
    const char *files[] = {PTH("crafted_ok.pth"), PTH("crafted_torch2.pth")};
    for (int k = 0; k < 2; k++) {
        kiln_st_file *f = open_ok(files[k]);
        size_t n;
        int nd;
        int64_t sh[KILN_MAX_DIMS];
        const void *d = bytes_of(f, "t", &n, &nd, sh);
        cr_assert(nd == 2 && sh[0] == 2 && sh[1] == 3 && n == 24, "%s", files[k]);
        for (int i = 0; i < 6; i++) cr_assert_eq(((const float *)d)[i], 0.5f * (float)i, "%s", files[k]);
        kiln_st_close(f);
    }
}

/* ---- kiln_model_load -------------------------------------------------------------------------- */

static kiln_model *mlp(kiln_ctx *ctx)
{
    int64_t hidden[1] = {8};
    kiln_model *m = kiln_mlp_new(4, 1, hidden, 3, 0.0f, true);
    cr_assert_not_null(m);
    cr_assert_eq(kiln_model_alloc(m, ctx), KILN_STATUS_OK, "%s", kiln_last_error());
    return m;
}

static char *slurp_n(const char *path, size_t *n)
{
    FILE *fp = fopen(path, "rb");
    cr_assert_not_null(fp, "%s", path);
    fseek(fp, 0, SEEK_END);
    *n = (size_t)ftell(fp);
    rewind(fp);
    char *b = malloc(*n + 1);
    cr_assert_eq(fread(b, 1, *n, fp), *n);
    fclose(fp);
    return b;
}

Test(pth, model_load_pth_equals_safetensors)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_model *a = mlp(ctx), *b = mlp(ctx), *fresh = mlp(ctx);
    cr_assert_eq(kiln_model_load(a, PTH("mlp.pth"), true), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert_eq(kiln_model_load(b, PTH("mlp.safetensors"), true), KILN_STATUS_OK, "%s", kiln_last_error());
    char pa[64], pb[64], pf[64];
    snprintf(pa, sizeof pa, "/tmp/kiln_pth_a_%d.safetensors", (int)getpid());
    snprintf(pb, sizeof pb, "/tmp/kiln_pth_b_%d.safetensors", (int)getpid());
    snprintf(pf, sizeof pf, "/tmp/kiln_pth_f_%d.safetensors", (int)getpid());
    cr_assert_eq(kiln_model_save(a, pa, NULL), KILN_STATUS_OK);
    cr_assert_eq(kiln_model_save(b, pb, NULL), KILN_STATUS_OK);
    cr_assert_eq(kiln_model_save(fresh, pf, NULL), KILN_STATUS_OK);
    size_t na, nb, nf;
    char *sa = slurp_n(pa, &na), *sb = slurp_n(pb, &nb), *sf = slurp_n(pf, &nf);
    cr_assert(na == nb && !memcmp(sa, sb, na), "the model loaded from .pth differs from the one from safetensors");
    cr_assert(na != nf || memcmp(sa, sf, na), "the load left the model as initialised");
    /* and the values are the file's */
    kiln_st_file *saved = open_ok(pa), *want = open_ok(PTH("mlp.safetensors"));
    expect_same_tensors(saved, want);
    kiln_st_close(saved);
    kiln_st_close(want);
    free(sa), free(sb), free(sf);
    unlink(pa), unlink(pb), unlink(pf);
    kiln_model_free(a), kiln_model_free(b), kiln_model_free(fresh);
    ku_ctx_free(ctx);
}

Test(pth, model_load_refuses_a_wrong_shape)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_model *m = mlp(ctx);
    /* strict: a mis-shaped key is an error (without strict it is reported and the rest loads,
     * docs/pretrained.md) */
    cr_assert_neq(kiln_model_load(m, PTH("mlp_wrong_shape.pth"), true), KILN_STATUS_OK);
    ku_expect_error("3.weight", "names the mis-shaped key");
    kiln_model_free(m);
    ku_ctx_free(ctx);
}

/* ---- broken and hostile files ----------------------------------------------------------------- */

typedef struct bad_case {
    const char *file;
    kiln_status status;
    const char *says[2];
} bad_case;

static const bad_case g_bad[] = {
    {"bad_truncated_zip.pth", KILN_STATUS_FORMAT, {"not a readable zip archive", "truncated"}},
    {"bad_truncated_legacy.pth", KILN_STATUS_FORMAT, {"bytes are left", "truncated"}},
    {"bad_crc.pth", KILN_STATUS_FORMAT, {"archive entry any_name/data/0", "CRC error"}},
    {"bad_storage_short.pth", KILN_STATUS_FORMAT, {"tensor \"t\"", "holds 24 bytes, but its record says 10 elements"}},
    {"bad_tensor_past_storage.pth", KILN_STATUS_FORMAT, {"tensor \"t\"", "offset 0 + 10 elements go past the end"}},
    {"bad_offset_past_end.pth", KILN_STATUS_FORMAT, {"tensor \"t\"", "offset 8 + 2 elements go past the end"}},
    {"bad_noncontiguous.pth", KILN_STATUS_UNSUPPORTED, {"tensor \"t\"", "non-contiguous"}},
    {"bad_stride_count.pth", KILN_STATUS_FORMAT, {"tensor \"t\"", "3 strides for 2 dims"}},
    {"bad_negative_size.pth", KILN_STATUS_FORMAT, {"tensor \"t\"", "size[0] is negative"}},
    {"bad_size_overflow.pth", KILN_STATUS_FORMAT, {"tensor \"t\"", "overflows"}},
    {"bad_too_many_dims.pth", KILN_STATUS_UNSUPPORTED, {"tensor \"t\"", "9 dims"}},
    {"bad_missing_storage.pth", KILN_STATUS_FORMAT, {"tensor \"t\"", "storage \"7\" is missing from the archive"}},
    {"bad_dtype.pth", KILN_STATUS_UNSUPPORTED, {"tensor \"mask\"", "dtype bool"}},
    {"bad_duplicate_key.pth", KILN_STATUS_FORMAT, {"duplicate tensor name \"t\"", ""}},
    {"bad_requires_grad.pth", KILN_STATUS_FORMAT, {"tensor \"t\"", "requires_grad is an int"}},
    {"bad_big_endian.pth", KILN_STATUS_UNSUPPORTED, {"byteorder is \"big\"", ""}},
    {"bad_not_tensor.pth", KILN_STATUS_FORMAT, {"key \"epoch\" holds an int", "not a state dict"}},
    {"bad_unknown_opcode.pth", KILN_STATUS_FORMAT, {"data.pkl byte 2", "unknown opcode 0xff"}},
    {"bad_opcode_inst.pth", KILN_STATUS_UNSUPPORTED, {"opcode INST", "refused"}},
    {"bad_opcode_newobj.pth", KILN_STATUS_UNSUPPORTED, {"opcode NEWOBJ", "refused"}},
    {"bad_truncated_pickle.pth", KILN_STATUS_FORMAT, {"data.pkl byte", "truncated"}},
    {"bad_deep_nesting.pth", KILN_STATUS_FORMAT, {"nested MARKs", "limit"}},
    {"bad_no_data_pkl.pth", KILN_STATUS_FORMAT, {"without a <folder>/data.pkl", ""}},
};

Test(pth_bad, each_refused_naming_file_and_fault)
{
    for (size_t i = 0; i < sizeof g_bad / sizeof *g_bad; i++) {
        const bad_case *c = &g_bad[i];
        kiln_st_file *f = (kiln_st_file *)1;
        kiln_status s = kiln_weights_open(fx(c->file), &f);
        cr_assert_eq(s, c->status, "%s: status %d, expected %d (%s)", c->file, s, c->status, kiln_last_error());
        cr_assert_null(f, "%s", c->file);
        const char *msg = kiln_last_error();
        cr_assert(strstr(msg, c->file), "%s: the message does not name the file: %s", c->file, msg);
        for (int k = 0; k < 2; k++)
            cr_assert(strstr(msg, c->says[k]), "%s: message \"%s\" lacks \"%s\"", c->file, msg, c->says[k]);
    }
}

typedef struct evil_case {
    const char *file, *global, *marker;
} evil_case;

static const evil_case g_evil[] = {
    {"evil_os_system.pth", "'os.system'", "/tmp/kiln_pth_pwned_os_system"},
    {"evil_posix_system.pth", "'posix.system'", "/tmp/kiln_pth_pwned_posix_system"},
    {"evil_builtins_eval.pth", "'builtins.eval'", "/tmp/kiln_pth_pwned_builtins_eval"},
    {"evil_builtins_getattr.pth", "'builtins.getattr'", "/tmp/kiln_pth_pwned_builtins_getattr"},
    {"evil_in_hooks.pth", "'os.system'", "/tmp/kiln_pth_pwned_os_system"},
    {"evil_legacy.pth", "'os.system'", "/tmp/kiln_pth_pwned_os_system"},
};

Test(pth_bad, hostile_globals_refused_and_nothing_runs)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_model *m = mlp(ctx);
    for (size_t i = 0; i < sizeof g_evil / sizeof *g_evil; i++) {
        const evil_case *c = &g_evil[i];
        unlink(c->marker);
        kiln_st_file *f = NULL;
        cr_assert_eq(kiln_pth_open(fx(c->file), &f), KILN_STATUS_UNSUPPORTED, "%s: %s", c->file, kiln_last_error());
        const char *msg = kiln_last_error();
        cr_assert(strstr(msg, c->file) && strstr(msg, c->global) && strstr(msg, "refused (kiln never executes pickles)"),
                  "%s: %s", c->file, msg);
        cr_assert_eq(kiln_model_load(m, fx(c->file), false), KILN_STATUS_UNSUPPORTED, "%s", c->file);
        ku_expect_error(c->global, "kiln_model_load refuses it too");
        cr_assert_neq(access(c->marker, F_OK), 0, "%s: the payload ran: %s exists", c->file, c->marker);
    }
    kiln_model_free(m);
    ku_ctx_free(ctx);
}

/* ---- the unpickler on its own ------------------------------------------------------------------ */

static kiln__pk_heap g_heap;

static void free_heap(void) { kiln__pk_free(&g_heap); }

TestSuite(pickle, .fini = free_heap);

static kiln_status unpickle(const char *bytes, size_t n, kiln__pk **out)
{
    kiln__pk_free(&g_heap);
    size_t used;
    return kiln__pk_load(&g_heap, "mem", "x.pkl", (const unsigned char *)bytes, n, out, &used);
}

Test(pickle, values)
{
    kiln__pk *v = NULL;
    /* (-1 as LONG1, 2^40 as LONG1, -5 as BININT, 1.5 as BINFLOAT, None, True) */
    static const char p[] = "\x80\x02(\x8a\x01\xff\x8a\x06\x00\x00\x00\x00\x00\x01J\xfb\xff\xff\xff"
                            "G\x3f\xf8\x00\x00\x00\x00\x00\x00N\x88t.";
    cr_assert_eq(unpickle(p, sizeof p - 1, &v), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert_eq(v->kind, KILN_PK_TUPLE);
    cr_assert_eq(v->n, 6);
    cr_assert_eq(v->v[0]->i, -1);
    cr_assert_eq(v->v[1]->i, (int64_t)1 << 40);
    cr_assert_eq(v->v[2]->i, -5);
    cr_assert_eq(v->v[3]->f, 1.5);
    cr_assert_eq(v->v[4]->kind, KILN_PK_NONE);
    cr_assert(v->v[5]->kind == KILN_PK_BOOL && v->v[5]->i == 1);
    /* protocol 4: FRAME, MEMOIZE, SHORT_BINUNICODE, BINGET of the memoized string */
    static const char q[] = "\x80\x04\x95\x09\x00\x00\x00\x00\x00\x00\x00\x8c\x02hi\x94h\x00\x86.";
    cr_assert_eq(unpickle(q, sizeof q - 1, &v), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert(v->kind == KILN_PK_TUPLE && v->n == 2 && v->v[0] == v->v[1]);
    cr_assert_str_eq(v->v[0]->s, "hi");
}

#define C(lit, says) {lit, sizeof lit - 1, says}

Test(pickle, broken_input_refused)
{
    static const struct {
        const char *bytes;
        size_t n;
        const char *says;
    } c[] = {
        C("\x80\x06N.", "pickle protocol 6"),
        C("\x80\x02h\x05.", "memo index 5 was never set"),
        C("\x80\x02Nr\xff\xff\xff\x7f.", "memo index 2147483647"),
        C("\x80\x02t.", "no MARK"),
        C("\x80\x02NN.", "STOP with 2 values"),
        C("\x80\x02(N.", "open MARKs"),
        C("\x80\x02\x85.", "stack underflow"),
        C("\x80\x02X\xff\xff\xff\x7f", "string of 2147483647 bytes"),
        C("\x80\x02Ns.", "stack underflow"),
        C("\x80\x02NNNs.", "SETITEM on None"),
        C("\x80\x02" "cos\nsys", "line end"),
        C("\x80\x02" "ctorch\nFloatStorage\n)R.", "a storage is only read by its persistent id"),
        C("\x80\x02}}b.", NULL), /* BUILD of a dict with a dict: the state dict's _metadata, accepted */
        C("\x80\x02]Nb.", "BUILD of a list"),
    };
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        kiln__pk *v = NULL;
        kiln_status s = unpickle(c[i].bytes, c[i].n, &v);
        if (!c[i].says) {
            cr_assert_eq(s, KILN_STATUS_OK, "case %zu: %s", i, kiln_last_error());
            continue;
        }
        cr_assert_neq(s, KILN_STATUS_OK, "case %zu accepted", i);
        cr_assert(strstr(kiln_last_error(), c[i].says) && strstr(kiln_last_error(), "mem: x.pkl"),
                  "case %zu: \"%s\" lacks \"%s\"", i, kiln_last_error(), c[i].says);
    }
}

/* The pickle PROTO 2, EMPTY_LIST, BINPUT 0, then n copies of unit (2 bytes), then tail
 * (malloc'd; caller frees). */
static char *repeat(const char *unit, size_t n, const char *tail, size_t *len)
{
    size_t t = strlen(tail);
    *len = 5 + n * 2 + t;
    char *p = malloc(*len);
    cr_assert_not_null(p);
    memcpy(p, "\x80\x02]q\x00", 5);
    for (size_t i = 0; i < n; i++) memcpy(p + 5 + i * 2, unit, 2);
    memcpy(p + 5 + n * 2, tail, t);
    return p;
}

Test(pickle, limits)
{
    size_t len;
    kiln__pk *v = NULL;
    /* a list of 2^20 Nones: more values than the limit, though the stack stays small */
    char *p = repeat("Na", KILN_PK_MAX_NODES, ".", &len);
    cr_assert_neq(unpickle(p, len, &v), KILN_STATUS_OK);
    ku_expect_error("more than 1048576 values (limit)", "node limit");
    free(p);
    /* 2^20 + 1 values on the stack at once (the list again and again: BINGET makes no value) */
    p = repeat("h\x00", KILN_PK_MAX_STACK, ".", &len);
    cr_assert_neq(unpickle(p, len, &v), KILN_STATUS_OK);
    ku_expect_error("more than 1048576 values on the stack (limit)", "stack limit");
    free(p);
    /* below both: accepted */
    p = repeat("Na", 1000, ".", &len);
    cr_assert_eq(unpickle(p, len, &v), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert(v->kind == KILN_PK_LIST && v->n == 1000);
    free(p);
}
