/* The CSV reader (src/io/csv.c): RFC 4180 records from a buffer and from a file (read in
 * 1 MiB chunks: a generated file of a few MiB, its fields crossing chunk ends, must give the
 * same records as the same bytes from a buffer), empty versus missing fields, the header, and
 * the errors with their line numbers. */
#include <criterion/criterion.h>

#include "kiln.h"
#include "util/ku.h"
#include "util/ku_cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Reads every record of s into "f1|f2\n" lines (quoted fields as [f]); fails the test on error. */
static char *dump(const char *s, size_t n, const kiln_csv_params *p)
{
    kiln_csv *c;
    cr_assert_eq(kiln_csv_open_buffer("t.csv", s, n, p, &c), KILN_STATUS_OK, "%s", kiln_last_error());
    size_t cap = 4 * n + 64, len = 0;
    char *out = calloc(cap, 1);
    bool more;
    kiln_status st;
    while (!(st = kiln_csv_next(c, &more)) && more) {
        for (int j = 0; j < kiln_csv_n_fields(c); j++) {
            const char *f = kiln_csv_field(c, j);
            bool q = kiln_csv_field_quoted(c, j);
            len += (size_t)snprintf(out + len, cap - len, "%s%s%s%s", j ? "|" : "", q ? "[" : "", f, q ? "]" : "");
        }
        len += (size_t)snprintf(out + len, cap - len, "@%lld\n", (long long)kiln_csv_line(c));
    }
    cr_assert_eq(st, KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_csv_close(c);
    return out;
}

static kiln_csv_params no_header(void)
{
    kiln_csv_params p = kiln_csv_default_params();
    p.header = false;
    return p;
}

static void expect_records(const char *in, const char *want)
{
    kiln_csv_params p = no_header();
    char *got = dump(in, strlen(in), &p);
    cr_expect_str_eq(got, want, "input <%s>", in);
    free(got);
}

Test(csv, rfc4180_fields)
{
    expect_records("a,b,c\n1,2,3\n", "a|b|c@1\n1|2|3@2\n");
    expect_records("a,b\r\n1,2\r\n", "a|b@1\n1|2@2\n");          /* CRLF */
    expect_records("a,b\r1,2", "a|b@1\n1|2@2\n");                /* CR, no final line break */
    expect_records("\"x,y\",z\n", "[x,y]|z@1\n");                /* a separator in quotes */
    expect_records("\"say \"\"hi\"\"\",2\n", "[say \"hi\"]|2@1\n"); /* doubled quotes */
    expect_records("\"\"\"\"\n", "[\"]@1\n");
    expect_records("\"two\nlines\",b\nc,d\n", "[two\nlines]|b@1\nc|d@3\n"); /* a line break in quotes */
    expect_records("\"a\r\nb\",c\r\nd,e\r\n", "[a\r\nb]|c@1\nd|e@3\n");
    expect_records("a,\"\",\n", "a|[]|@1\n");                    /* quoted empty and empty */
    expect_records(",\n", "|@1\n");
    expect_records("a,b,", "a|b|@1\n");                          /* a trailing separator at the end */
    expect_records("\n\na\n\n\nb\n", "a@3\nb@6\n");              /* empty lines are skipped */
    expect_records("\"\"\n", "[]@1\n");                          /* ... but "" is a record */
    expect_records("\xEF\xBB\xBFx,y\n", "x|y@1\n");              /* UTF-8 BOM */
    expect_records("a\"b,c\n", "a\"b|c@1\n");                    /* a quote inside an unquoted field */
    expect_records("", "");
    expect_records("\n", "");
}

Test(csv, other_separator)
{
    kiln_csv_params p = no_header();
    p.sep = '\t';
    const char *in = "a\tb,c\t\"d\te\"\n";
    char *got = dump(in, strlen(in), &p);
    cr_expect_str_eq(got, "a|b,c|[d\te]@1\n");
    free(got);
    p.sep = '"';
    kiln_csv *c;
    cr_expect_eq(kiln_csv_open_buffer("q.csv", "a", 1, &p, &c), KILN_STATUS_INVALID);
    ku_expect_error("separator", "a quote as separator");
}

Test(csv, header_and_columns)
{
    const char *s = "name,label,is_valid\na.png,cat,1\n";
    kiln_csv *c;
    cr_assert_eq(kiln_csv_open_buffer("h.csv", s, strlen(s), NULL, &c), KILN_STATUS_OK);
    cr_expect_eq(kiln_csv_n_cols(c), 3);
    cr_expect_str_eq(kiln_csv_col_name(c, 1), "label");
    cr_expect_null(kiln_csv_col_name(c, 3));
    cr_expect_eq(kiln_csv_col(c, "is_valid"), 2);
    cr_expect_eq(kiln_csv_col(c, "nope"), -1);
    cr_expect_eq(kiln_csv_n_records(c), 0, "the header is not a record");
    bool more;
    cr_assert_eq(kiln_csv_next(c, &more), KILN_STATUS_OK);
    cr_assert(more);
    cr_expect_str_eq(kiln_csv_field(c, kiln_csv_col(c, "label")), "cat");
    cr_expect_eq(kiln_csv_line(c), 2);
    cr_assert_eq(kiln_csv_next(c, &more), KILN_STATUS_OK);
    cr_expect(!more);
    cr_expect_eq(kiln_csv_n_records(c), 1);
    cr_assert_eq(kiln_csv_next(c, &more), KILN_STATUS_OK, "reading past the end stays at the end");
    cr_expect(!more);
    kiln_csv_close(c);
}

Test(csv, empty_is_not_missing)
{
    kiln_csv_params p = kiln_csv_default_params();
    p.ragged = true;
    const char *s = "a,b,c\n1,,\n2\n";
    kiln_csv *c;
    cr_assert_eq(kiln_csv_open_buffer("r.csv", s, strlen(s), &p, &c), KILN_STATUS_OK);
    bool more;
    cr_assert_eq(kiln_csv_next(c, &more), KILN_STATUS_OK);
    cr_expect_eq(kiln_csv_n_fields(c), 3);
    cr_expect_str_eq(kiln_csv_field(c, 2), "", "an empty field is there, empty");
    cr_assert_eq(kiln_csv_next(c, &more), KILN_STATUS_OK);
    cr_expect_eq(kiln_csv_n_fields(c), 1);
    cr_expect_null(kiln_csv_field(c, 2), "a missing field is NULL");
    cr_expect_null(kiln_csv_field(c, -1));
    cr_expect_eq(kiln_csv_field_len(c, 2), 0);
    kiln_csv_close(c);
}

Test(csv, nul_bytes_keep_their_length)
{
    kiln_csv_params p = no_header();
    kiln_csv *c;
    cr_assert_eq(kiln_csv_open_buffer("z.csv", "a\0b,c\n", 6, &p, &c), KILN_STATUS_OK);
    bool more;
    cr_assert_eq(kiln_csv_next(c, &more), KILN_STATUS_OK);
    cr_expect_eq(kiln_csv_field_len(c, 0), 3);
    cr_expect_eq(memcmp(kiln_csv_field(c, 0), "a\0b", 4), 0);
    kiln_csv_close(c);
}

/* The first record's error: status and a message holding each needle. */
static void expect_error(const char *in, const kiln_csv_params *p, kiln_status want, const char *n1, const char *n2)
{
    kiln_csv *c = NULL;
    kiln_status st = kiln_csv_open_buffer("bad.csv", in, strlen(in), p, &c);
    bool more = true;
    while (!st && more) st = kiln_csv_next(c, &more);
    cr_expect_eq(st, want, "input <%s>: status %d, message %s", in, st, kiln_last_error());
    cr_expect(strstr(kiln_last_error(), n1) && strstr(kiln_last_error(), n2), "input <%s>: message '%s' lacks '%s' '%s'",
              in, kiln_last_error(), n1, n2);
    if (c) { /* the error sticks */
        cr_expect_eq(kiln_csv_next(c, &more), want);
        cr_expect(!more);
    }
    kiln_csv_close(c);
}

Test(csv, errors_name_file_and_line)
{
    kiln_csv_params p = kiln_csv_default_params();
    expect_error("a,b\n1,2\n\n1,2,3\n", &p, KILN_STATUS_FORMAT, "bad.csv:4:", "3 fields, the header has 2");
    expect_error("a,b\n1\n", &p, KILN_STATUS_FORMAT, "bad.csv:2:", "1 fields");
    expect_error("a,b\n1,\"open\nx\ny\n", &p, KILN_STATUS_FORMAT, "bad.csv:2:", "unterminated quote");
    expect_error("a,b\n\"x\"y,2\n", &p, KILN_STATUS_FORMAT, "bad.csv:2:", "text after a closing quote");
    expect_error("a,b\n\"x\ny\"z,2\n", &p, KILN_STATUS_FORMAT, "bad.csv:3:", "text after a closing quote");
    expect_error("", &p, KILN_STATUS_FORMAT, "bad.csv", "no header row");
    expect_error("\n\r\n", &p, KILN_STATUS_FORMAT, "bad.csv", "no header row");
    kiln_csv_params q = no_header();
    expect_error("1,2\n3\n", &q, KILN_STATUS_FORMAT, "bad.csv:2:", "the first record has 2");
    q.max_fields = 3;
    expect_error("1,2,3\n1,2,3,4\n", &q, KILN_STATUS_FORMAT, "bad.csv:2:", "more than 3 fields");
    q.max_fields = 0;
    q.max_record_bytes = 8;
    expect_error("1,2\n\"12345\n6789\"\n", &q, KILN_STATUS_FORMAT, "bad.csv:2:", "longer than 8 bytes");
}

Test(csv, missing_file_is_named)
{
    kiln_csv *c = (kiln_csv *)1;
    cr_expect_eq(kiln_csv_open("/nonexistent/x.csv", NULL, &c), KILN_STATUS_IO);
    cr_expect_null(c);
    ku_expect_error("/nonexistent/x.csv", "a missing file");
}

/* A few MiB of random records (quoted and plain fields, CRLF and LF, line breaks and quotes
 * in fields): the file reader's chunks must not change a record. */
Test(csv, file_matches_buffer_across_chunks)
{
    uint64_t rs = 12345;
    size_t cap = 5u << 20, n = 0;
    char *s = malloc(cap + 256);
    const char *pieces[] = {"abc", "\"q,\"\"x\"\"\"", "\"l1\nl2\"", "", "12.5", "\"\"", "\"a\r\nb\""};
    while (n < cap) {
        for (int j = 0; j < 4; j++) {
            rs = rs * 6364136223846793005ull + 1442695040888963407ull;
            n += (size_t)sprintf(s + n, "%s%s", j ? "," : "", pieces[(rs >> 33) % 7]);
        }
        n += (size_t)sprintf(s + n, "%s", (rs >> 20) & 1 ? "\r\n" : "\n");
    }
    char path[] = "/tmp/kiln_csv_XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    ku_write_bytes(path, s, n);
    kiln_csv_params p = no_header();
    kiln_csv *a, *b;
    cr_assert_eq(kiln_csv_open(path, &p, &a), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert_eq(kiln_csv_open_buffer("buf", s, n, &p, &b), KILN_STATUS_OK);
    bool ma = true, mb = true;
    int64_t records = 0;
    while (ma && mb) {
        cr_assert_eq(kiln_csv_next(a, &ma), KILN_STATUS_OK, "%s", kiln_last_error());
        cr_assert_eq(kiln_csv_next(b, &mb), KILN_STATUS_OK);
        cr_assert_eq(ma, mb);
        if (!ma) break;
        records++;
        cr_assert_eq(kiln_csv_line(a), kiln_csv_line(b));
        cr_assert_eq(kiln_csv_n_fields(a), 4);
        for (int j = 0; j < 4; j++) {
            cr_assert_eq(kiln_csv_field_len(a, j), kiln_csv_field_len(b, j));
            cr_assert_eq(memcmp(kiln_csv_field(a, j), kiln_csv_field(b, j), kiln_csv_field_len(a, j) + 1), 0,
                         "record %lld field %d", (long long)records, j);
            cr_assert_eq(kiln_csv_field_quoted(a, j), kiln_csv_field_quoted(b, j));
        }
    }
    cr_expect_gt(records, 100000);
    kiln_csv_close(a);
    kiln_csv_close(b);
    unlink(path);
    free(s);
}
