/* The tabular data layer (src/data/tabular/, include/kiln/tabular.h) on small tables made
 * here: column kinds (fastai's cont_cat_split), Categorify's categories and codes,
 * FillMissing's medians and _na columns, Normalize's mean and population std, add_datepart
 * (expected parts from Python's datetime, which pandas' .dt agrees with on naive dates:
 * leap days, year ends, ISO week 53 and week 1 across years, a time before 1970), the procs
 * as JSON and back, the valid_pct split, the batches, and every bad input the header lists.
 * The case pandas_* checks a generated table of 300 rows against the values pandas computes the
 * way fastai does (tests/fixtures/gen_tabular_data.py wrote tests/fixtures/tabular_data.json).
 * Tolerances: statistics in double to 1e-12 relative (1e-9 against pandas, whose sums are
 * pairwise); batch values (f32) to 1e-6. */
#include <criterion/criterion.h>

#include "kiln.h"
#include "kiln/tabular.h"
#include "data/tabular/tab_internal.h"
#include "util/ku.h"

#include <cjson/cJSON.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static kiln_table *tab(const char *csv)
{
    kiln_table *t = kiln_table_read_csv_buffer("t.csv", csv, strlen(csv));
    cr_assert(t, "read: %s", kiln_last_error());
    return t;
}

static kiln_tab_procs *learn(const kiln_table *t, kiln_tab_params *p)
{
    kiln_tab_procs *pr = kiln_tab_procs_learn(t, p);
    cr_assert(pr, "learn: %s", kiln_last_error());
    return pr;
}

static int cat_index(const kiln_tab_procs *pr, const char *name)
{
    for (int k = 0; k < kiln_tab_procs_n_cat(pr); k++)
        if (!strcmp(kiln_tab_procs_cat_name(pr, k), name)) return k;
    return -1;
}

static int cont_index(const kiln_tab_procs *pr, const char *name)
{
    for (int k = 0; k < kiln_tab_procs_n_cont(pr); k++)
        if (!strcmp(kiln_tab_procs_cont_name(pr, k), name)) return k;
    return -1;
}

static void expect_near(double got, double want, double rtol, const char *what)
{
    cr_assert(fabs(got - want) <= rtol * fabs(want) + 1e-12, "%s: got %.17g, want %.17g", what, got, want);
}

/* ---- tables ---- */

Test(tabular_table, cells_lines_and_missing)
{
    kiln_table *t = tab("a,b\n1,\"x,\ny\"\n,z\n");
    cr_assert_eq(kiln_table_n_rows(t), 2);
    cr_assert_eq(kiln_table_n_cols(t), 2);
    cr_assert_str_eq(kiln_table_col_name(t, 1), "b");
    cr_assert_eq(kiln_table_col(t, "b"), 1);
    cr_assert_eq(kiln_table_col(t, "c"), -1);
    cr_assert_str_eq(kiln_table_cell(t, 0, 1), "x,\ny");
    cr_assert_null(kiln_table_cell(t, 1, 0), "an empty field is missing");
    cr_assert_eq(kiln_table_line(t, 0), 2);
    cr_assert_eq(kiln_table_line(t, 1), 4, "the second row starts after the quoted line break");
    kiln_table *s = kiln_table_rows(t, (int64_t[]){1, 0, 1}, 3);
    cr_assert(s, "%s", kiln_last_error());
    kiln_table_free(t);
    cr_assert_eq(kiln_table_n_rows(s), 3);
    cr_assert_str_eq(kiln_table_cell(s, 0, 1), "z");
    cr_assert_str_eq(kiln_table_cell(s, 1, 1), "x,\ny");
    cr_assert_null(kiln_table_cell(s, 2, 0));
    cr_assert_eq(kiln_table_line(s, 1), 2);
    kiln_table_free(s);
}

static void expect_bad_csv(const char *csv, const char *needle1, const char *needle2, const char *what)
{
    cr_assert_null(kiln_table_read_csv_buffer("bad.csv", csv, strlen(csv)), "%s: accepted", what);
    ku_expect_error("bad.csv", what);
    ku_expect_error(needle1, what);
    if (needle2) ku_expect_error(needle2, what);
}

Test(tabular_table, bad_csv_named_with_line)
{
    /* the reader's messages say "file:line:" */
    expect_bad_csv("a,b\n1,2\n3\n", "bad.csv:3:", "header has 2", "ragged row");
    expect_bad_csv("a,b\n1,2\n3,4,5\n", "bad.csv:3:", "3 fields", "long row");
    expect_bad_csv("a,b\n1,2\n3,\"open\n4,5\n", "bad.csv:3:", "quote", "unbalanced quote");
    expect_bad_csv("a,b\n1,\"x\"y\n", "bad.csv:2:", "closing quote", "text after a closing quote");
    expect_bad_csv("", "empty", NULL, "empty file");
    expect_bad_csv("a,b\n", "header", "line 1", "header only");
    expect_bad_csv("a,b,a\n1,2,3\n", "\"a\"", "columns 1 and 3", "a column named twice");
    expect_bad_csv("a,,c\n1,2,3\n", "column 2", "empty name", "an empty column name");
}

Test(tabular_table, file_reader)
{
    char path[] = "/tmp/kiln_tab_XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    const char *csv = "x,y\n1,a\n2,b\n";
    cr_assert_eq(write(fd, csv, strlen(csv)), (ssize_t)strlen(csv));
    close(fd);
    kiln_table *t = kiln_table_read_csv(path);
    cr_assert(t, "%s", kiln_last_error());
    cr_assert_str_eq(kiln_table_name(t), path);
    cr_assert_str_eq(kiln_table_cell(t, 1, 1), "b");
    kiln_table_free(t);
    unlink(path);
    cr_assert_null(kiln_table_read_csv(path));
    ku_expect_error(path, "missing file");
}

/* ---- kinds, categories, statistics ---- */

static const char *T1 = "city,age,price,flag,small,n,y\n"
                        "b,1,1.5,True,7,1,10\n"
                        "a,2,,False,7,2,20\n"
                        "c,3,2.5,True,8,,30\n"
                        "a,4,4.0,False,9,4,40\n"
                        "b,1,3.5,True,8,5,50\n"
                        ",5,0.5,False,7,6,60\n";

