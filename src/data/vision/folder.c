/* Image-file sources: folders (root/train/<class>/, root/valid/<class>/, or root/<class>/
 * with a seeded random split) and CSV files of (name, label). Both build lists of (path,
 * class) per split here; decoding happens later, in the loader threads. Before that every file
 * is checked once (kiln__vision_check_files): its header by default, a full decode with
 * skip_bad, so a file that is not an image fails at construction, naming the file. */
#include "data/vision/vision_internal.h"
#include "kiln/io.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

typedef struct strv {
    char **v;
    int64_t n, cap;
} strv;

static bool strv_push(strv *s, char *x)
{
    if (!x) return false;
    if (s->n == s->cap) {
        int64_t nc = s->cap ? s->cap * 2 : 64;
        char **nv = realloc(s->v, (size_t)nc * sizeof *nv);
        if (!nv) {
            free(x);
            return false;
        }
        s->v = nv, s->cap = nc;
    }
    s->v[s->n++] = x;
    return true;
}

static void strv_free(strv *s)
{
    for (int64_t i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
    *s = (strv){0};
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static char *join(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    while (na > 1 && a[na - 1] == '/') na--;
    char *s = malloc(na + nb + 2);
    if (!s) return NULL;
    memcpy(s, a, na);
    s[na] = '/';
    memcpy(s + na + 1, b, nb + 1);
    return s;
}

static bool is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool image_ext(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot && (!strcasecmp(dot, ".png") || !strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg"));
}

/* Sorted names in dir: subfolders (dirs) or image files; dot-files are skipped. An entry
 * that cannot be looked at (a symlink loop, a dangling link) is an error naming it. */
static kiln_status list_dir(const char *dir, bool dirs, strv *out)
{
    *out = (strv){0};
    DIR *d = opendir(dir);
    if (!d) return kiln__err(KILN_STATUS_IO, "folder: cannot open %s: %s", dir, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char *full = join(dir, e->d_name);
        if (!full) goto nomem;
        struct stat st;
        if (stat(full, &st) != 0 && (dirs || image_ext(e->d_name))) {
            /* a symlink loop, a dangling link: an error naming it, not a class or image
             * silently left out */
            int err = errno;
            kiln__err(KILN_STATUS_IO, "folder: cannot use %s as %s: %s", full, dirs ? "a class folder" : "an image",
                      strerror(err));
            free(full);
            closedir(d);
            strv_free(out);
            return KILN_STATUS_IO;
        }
        bool keep = dirs ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode) && image_ext(e->d_name);
        free(full);
        if (keep && !strv_push(out, kiln__vision_strdup(e->d_name))) goto nomem;
    }
    closedir(d);
    if (out->n) qsort(out->v, (size_t)out->n, sizeof *out->v, cmp_str);
    return KILN_STATUS_OK;
nomem:
    closedir(d);
    strv_free(out);
    return kiln__err(KILN_STATUS_NOMEM, "folder: out of memory listing %s", dir);
}

/* Items collected before they are split: paths (owned) and labels. */
typedef struct items {
    strv paths;
    int64_t *labels, cap;
} items;

static bool items_push(items *it, char *path, int64_t label)
{
    if (it->paths.n == it->cap) {
        int64_t nc = it->cap ? it->cap * 2 : 256;
        int64_t *nl = realloc(it->labels, (size_t)nc * sizeof *nl);
        if (!nl) {
            free(path);
            return false;
        }
        it->labels = nl, it->cap = nc;
    }
    int64_t at = it->paths.n;
    if (!strv_push(&it->paths, path)) return false;
    it->labels[at] = label;
    return true;
}

static void items_free(items *it)
{
    strv_free(&it->paths);
    free(it->labels);
}

/* Moves items[idx[0..n)] into split s (paths change owner). */
static kiln_status take(kiln__vsplit *s, items *it, const int64_t *idx, int64_t n)
{
    s->paths = calloc((size_t)(n ? n : 1), sizeof *s->paths);
    s->labels = malloc((size_t)(n ? n : 1) * sizeof *s->labels);
    if (!s->paths || !s->labels) return kiln__err(KILN_STATUS_NOMEM, "folder: out of memory");
    for (int64_t i = 0; i < n; i++) {
        s->paths[i] = it->paths.v[idx[i]];
        it->paths.v[idx[i]] = NULL;
        s->labels[i] = it->labels[idx[i]];
    }
    s->n = n;
    return KILN_STATUS_OK;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* fastai's RandomSplitter: the first int(valid_pct * n) of a seeded permutation are valid.
 * Both splits are then kept in the original (sorted) order. is_valid overrides when given. */
static kiln_status split_items(kiln_vision_data *v, items *it, const bool *is_valid)
{
    int64_t n = it->paths.n, nv = 0;
    int64_t *perm = malloc((size_t)(n ? n : 1) * sizeof *perm);
    if (!perm) return kiln__err(KILN_STATUS_NOMEM, "folder: out of memory");
    if (is_valid) {
        for (int64_t i = 0; i < n; i++)
            if (is_valid[i]) perm[nv++] = i;
        for (int64_t i = 0, t = nv; i < n; i++)
            if (!is_valid[i]) perm[t++] = i;
    } else {
        kiln_data_permutation(v->p.split_seed, 0, n, perm);
        nv = (int64_t)(v->p.valid_pct * (double)n);
        qsort(perm, (size_t)nv, sizeof *perm, cmp_i64);
        qsort(perm + nv, (size_t)(n - nv), sizeof *perm, cmp_i64);
    }
    kiln_status st = take(&v->s[KILN_DATA_SPLIT_VALID], it, perm, nv);
    if (!st) st = take(&v->s[KILN_DATA_SPLIT_TRAIN], it, perm + nv, n - nv);
    free(perm);
    return st;
}

static kiln_status set_classes(kiln_vision_data *v, strv *names)
{
    v->n_classes = (int)names->n;
    v->classes = names->v;
    *names = (strv){0};
    return KILN_STATUS_OK;
}

/* Adds every image of dir/<class>/ for each class; an empty class folder is an error. */
static kiln_status add_classes(const char *dir, const strv *classes, bool all_present, items *it)
{
    for (int64_t c = 0; c < classes->n; c++) {
        char *cdir = join(dir, classes->v[c]);
        if (!cdir) return kiln__err(KILN_STATUS_NOMEM, "folder: out of memory");
        if (!all_present && !is_dir(cdir)) {
            free(cdir);
            continue;
        }
        strv files;
        kiln_status st = list_dir(cdir, false, &files);
        if (!st && files.n == 0)
            st = kiln__err(KILN_STATUS_FORMAT, "folder: empty class folder %s (no .png/.jpg/.jpeg files)", cdir);
        for (int64_t f = 0; !st && f < files.n; f++)
            if (!items_push(it, join(cdir, files.v[f]), c)) st = kiln__err(KILN_STATUS_NOMEM, "folder: out of memory");
        strv_free(&files);
        free(cdir);
        if (st) return st;
    }
    return KILN_STATUS_OK;
}

/* Union of two sorted name lists, sorted. */
static kiln_status merge_names(strv *a, const strv *b)
{
    for (int64_t i = 0; i < b->n; i++) {
        if (bsearch(&b->v[i], a->v, (size_t)a->n, sizeof *a->v, cmp_str)) continue;
        if (!strv_push(a, kiln__vision_strdup(b->v[i]))) return kiln__err(KILN_STATUS_NOMEM, "folder: out of memory");
    }
    if (a->n) qsort(a->v, (size_t)a->n, sizeof *a->v, cmp_str);
    return KILN_STATUS_OK;
}

static kiln_status folder_split_layout(kiln_vision_data *v, const char *tdir, const char *vdir)
{
    strv tc = {0}, vc = {0};
    items ti = {0}, vi = {0};
    kiln_status st = list_dir(tdir, true, &tc);
    if (!st) st = list_dir(vdir, true, &vc);
    if (!st && tc.n == 0) st = kiln__err(KILN_STATUS_FORMAT, "folder: %s has no class folders", tdir);
    if (!st) st = merge_names(&tc, &vc);
    if (!st) st = add_classes(tdir, &tc, false, &ti);
    if (!st) st = add_classes(vdir, &tc, false, &vi);
    if (!st) {
        int64_t *iota = malloc((size_t)(ti.paths.n + vi.paths.n + 1) * sizeof *iota);
        if (!iota) st = kiln__err(KILN_STATUS_NOMEM, "folder: out of memory");
        for (int64_t i = 0; iota && i < ti.paths.n + vi.paths.n; i++) iota[i] = i;
        if (!st) st = take(&v->s[KILN_DATA_SPLIT_TRAIN], &ti, iota, ti.paths.n);
        if (!st) st = take(&v->s[KILN_DATA_SPLIT_VALID], &vi, iota, vi.paths.n);
        free(iota);
    }
    if (!st) st = set_classes(v, &tc);
    strv_free(&tc), strv_free(&vc), items_free(&ti), items_free(&vi);
    return st;
}

kiln_data *kiln_vision_folder_new(const char *root, const kiln_vision_params *p)
{
    if (!root) return kiln__errp(KILN_STATUS_INVALID, "vision_folder_new: root is NULL");
    if (!is_dir(root)) return kiln__errp(KILN_STATUS_IO, "folder: %s is not a folder", root);
    kiln_vision_data *v = kiln__vision_alloc(root, p);
    if (!v) return NULL;
    char *tdir = join(root, v->p.train_dir), *vdir = join(root, v->p.valid_dir);
    kiln_status st = tdir && vdir ? KILN_STATUS_OK : kiln__err(KILN_STATUS_NOMEM, "folder: out of memory");
    if (!st && is_dir(tdir)) {
        if (!is_dir(vdir))
            st = kiln__err(KILN_STATUS_FORMAT, "folder: missing split: %s has %s/ but no %s/ (%s does not exist)", root,
                           v->p.train_dir, v->p.valid_dir, vdir);
        else st = folder_split_layout(v, tdir, vdir);
    } else if (!st) {
        strv classes;
        items it = {0};
        st = list_dir(root, true, &classes);
        if (!st && classes.n == 0)
            st = kiln__err(KILN_STATUS_FORMAT, "folder: %s has no class folders (expected %s/%s/<class>/ and %s/%s/"
                           "<class>/, or %s/<class>/)", root, root, v->p.train_dir, root, v->p.valid_dir, root);
        if (!st) st = add_classes(root, &classes, true, &it);
        if (!st) st = split_items(v, &it, NULL);
        if (!st) st = set_classes(v, &classes);
        strv_free(&classes);
        items_free(&it);
    }
    free(tdir), free(vdir);
    return kiln__vision_check_and_finish(v, st);
}

/* ---- CSV ------------------------------------------------------------------------------------ */

static bool truthy(const char *s)
{
    return !strcmp(s, "1") || !strcasecmp(s, "true") || !strcasecmp(s, "yes") || !strcasecmp(s, "t");
}

/* The rows of an image-list CSV: file name (as a path), label and is_valid per row. */
typedef struct csv_rows {
    strv paths, labels;
    bool *is_valid;
    int64_t valid_cap;
} csv_rows;

static void csv_rows_free(csv_rows *r)
{
    strv_free(&r->paths), strv_free(&r->labels), free(r->is_valid);
}

/* Reads the rows of c (header read) with the columns ci (name, label, is_valid or -1);
 * file names are taken relative to dir. */
static kiln_status csv_read_rows(kiln_csv *c, const int ci[3], const char *dir, csv_rows *r)
{
    const char *path = kiln_csv_name(c);
    bool more;
    kiln_status st;
    while (!(st = kiln_csv_next(c, &more)) && more) {
        const char *name = kiln_csv_field(c, ci[0]), *lab = kiln_csv_field(c, ci[1]);
        long long line = (long long)kiln_csv_line(c);
        if (!*lab) return kiln__err(KILN_STATUS_FORMAT, "csv: %s:%lld: empty label", path, line);
        if (!*name) return kiln__err(KILN_STATUS_FORMAT, "csv: %s:%lld: empty file name", path, line);
        if (strlen(name) != kiln_csv_field_len(c, ci[0]))
            return kiln__err(KILN_STATUS_FORMAT, "csv: %s:%lld: a NUL byte in the file name", path, line);
        if (ci[2] >= 0 && r->paths.n == r->valid_cap) {
            int64_t nc = r->valid_cap ? 2 * r->valid_cap : 256;
            bool *nv = realloc(r->is_valid, (size_t)nc * sizeof *nv);
            if (!nv) return kiln__err(KILN_STATUS_NOMEM, "csv: out of memory");
            r->is_valid = nv, r->valid_cap = nc;
        }
        if (ci[2] >= 0) r->is_valid[r->paths.n] = truthy(kiln_csv_field(c, ci[2]));
        if (!strv_push(&r->paths, name[0] == '/' ? kiln__vision_strdup(name) : join(dir, name)) ||
            !strv_push(&r->labels, kiln__vision_strdup(lab)))
            return kiln__err(KILN_STATUS_NOMEM, "csv: out of memory");
    }
    if (!st && r->paths.n == 0) st = kiln__err(KILN_STATUS_FORMAT, "csv: %s: no rows after the header", path);
    return st;
}

/* Opens the CSV and finds the columns named in v's params. */
static kiln_status csv_columns(const kiln_vision_data *v, const char *csv_path, kiln_csv **c, int ci[3])
{
    kiln_status st = kiln_csv_open(csv_path, NULL, c);
    const char *cols[3] = {v->p.csv_name_col, v->p.csv_label_col, v->p.csv_valid_col};
    for (int k = 0; k < 3 && !st; k++) {
        ci[k] = -1;
        if (cols[k] && (ci[k] = kiln_csv_col(*c, cols[k])) < 0)
            st = kiln__err(KILN_STATUS_FORMAT, "csv: %s: no column '%s' in the header (%d columns, first '%s')", csv_path,
                           cols[k], kiln_csv_n_cols(*c), kiln_csv_col_name(*c, 0));
    }
    return st;
}

kiln_data *kiln_vision_csv_new(const char *csv_path, const kiln_vision_params *p)
{
    if (!csv_path) return kiln__errp(KILN_STATUS_INVALID, "vision_csv_new: path is NULL");
    kiln_vision_data *v = kiln__vision_alloc(csv_path, p);
    if (!v) return NULL;
    kiln_csv *c = NULL;
    int ci[3];
    csv_rows r = {0};
    strv names = {0};
    items it = {0};
    char *dir = kiln__vision_strdup(csv_path);
    kiln_status st = dir ? csv_columns(v, csv_path, &c, ci) : KILN_STATUS_NOMEM;
    if (!st) {
        char *slash = strrchr(dir, '/');
        if (slash) slash == dir ? (void)(slash[1] = '\0') : (void)(*slash = '\0');
        else strcpy(dir, ".");
        st = csv_read_rows(c, ci, dir, &r);
    }
    /* classes: the sorted distinct labels */
    for (int64_t i = 0; i < r.labels.n && !st; i++)
        if (!strv_push(&names, kiln__vision_strdup(r.labels.v[i]))) st = kiln__err(KILN_STATUS_NOMEM, "csv: out of memory");
    if (!st) {
        qsort(names.v, (size_t)names.n, sizeof *names.v, cmp_str);
        int64_t u = 0;
        for (int64_t i = 0; i < names.n; i++) {
            if (u && !strcmp(names.v[u - 1], names.v[i])) free(names.v[i]);
            else names.v[u++] = names.v[i];
        }
        names.n = u;
    }
    for (int64_t i = 0; i < r.paths.n && !st; i++) {
        char **hit = bsearch(&r.labels.v[i], names.v, (size_t)names.n, sizeof *names.v, cmp_str);
        if (!items_push(&it, r.paths.v[i], hit - names.v)) st = kiln__err(KILN_STATUS_NOMEM, "csv: out of memory");
        r.paths.v[i] = NULL; /* owned by it now */
    }
    if (!st) st = split_items(v, &it, r.is_valid);
    if (!st) st = set_classes(v, &names);
    strv_free(&names), items_free(&it), csv_rows_free(&r), free(dir);
    kiln_csv_close(c);
    return kiln__vision_check_and_finish(v, st);
}