Test(tabular_procs, kinds_order_and_codes)
{
    kiln_table *t = tab(T1);
    kiln_tab_params p = kiln_tab_default_params();
    p.target = "y";
    p.max_card = 3; /* age: 5 distinct integers > 3, continuous; small: 3, categorical */
    kiln_tab_procs *pr = learn(t, &p);
    const char *cats[] = {"city", "flag", "small", "price_na", "n_na"}, *conts[] = {"age", "price", "n"};
    cr_assert_eq(kiln_tab_procs_n_cat(pr), 5);
    cr_assert_eq(kiln_tab_procs_n_cont(pr), 3);
    for (int k = 0; k < 5; k++) cr_assert_str_eq(kiln_tab_procs_cat_name(pr, k), cats[k], "cat %d", k);
    for (int k = 0; k < 3; k++) cr_assert_str_eq(kiln_tab_procs_cont_name(pr, k), conts[k], "cont %d", k);
    cr_assert_not(kiln_tab_procs_is_classification(pr));
    cr_assert_eq(kiln_tab_procs_n_classes(pr), 0);
    double lo, hi;
    kiln_tab_procs_target_range(pr, &lo, &hi);
    cr_assert(lo == 10 && hi == 60);
    /* categories */
    cr_assert_eq(kiln_tab_procs_cardinality(pr, 0), 4);
    const char *city[] = {"#na#", "a", "b", "c"};
    for (int c = 0; c < 4; c++) cr_assert_str_eq(kiln_tab_procs_category(pr, 0, c), city[c]);
    cr_assert_null(kiln_tab_procs_category(pr, 0, 4));
    cr_assert_str_eq(kiln_tab_procs_category(pr, 1, 1), "False");
    cr_assert_str_eq(kiln_tab_procs_category(pr, 1, 2), "True");
    cr_assert_eq(kiln_tab_procs_cardinality(pr, 2), 4);
    cr_assert_eq(kiln_tab_procs_code(pr, 2, "9"), 3);
    cr_assert_eq(kiln_tab_procs_code(pr, 2, "9.0"), 3, "numeric categories compare as numbers");
    cr_assert_eq(kiln_tab_procs_code(pr, 0, "zz"), 0, "unseen");
    cr_assert_eq(kiln_tab_procs_code(pr, 0, NULL), 0, "missing");
    cr_assert_eq(kiln_tab_procs_code(pr, 3, "1.0"), 1, "_na: present is 1 (false)");
    cr_assert_eq(kiln_tab_procs_code(pr, 3, NULL), 2, "_na: missing is 2 (true)");
    cr_assert_eq(kiln_tab_procs_cardinality(pr, 3), 3);
    /* statistics (Python's statistics: median, mean, pstdev after filling) */
    double med, mean, sd;
    kiln_tab_procs_cont_stats(pr, 0, &med, &mean, &sd);
    expect_near(med, 2.5, 1e-12, "age median (even count)");
    expect_near(mean, 2.6666666666666665, 1e-12, "age mean");
    expect_near(sd, 1.4907119849998598, 1e-12, "age std ddof 0");
    cr_assert_not(kiln_tab_procs_has_na_col(pr, 0));
    kiln_tab_procs_cont_stats(pr, 1, &med, &mean, &sd);
    expect_near(med, 2.5, 1e-12, "price median");
    expect_near(mean, 2.4166666666666665, 1e-12, "price mean after filling");
    expect_near(sd, 1.16963907063485, 1e-12, "price std after filling");
    cr_assert(kiln_tab_procs_has_na_col(pr, 1));
    kiln_tab_procs_cont_stats(pr, 2, &med, &mean, &sd);
    expect_near(med, 4, 1e-12, "n median (an int column with a missing value is continuous)");
    expect_near(mean, 3.6666666666666665, 1e-12, "n mean");
    expect_near(sd, 1.699673171197595, 1e-12, "n std");
    /* the rows */
    kiln_tab_rows r;
    cr_assert_eq(kiln_tab_procs_apply(pr, t, true, &r), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert_eq(r.n, 6);
    cr_assert(r.y && !r.y_class);
    float want_codes[6][5] = {{2, 2, 1, 1, 1}, {1, 1, 1, 2, 1}, {3, 2, 2, 1, 2},
                              {1, 1, 3, 1, 1}, {2, 2, 2, 1, 1}, {0, 1, 1, 1, 1}};
    double price[6] = {1.5, 2.5, 2.5, 4.0, 3.5, 0.5}, pm = 2.4166666666666665, ps = 1.16963907063485;
    for (int i = 0; i < 6; i++) {
        for (int k = 0; k < 5; k++) cr_assert_eq(r.x[i * 8 + k], want_codes[i][k], "row %d cat %d: %g", i, k, r.x[i * 8 + k]);
        float want = (float)((price[i] - pm) / (ps + 1e-7));
        cr_assert(fabsf(r.x[i * 8 + 6] - want) <= 1e-6f, "row %d price %g want %g", i, r.x[i * 8 + 6], want);
        cr_assert_eq(r.y[i], 10.0f * (float)(i + 1));
    }
    kiln_tab_rows_free(&r);
    cr_assert_eq(kiln_tab_procs_apply(pr, t, false, &r), KILN_STATUS_OK);
    cr_assert(!r.y && !r.y_class, "without the target");
    kiln_tab_rows_free(&r);
    kiln_tab_procs_free(pr);
    kiln_table_free(t);
}

Test(tabular_procs, default_max_card_and_overrides)
{
    /* 25 distinct integers: continuous with max_card 20; a float column; forced kinds */
    char csv[4096];
    size_t n = (size_t)sprintf(csv, "id,f,code,skipme,y\n");
    for (int i = 0; i < 25; i++) n += (size_t)sprintf(csv + n, "%d,%d.5,%d,q,%s\n", i, i % 2, i % 3, i % 2 ? "yes" : "no");
    kiln_table *t = tab(csv);
    kiln_tab_params p = kiln_tab_default_params();
    p.target = "y";
    kiln_tab_procs *pr = learn(t, &p);
    cr_assert_eq(kiln_tab_procs_n_cont(pr), 2);
    cr_assert_str_eq(kiln_tab_procs_cont_name(pr, 0), "id");
    cr_assert_str_eq(kiln_tab_procs_cont_name(pr, 1), "f");
    cr_assert_eq(kiln_tab_procs_n_cat(pr), 2);
    cr_assert_str_eq(kiln_tab_procs_cat_name(pr, 0), "code");
    cr_assert(kiln_tab_procs_is_classification(pr));
    cr_assert_eq(kiln_tab_procs_n_classes(pr), 2);
    cr_assert_str_eq(kiln_tab_procs_class(pr, 0), "no");
    cr_assert_str_eq(kiln_tab_procs_class(pr, 1), "yes");
    kiln_tab_procs_free(pr);
    /* overrides: id categorical, code continuous, skipme left out */
    p.cat = (const char *const[]){"id", NULL};
    p.cont = (const char *const[]){"code", NULL};
    p.skip = (const char *const[]){"skipme", NULL};
    pr = learn(t, &p);
    cr_assert_eq(kiln_tab_procs_n_cat(pr), 1);
    cr_assert_str_eq(kiln_tab_procs_cat_name(pr, 0), "id");
    cr_assert_eq(kiln_tab_procs_cardinality(pr, 0), 26);
    cr_assert_str_eq(kiln_tab_procs_category(pr, 0, 3), "2", "numeric sort: 0 1 2 ... not 0 1 10");
    cr_assert_str_eq(kiln_tab_procs_category(pr, 0, 11), "10");
    cr_assert_eq(kiln_tab_procs_n_cont(pr), 2);
    cr_assert_str_eq(kiln_tab_procs_cont_name(pr, 0), "f");
    cr_assert_str_eq(kiln_tab_procs_cont_name(pr, 1), "code");
    kiln_tab_procs_free(pr);
    /* only the listed columns (collab) */
    p.only_listed = true;
    p.cont = NULL;
    p.skip = NULL;
    pr = learn(t, &p);
    cr_assert_eq(kiln_tab_procs_n_cat(pr), 1);
    cr_assert_eq(kiln_tab_procs_n_cont(pr), 0);
    kiln_tab_procs_free(pr);
    /* bad lists */
    p.only_listed = false;
    p.cat = (const char *const[]){"nope", NULL};
    cr_assert_null(kiln_tab_procs_learn(t, &p));
    ku_expect_error("\"nope\"", "an unknown column");
    p.cat = (const char *const[]){"id", NULL};
    p.cont = (const char *const[]){"id", NULL};
    cr_assert_null(kiln_tab_procs_learn(t, &p));
    ku_expect_error("twice", "a column listed twice");
    kiln_table_free(t);
}

Test(tabular_procs, classes_sorted_numerically_when_numbers)
{
    kiln_table *t = tab("a,y\nx,10\ny,2\nx,1\ny,2\n");
    kiln_tab_params p = kiln_tab_default_params();
    p.target = "y";
    p.task = KILN_TAB_CLASSIFICATION;
    kiln_tab_procs *pr = learn(t, &p);
    cr_assert_eq(kiln_tab_procs_n_classes(pr), 3);
    cr_assert_str_eq(kiln_tab_procs_class(pr, 0), "1");
    cr_assert_str_eq(kiln_tab_procs_class(pr, 1), "2");
    cr_assert_str_eq(kiln_tab_procs_class(pr, 2), "10");
    kiln_tab_rows r;
    cr_assert_eq(kiln_tab_procs_apply(pr, t, true, &r), KILN_STATUS_OK, "%s", kiln_last_error());
    int64_t want[4] = {2, 1, 0, 1};
    for (int i = 0; i < 4; i++) cr_assert_eq(r.y_class[i], want[i]);
    kiln_tab_rows_free(&r);
    kiln_tab_procs_free(pr);
    kiln_table_free(t);
}

Test(tabular_procs, log_target)
{
    kiln_table *t = tab("a,y\nx,1\ny,100\n");
    kiln_tab_params p = kiln_tab_default_params();
    p.target = "y";
    p.log_target = true;
    kiln_tab_procs *pr = learn(t, &p);
    cr_assert(kiln_tab_procs_log_target(pr));
    double lo, hi;
    kiln_tab_procs_target_range(pr, &lo, &hi);
    expect_near(lo, 0, 0, "log 1");
    expect_near(hi, log(100.0), 1e-12, "log 100");
    kiln_tab_rows r;
    cr_assert_eq(kiln_tab_procs_apply(pr, t, true, &r), KILN_STATUS_OK);
    cr_assert(fabsf(r.y[1] - (float)log(100.0)) < 1e-6f);
    kiln_tab_rows_free(&r);
    kiln_table *bad = tab("a,y\nx,1\ny,0\n");
    cr_assert_neq(kiln_tab_procs_apply(pr, bad, true, &r), KILN_STATUS_OK);
    ku_expect_error("line 3", "apply: a target <= 0 with log_target");
    ku_expect_error("\"y\"", "apply: names the column");
    kiln_tab_procs_free(pr);
    cr_assert_null(kiln_tab_procs_learn(bad, &p));
    ku_expect_error("line 3", "learn: a target <= 0 with log_target");
    ku_expect_error("t.csv", "learn: names the file");
    kiln_table_free(bad);
    kiln_table_free(t);
}

/* ---- add_datepart ---- */

static const char *DATES[7] = {"2016-02-29", "2020-12-31", "2021-01-01", "2019-12-30", "1999-12-31 23:59:59",
                               "2015-03-31T00:00", "1969-12-31 12:00"};
/* Year Month Week Day Dayofweek Dayofyear ME MS QE QS YE YS Elapsed (Python datetime) */
static const double PARTS[7][13] = {
    {2016, 2, 9, 29, 0, 60, 1, 0, 0, 0, 0, 0, 1456704000},
    {2020, 12, 53, 31, 3, 366, 1, 0, 1, 0, 1, 0, 1609372800},
    {2021, 1, 53, 1, 4, 1, 0, 1, 0, 1, 0, 1, 1609459200},
    {2019, 12, 1, 30, 0, 364, 0, 0, 0, 0, 0, 0, 1577664000},
    {1999, 12, 52, 31, 4, 365, 1, 0, 1, 0, 1, 0, 946684799},
    {2015, 3, 14, 31, 1, 90, 1, 0, 1, 0, 0, 0, 1427760000},
    {1969, 12, 1, 31, 2, 365, 1, 0, 1, 0, 1, 0, -43200},
};

Test(tabular_datepart, parts_of_hard_dates)
{
    for (int i = 0; i < 7; i++) {
        kiln__tab_date d;
        cr_assert(kiln__tab_parse_date(DATES[i], &d), "%s", DATES[i]);
        for (int k = 0; k < 13; k++)
            cr_assert_eq(kiln__tab_part_value(&d, k), PARTS[i][k], "%s %s: %g, want %g", DATES[i],
                         kiln__tab_part_name(k), kiln__tab_part_value(&d, k), PARTS[i][k]);
    }
    kiln__tab_date d;
    const char *bad[] = {"2015-02-29", "2016-13-01", "2016-1-01", "2016-01-01 24:00", "2016-01-01 10:00:", "20160101", "x"};
    for (int i = 0; i < 7; i++) cr_assert_not(kiln__tab_parse_date(bad[i], &d), "%s read as a date", bad[i]);
}

Test(tabular_datepart, columns_through_procs)
{
    char csv[1024];
    size_t n = (size_t)sprintf(csv, "saledate,y\n");
    for (int i = 0; i < 7; i++) n += (size_t)sprintf(csv + n, "%s,%d\n", DATES[i], i);
    kiln_table *t = tab(csv);
    kiln_tab_params p = kiln_tab_default_params();
    p.target = "y";
    kiln_tab_procs *pr = learn(t, &p); /* found on its own: every value a date */
    /* 7 rows, max_card 20: every integer part categorical, Elapsed continuous */
    cr_assert_eq(kiln_tab_procs_n_cat(pr), 12);
    cr_assert_eq(kiln_tab_procs_n_cont(pr), 1);
    cr_assert_str_eq(kiln_tab_procs_cat_name(pr, 0), "saleYear");
    cr_assert_str_eq(kiln_tab_procs_cat_name(pr, 11), "saleIs_year_start");
    cr_assert_str_eq(kiln_tab_procs_cont_name(pr, 0), "saleElapsed");
    double med;
    kiln_tab_procs_cont_stats(pr, 0, &med, NULL, NULL);
    expect_near(med, 1456704000, 0, "Elapsed median");
    kiln_tab_rows r;
    cr_assert_eq(kiln_tab_procs_apply(pr, t, true, &r), KILN_STATUS_OK, "%s", kiln_last_error());
    for (int i = 0; i < 7; i++)
        for (int k = 0; k < 12; k++) {
            const char *c = kiln_tab_procs_category(pr, k, (int64_t)r.x[i * 13 + k]);
            cr_assert(c, "row %d part %d: code %g", i, k, r.x[i * 13 + k]);
            double v = !strcmp(c, "True") ? 1 : !strcmp(c, "False") ? 0 : atof(c);
            cr_assert_eq(v, PARTS[i][k], "%s %s: %s", DATES[i], kiln_tab_procs_cat_name(pr, k), c);
        }
    kiln_tab_rows_free(&r);
    kiln_tab_procs_free(pr);
    kiln_table_free(t);
    /* "Date" loses its whole name; a forced date column with a bad value is an error */
    t = tab("Date,other,y\n2020-01-01,x,1\n2020-01-02,y,2\n");
    pr = learn(t, &p);
    cr_assert_str_eq(kiln_tab_procs_cat_name(pr, 1), "Year");
    kiln_tab_procs_free(pr);
    kiln_table_free(t);
    t = tab("when,y\n2020-01-01,1\nsoon,2\n");
    p.date = (const char *const[]){"when", NULL};
    cr_assert_null(kiln_tab_procs_learn(t, &p));
    ku_expect_error("line 3", "a forced date column with text");
    ku_expect_error("\"when\"", "names the column");
    kiln_table_free(t);
}

Test(tabular_datepart, missing_dates_and_many_days)
{
    /* 30 distinct days: Day, Dayofyear, Week... continuous; a missing date: _na columns */
    char csv[4096];
    size_t n = (size_t)sprintf(csv, "d,y\n");
    for (int i = 1; i <= 30; i++) n += (size_t)sprintf(csv + n, "2021-%02d-%02d,%d\n", i % 12 + 1, i, i);
    n += (size_t)sprintf(csv + n, ",31\n");
    kiln_table *t = tab(csv);
    kiln_tab_params p = kiln_tab_default_params();
    p.target = "y";
    kiln_tab_procs *pr = learn(t, &p);
    /* a missing date makes the integer parts float (pandas): all continuous */
    int k = cont_index(pr, "dDay");
    cr_assert(k >= 0, "dDay continuous");
    cr_assert(kiln_tab_procs_has_na_col(pr, k));
    cr_assert(cont_index(pr, "dYear") >= 0);
    cr_assert(cat_index(pr, "dIs_month_end") >= 0, "bools stay categorical");
    cr_assert(cat_index(pr, "dDay_na") >= 0);
    kiln_tab_rows r;
    cr_assert_eq(kiln_tab_procs_apply(pr, t, true, &r), KILN_STATUS_OK, "%s", kiln_last_error());
    int w = r.n_cat + r.n_cont, na = cat_index(pr, "dDay_na");
    cr_assert_eq(r.x[30 * w + na], 2.0f, "the missing date's _na is true");
    cr_assert_eq(r.x[0 * w + na], 1.0f);
    kiln_tab_rows_free(&r);
    kiln_tab_procs_free(pr);
    kiln_table_free(t);
}

/* ---- JSON ---- */

Test(tabular_json, round_trip)
{
    kiln_table *t = tab(T1);
    kiln_tab_params p = kiln_tab_default_params();
    p.target = "y";
    p.max_card = 3;
    kiln_tab_procs *pr = learn(t, &p);
    char *js = kiln_tab_procs_to_json(pr);
    cr_assert(js, "%s", kiln_last_error());
    kiln_tab_procs *back = kiln_tab_procs_from_json(js, strlen(js), "procs.json");
    cr_assert(back, "%s", kiln_last_error());
    char *js2 = kiln_tab_procs_to_json(back);
    cr_assert_str_eq(js, js2);
    kiln_tab_rows a, b;
    cr_assert_eq(kiln_tab_procs_apply(pr, t, true, &a), KILN_STATUS_OK);
    cr_assert_eq(kiln_tab_procs_apply(back, t, true, &b), KILN_STATUS_OK);
    cr_assert_eq(memcmp(a.x, b.x, (size_t)a.n * 8 * sizeof(float)), 0, "the same rows");
    kiln_tab_rows_free(&a), kiln_tab_rows_free(&b);
    /* saved and loaded */
    char path[] = "/tmp/kiln_procs_XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    cr_assert_eq(kiln_tab_procs_save(pr, path), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_tab_procs *loaded = kiln_tab_procs_load(path);
    cr_assert(loaded, "%s", kiln_last_error());
    char *js3 = kiln_tab_procs_to_json(loaded);
    cr_assert_str_eq(js, js3);
    unlink(path);
    free(js), free(js2), free(js3);
    kiln_tab_procs_free(loaded);
    kiln_tab_procs_free(back);
    kiln_tab_procs_free(pr);
    /* classification and dates too */
    kiln_table_free(t);
    t = tab("when,c,y\n2020-01-01,x,a\n2020-03-01,y,b\n");
    pr = learn(t, &p);
    js = kiln_tab_procs_to_json(pr);
    back = kiln_tab_procs_from_json(js, strlen(js), "p2.json");
    cr_assert(back, "%s", kiln_last_error());
    js2 = kiln_tab_procs_to_json(back);
    cr_assert_str_eq(js, js2);
    cr_assert_eq(kiln_tab_procs_n_classes(back), 2);
    free(js), free(js2);
    kiln_tab_procs_free(back);
    kiln_tab_procs_free(pr);
    kiln_table_free(t);
}

static void expect_bad_json(const char *js, const char *needle, const char *what)
{
    kiln_tab_procs *pr = kiln_tab_procs_from_json(js, strlen(js), "bad.json");
    cr_assert_null(pr, "%s: accepted", what);
    ku_expect_error("bad.json", what);
    ku_expect_error(needle, what);
}

Test(tabular_json, malformed_refused_naming_the_field)
{
    kiln_table *t = tab(T1);
    kiln_tab_params p = kiln_tab_default_params();
    p.target = "y";
    p.max_card = 3;
    kiln_tab_procs *pr = learn(t, &p);
    char *js = kiln_tab_procs_to_json(pr);
    kiln_tab_procs_free(pr);
    kiln_table_free(t);
    struct {
        const char *from, *to, *needle;
    } cases[] = {
        {"\"median\":", "\"medianx\":", "\"median\" is missing"},
        {"\"std\":", "\"std\":-1,\"x\":", "\"std\""},
        {"\"mean\":", "\"mean\":\"abc\",\"x\":", "\"mean\" is not a number"},
        {"\"target\":\"y\"", "\"target\":3", "\"target\""},
        {"\"task\":\"regression\"", "\"task\":\"magic\"", "\"task\""},
        {"\"format\":\"kiln-tab-procs\"", "\"format\":\"other\"", "\"format\""},
        {"\"version\":1", "\"version\":7", "\"version\""},
        {"[\"#na#\",\"a\",\"b\",\"c\"]", "[\"#na#\",\"b\",\"a\",\"c\"]", "not sorted"},
        {"[\"#na#\",\"a\",\"b\",\"c\"]", "[\"a\",\"b\",\"c\"]", "#na#"},
        {"[\"#na#\",\"a\",\"b\",\"c\"]", "[\"#na#\",\"a\",2]", "\"categories\"[2]"},
        {"\"column\":\"city\"", "\"column\":\"city\",\"part\":\"Fortnight\"", "\"part\""},
        {"\"target_range\":[10,60]", "\"target_range\":[60]", "\"target_range\""},
        {"\"cat\":[", "\"cat\":3,\"x\":[", "\"cat\" is not an array"},
        {"\"na\":true", "\"na\":1", "\"na\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *bad = ku_replace(js, cases[i].from, cases[i].to);
        expect_bad_json(bad, cases[i].needle, cases[i].to);
        free(bad);
    }
    expect_bad_json("{\"format\": ", "not a JSON object", "truncated");
    expect_bad_json("[1,2]", "not a JSON object", "an array");
    free(js);
}

/* ---- bad input at learn and apply ---- */

Test(tabular_bad, target)
{
    kiln_table *t = tab("a,y\nx,1\ny,\n");
    kiln_tab_params p = kiln_tab_default_params();
    p.target = "z";
    cr_assert_null(kiln_tab_procs_learn(t, &p));
    ku_expect_error("\"z\"", "a target that is not a column");
    p.target = "y";
    cr_assert_null(kiln_tab_procs_learn(t, &p));
    ku_expect_error("line 3", "a missing target value");
    ku_expect_error("t.csv", "names the file");
    kiln_table_free(t);
    t = tab("a,y\nx,1\ny,two\n");
    p.task = KILN_TAB_REGRESSION;
    cr_assert_null(kiln_tab_procs_learn(t, &p));
    ku_expect_error("line 3", "a text target for regression");
    ku_expect_error("\"two\"", "names the value");
    p.task = KILN_TAB_AUTO;
    kiln_tab_procs *pr = learn(t, &p);
    cr_assert(kiln_tab_procs_is_classification(pr), "text makes it classes");
    /* a class unseen in training at apply time */
    kiln_table *v = tab("a,y\nx,three\n");
    kiln_tab_rows r;
    cr_assert_neq(kiln_tab_procs_apply(pr, v, true, &r), KILN_STATUS_OK);
    ku_expect_error("line 2", "an unseen class");
    ku_expect_error("\"three\"", "names the class");
    cr_assert_eq(kiln_tab_procs_apply(pr, v, false, &r), KILN_STATUS_OK, "without the target: fine");
    kiln_tab_rows_free(&r);
    kiln_table_free(v);
    /* regression target not a number at apply time; the target column missing */
    kiln_tab_procs_free(pr);
    kiln_table_free(t);
    t = tab("a,y\nx,1\ny,2\n");
    pr = learn(t, &p);
    v = tab("a,y\nx,1\nx,abc\n");
    cr_assert_neq(kiln_tab_procs_apply(pr, v, true, &r), KILN_STATUS_OK);
    ku_expect_error("line 3", "a text regression target at apply");
    kiln_table_free(v);
    v = tab("a\nx\n");
    cr_assert_neq(kiln_tab_procs_apply(pr, v, true, &r), KILN_STATUS_OK);
    ku_expect_error("\"y\"", "the target column missing at apply");
    cr_assert_eq(kiln_tab_procs_apply(pr, v, false, &r), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_tab_rows_free(&r);
    kiln_table_free(v);
    kiln_tab_procs_free(pr);
    /* one class; no input column */
    p.task = KILN_TAB_CLASSIFICATION;
    kiln_table *one = tab("a,y\nx,k\ny,k\n");
    cr_assert_null(kiln_tab_procs_learn(one, &p));
    ku_expect_error("one class", "one class");
    kiln_table_free(one);
    p.task = KILN_TAB_AUTO;
    p.skip = (const char *const[]){"a", NULL};
    cr_assert_null(kiln_tab_procs_learn(t, &p));
    ku_expect_error("no input column", "no input column left");
    kiln_table_free(t);
}

Test(tabular_bad, apply_values)
{
    kiln_table *t = tab("c,x,m,y\na,1.5,1.5,1\nb,2.5,,2\n");
    kiln_tab_params p = kiln_tab_default_params();
    p.target = "y";
    kiln_tab_procs *pr = learn(t, &p);
    kiln_tab_rows r;
    /* unseen and missing categories: code 0, not an error; missing m: filled (it has _na) */
    kiln_table *v = tab("c,x,m,y\nzzz,1.0,,3\n,2.0,1.0,4\n");
    cr_assert_eq(kiln_tab_procs_apply(pr, v, true, &r), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert_eq(r.x[0], 0.0f, "unseen");
    cr_assert_eq(r.x[r.n_cat + r.n_cont], 0.0f, "missing");
    cr_assert_eq(r.x[1], 2.0f, "m_na true");
    kiln_tab_rows_free(&r);
    kiln_table_free(v);
    /* a missing value in x, which had none in training */
    v = tab("c,x,m,y\na,1.0,1,3\na,,1,4\n");
    cr_assert_neq(kiln_tab_procs_apply(pr, v, true, &r), KILN_STATUS_OK);
    ku_expect_error("line 3", "a missing continuous value");
    ku_expect_error("\"x\"", "names the column");
    ku_expect_error("t.csv", "names the table");
    kiln_table_free(v);
    /* text in a continuous column */
    v = tab("c,x,m,y\na,1.0,1,3\na,lots,1,4\n");
    cr_assert_neq(kiln_tab_procs_apply(pr, v, true, &r), KILN_STATUS_OK);
    ku_expect_error("line 3", "text in a continuous column");
    ku_expect_error("\"lots\"", "names the value");
    kiln_table_free(v);
    /* an input column missing */
    v = tab("c,m,y\na,1,3\n");
    cr_assert_neq(kiln_tab_procs_apply(pr, v, true, &r), KILN_STATUS_OK);
    ku_expect_error("\"x\"", "an input column missing");
    kiln_table_free(v);
    kiln_tab_procs_free(pr);
    /* a forced continuous column with text */
    p.cont = (const char *const[]){"c", NULL};
    cr_assert_null(kiln_tab_procs_learn(t, &p));
    ku_expect_error("line 2", "a forced continuous column with text");
    ku_expect_error("\"c\"", "names the column");
    kiln_table_free(t);
}

Test(tabular_bad, code_limit)
{
    /* codes must stay exact in f32 (2^24); lowered here instead of making 2^24 categories */
    kiln_table *t = tab("c,y\na,1\nb,2\nc,3\n");
    kiln_tab_params p = kiln_tab_default_params();
    p.target = "y";
    kiln_tab_procs *pr = learn(t, &p);
    char *js = kiln_tab_procs_to_json(pr);
    kiln_tab_procs_free(pr);
    int64_t keep = kiln__tab_code_limit;
    kiln__tab_code_limit = 2;
    kiln_tab_procs *bad = kiln_tab_procs_learn(t, &p);
    bool refused = !bad;
    char msg[512];
    snprintf(msg, sizeof msg, "%s", kiln_last_error());
    kiln_tab_procs *bad2 = kiln_tab_procs_from_json(js, strlen(js), "big.json");
    bool refused2 = !bad2;
    char msg2[512];
    snprintf(msg2, sizeof msg2, "%s", kiln_last_error());
    kiln__tab_code_limit = keep;
    kiln_tab_procs_free(bad), kiln_tab_procs_free(bad2);
    free(js);
    kiln_table_free(t);
    cr_assert(refused, "3 categories over a limit of 2 accepted");
    cr_assert(strstr(msg, "\"c\"") && strstr(msg, "3 categories"), "%s", msg);
    cr_assert(refused2, "from_json accepted 3 categories over a limit of 2");
    cr_assert(strstr(msg2, "big.json") && strstr(msg2, "categories"), "%s", msg2);
}

/* ---- the split and the batches ---- */

static char *write_tmp(const char *text)
{
    char *path = strdup("/tmp/kiln_tabdata_XXXXXX");
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

Test(tabular_data, split_and_batches)
{
    char csv[4096];
    size_t n = (size_t)sprintf(csv, "c,x,y\n");
    for (int i = 0; i < 10; i++) n += (size_t)sprintf(csv + n, "%c,%d.25,%d\n", 'a' + i % 3, i * 7 % 10, i);
    char *path = write_tmp(csv);
    kiln_tab_params p = kiln_tab_default_params();
    p.target = "y";
    p.batch_size = 3;
    kiln_tab_procs *pr;
    kiln_tab_info info;
    kiln_data *d = kiln_tabular_data_open(path, NULL, &p, &pr, &info);
    cr_assert(d, "%s", kiln_last_error());
    cr_assert_eq(info.n_train, 8);
    cr_assert_eq(info.n_valid, 2, "int(0.2 * 10)");
    cr_assert(info.mb_per_s > 0 && info.seconds >= 0);
    cr_assert_eq(kiln_data_n_batches(d, KILN_DATA_SPLIT_TRAIN), 2, "8 rows, bs 3, drop_last");
    cr_assert_eq(kiln_data_n_batches(d, KILN_DATA_SPLIT_VALID), 1, "2 rows, every row kept");
    kiln_tab_procs *pr25;
    kiln_tab_info i25;
    p.valid_pct = 0.25;
    kiln_data *d25 = kiln_tabular_data_open(path, NULL, &p, &pr25, &i25);
    cr_assert(d25, "%s", kiln_last_error());
    cr_assert_eq(i25.n_valid, 2, "int(0.25 * 10), fastai RandomSplitter's cut (not 3)");
    kiln_data_free(d25);
    kiln_tab_procs_free(pr25);
    p.valid_pct = 0.2;
    int64_t perm[10];
    kiln_data_permutation(42, 0, 10, perm);
    /* the procs were learned on the training rows only */
    kiln_table *all = tab(csv);
    kiln_table *tr = kiln_table_rows(all, perm + 2, 8), *va = kiln_table_rows(all, perm, 2);
    kiln_tab_procs *want = learn(tr, &p);
    char *a = kiln_tab_procs_to_json(pr), *b = kiln_tab_procs_to_json(want);
    cr_assert_str_eq(a, b);
    free(a), free(b);
    kiln_tab_rows rv;
    cr_assert_eq(kiln_tab_procs_apply(want, va, true, &rv), KILN_STATUS_OK);
    kiln_ctx *ctx = ku_ctx();
    kiln_tensor *x, *y;
    cr_assert_eq(kiln_data_get_batch(d, KILN_DATA_SPLIT_VALID, 0, ctx, &x, &y), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert_eq(x->ndim, 2);
    cr_assert_eq(x->shape[0], 2);
    cr_assert_eq(x->shape[1], 2, "c and x");
    cr_assert_eq(y->dtype, KILN_DTYPE_F32);
    cr_assert_eq(y->ndim, 2);
    cr_assert_eq(y->shape[1], 1);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(kiln_get_flat(y, i), (double)perm[i], "valid row %d is row %lld", i, (long long)perm[i]);
        for (int j = 0; j < 2; j++)
            cr_assert(fabs(kiln_get_flat(x, i * 2 + j) - rv.x[i * 2 + j]) <= 1e-6, "valid x[%d][%d]", i, j);
    }
    kiln_tab_rows_free(&rv);
    kiln_data_set_epoch(d, 1, 0);
    cr_assert_eq(kiln_data_get_batch(d, KILN_DATA_SPLIT_TRAIN, 1, ctx, &x, &y), KILN_STATUS_OK);
    cr_assert_eq(x->shape[0], 3);
    cr_assert_eq(x->shape[1], 2);
    kiln_data_free(d);
    kiln_tab_procs_free(pr);
    kiln_tab_procs_free(want);
    kiln_table_free(tr), kiln_table_free(va), kiln_table_free(all);
    /* a validation file, classification: y (B) i64 */
    char *vpath = write_tmp("c,x,y\na,1.0,1\nb,2.0,0\nz,3.0,1\n");
    p.task = KILN_TAB_CLASSIFICATION;
    p.valid_batch_size = 2;
    d = kiln_tabular_data_open(path, vpath, &p, &pr, &info);
    cr_assert(d, "%s", kiln_last_error());
    cr_assert_eq(info.n_train, 10);
    cr_assert_eq(info.n_valid, 3);
    cr_assert_eq(kiln_data_n_batches(d, KILN_DATA_SPLIT_VALID), 2);
    cr_assert_eq(kiln_data_get_batch(d, KILN_DATA_SPLIT_VALID, 1, ctx, &x, &y), KILN_STATUS_OK);
    cr_assert_eq(y->dtype, KILN_DTYPE_I64);
    cr_assert_eq(y->ndim, 1);
    cr_assert_eq(x->shape[0], 1, "the short last valid batch is kept");
    cr_assert_eq(kiln_get_flat(x, 0), 0.0, "z is unseen: code 0");
    cr_assert_eq(kiln_get_flat(y, 0), 1.0);
    kiln_data_free(d);
    kiln_tab_procs_free(pr);
    /* a bad validation file: the error names it */
    char *bpath = write_tmp("c,x,y\na,1.0\n");
    cr_assert_null(kiln_tabular_data_open(path, bpath, &p, &pr, NULL));
    ku_expect_error(bpath, "a ragged validation file");
    cr_assert_null(pr);
    unlink(path), unlink(vpath), unlink(bpath);
    free(path), free(vpath), free(bpath);
    ku_ctx_free(ctx);
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

Test(tabular_procs, median_matches_a_sort)
{
    /* selection (not a sort) finds the median: odd and even counts, many ties, a missing value */
    uint64_t rs = 99;
    for (int n = 2; n <= 41; n++) {
        char *csv = malloc((size_t)n * 32 + 32);
        double v[64];
        size_t len = (size_t)sprintf(csv, "x,y\n");
        int np = 0;
        for (int i = 0; i < n; i++) {
            rs = rs * 6364136223846793005ull + 1442695040888963407ull;
            if (i == 3) {
                len += (size_t)sprintf(csv + len, ",%d\n", i);
                continue;
            }
            v[np] = (double)((rs >> 33) % (n % 3 ? 5 : 1000)) + 0.5;
            len += (size_t)sprintf(csv + len, "%.1f,%d\n", v[np++], i);
        }
        kiln_table *t = tab(csv);
        kiln_tab_params p = kiln_tab_default_params();
        p.target = "y";
        kiln_tab_procs *pr = learn(t, &p);
        qsort(v, (size_t)np, sizeof *v, cmp_d);
        double want = np % 2 ? v[np / 2] : 0.5 * (v[np / 2 - 1] + v[np / 2]), got;
        kiln_tab_procs_cont_stats(pr, 0, &got, NULL, NULL);
        cr_assert_eq(got, want, "n %d: median %g, want %g", np, got, want);
        kiln_tab_procs_free(pr);
        kiln_table_free(t);
        free(csv);
    }
}

Test(tabular_bad, values_beyond_range)
{
    kiln_tab_params p = kiln_tab_default_params();
    p.target = "y";
    kiln_table *t = tab("x,y\n1e308,1\n-1e308,2\n");
    cr_assert_null(kiln_tab_procs_learn(t, &p));
    ku_expect_error("\"x\"", "a continuous column spanning more than a double");
    kiln_table_free(t);
    t = tab("x,y\n1e200,1\n-1e200,2\n3,3\n");
    kiln_tab_procs *pr = learn(t, &p); /* squares above 1e308: the std is still right */
    double sd;
    kiln_tab_procs_cont_stats(pr, 0, NULL, NULL, &sd);
    expect_near(sd, 1e200 * sqrt(2.0 / 3.0), 1e-12, "std of huge values");
    kiln_tab_rows r;
    cr_assert_eq(kiln_tab_procs_apply(pr, t, true, &r), KILN_STATUS_OK);
    cr_assert(isfinite(r.x[0]) && isfinite(r.x[1]));
    kiln_tab_rows_free(&r);
    kiln_tab_procs_free(pr);
    kiln_table_free(t);
    t = tab("x,y\n1,1\n2,1e39\n");
    cr_assert_null(kiln_tab_procs_learn(t, &p));
    ku_expect_error("line 3", "a regression target beyond a float");
    kiln_table_free(t);
}

/* ---- against pandas (tests/fixtures/gen_tabular_data.py) ---- */

Test(tabular_pandas, kinds_categories_and_statistics)
{
    char *text = ku_slurp(KILN_FIXTURE_DIR "/tabular_data.json");
    cr_assert(text, "tests/fixtures/tabular_data.json is missing");
    cJSON *js = cJSON_Parse(text);
    free(text);
    cr_assert(js, "tabular_data.json does not parse");
    const char *csv = cJSON_GetObjectItem(js, "csv")->valuestring;
    kiln_table *t = tab(csv);
    kiln_tab_params p = kiln_tab_default_params();
    p.target = cJSON_GetObjectItem(js, "target")->valuestring;
    p.date = (const char *const[]){"saledate", NULL}; /* listdate is found on its own */
    kiln_tab_procs *pr = learn(t, &p);
    cr_assert_eq(!kiln_tab_procs_is_classification(pr), cJSON_IsTrue(cJSON_GetObjectItem(js, "regression")));
    const cJSON *cats = cJSON_GetObjectItem(js, "cat"), *conts = cJSON_GetObjectItem(js, "cont");
    cr_assert_eq(kiln_tab_procs_n_cat(pr), cJSON_GetArraySize(cats), "categorical columns: %d, pandas %d",
                 kiln_tab_procs_n_cat(pr), cJSON_GetArraySize(cats));
    cr_assert_eq(kiln_tab_procs_n_cont(pr), cJSON_GetArraySize(conts), "continuous columns: %d, pandas %d",
                 kiln_tab_procs_n_cont(pr), cJSON_GetArraySize(conts));
    for (const cJSON *c = cats->child; c; c = c->next) {
        int k = cat_index(pr, c->string);
        cr_assert(k >= 0, "pandas' categorical column %s is not categorical here", c->string);
        cr_assert_eq(kiln_tab_procs_cardinality(pr, k), cJSON_GetArraySize(c), "%s: %lld categories, pandas %d",
                     c->string, (long long)kiln_tab_procs_cardinality(pr, k), cJSON_GetArraySize(c));
        int64_t code = 0;
        for (const cJSON *v = c->child; v; v = v->next, code++)
            cr_assert_str_eq(kiln_tab_procs_category(pr, k, code), v->valuestring, "%s code %lld", c->string,
                             (long long)code);
    }
    for (const cJSON *c = conts->child; c; c = c->next) {
        int k = cont_index(pr, c->string);
        cr_assert(k >= 0, "pandas' continuous column %s is not continuous here", c->string);
        double med, mean, sd;
        kiln_tab_procs_cont_stats(pr, k, &med, &mean, &sd);
        char what[128];
        snprintf(what, sizeof what, "%s median", c->string);
        expect_near(med, cJSON_GetObjectItem(c, "median")->valuedouble, 1e-12, what);
        snprintf(what, sizeof what, "%s mean", c->string);
        expect_near(mean, cJSON_GetObjectItem(c, "mean")->valuedouble, 1e-9, what);
        snprintf(what, sizeof what, "%s std", c->string);
        expect_near(sd, cJSON_GetObjectItem(c, "std")->valuedouble, 1e-9, what);
        cr_assert_eq(kiln_tab_procs_has_na_col(pr, k), cJSON_IsTrue(cJSON_GetObjectItem(c, "na")), "%s _na", c->string);
    }
    kiln_tab_procs_free(pr);
    kiln_table_free(t);
    cJSON_Delete(js);
}

Test(tabular_bad, date_at_apply)
{
    kiln_table *t = tab("d,y\n2020-01-01,1\n2020-02-03,2\n");
    kiln_tab_params p = kiln_tab_default_params();
    p.target = "y";
    kiln_tab_procs *pr = learn(t, &p);
    kiln_table *v = tab("d,y\n2020-01-05,1\nlater,2\n");
    kiln_tab_rows r;
    cr_assert_neq(kiln_tab_procs_apply(pr, v, true, &r), KILN_STATUS_OK);
    ku_expect_error("line 3", "a date column holding text at apply");
    ku_expect_error("\"later\"", "names the value");
    kiln_table_free(v);
    /* an unseen year: code 0; a missing date where training had none: Elapsed has no _na */
    v = tab("d,y\n2031-01-05,1\n");
    cr_assert_eq(kiln_tab_procs_apply(pr, v, true, &r), KILN_STATUS_OK, "%s", kiln_last_error());
    int k = cat_index(pr, "dYear");
    cr_assert(k >= 0);
    cr_assert_eq(r.x[k], 0.0f);
    kiln_tab_rows_free(&r);
    kiln_table_free(v);
    v = tab("d,y\n,1\n");
    cr_assert_neq(kiln_tab_procs_apply(pr, v, true, &r), KILN_STATUS_OK);
    ku_expect_error("\"dElapsed\"", "a missing date where training had none");
    kiln_table_free(v);
    kiln_tab_procs_free(pr);
    kiln_table_free(t);
}

Test(tabular_procs, large_max_card)
{
    /* 70 distinct integers: categorical under max_card 100, continuous under 69 */
    char *csv = malloc(140 * 16 + 32);
    size_t n = (size_t)sprintf(csv, "k,y\n");
    for (int i = 0; i < 140; i++) n += (size_t)sprintf(csv + n, "%d,%d\n", i % 70, i);
    kiln_table *t = tab(csv);
    free(csv);
    kiln_tab_params p = kiln_tab_default_params();
    p.target = "y";
    p.max_card = 100;
    kiln_tab_procs *pr = learn(t, &p);
    cr_assert_eq(kiln_tab_procs_n_cat(pr), 1, "70 <= 100: categorical");
    cr_assert_eq(kiln_tab_procs_cardinality(pr, 0), 71);
    kiln_tab_procs_free(pr);
    p.max_card = 70;
    pr = learn(t, &p);
    cr_assert_eq(kiln_tab_procs_n_cat(pr), 1, "70 <= 70: categorical");
    kiln_tab_procs_free(pr);
    p.max_card = 69;
    pr = learn(t, &p);
    cr_assert_eq(kiln_tab_procs_n_cont(pr), 1, "70 > 69: continuous");
    kiln_tab_procs_free(pr);
    kiln_table_free(t);
}
