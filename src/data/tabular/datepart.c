/* fastai's add_datepart: a date read as YYYY-MM-DD[ T]HH:MM[:SS] (a naive time, taken as UTC
 * as pandas does) and the thirteen parts fastai adds for it: Year Month Week (ISO 8601)
 * Day Dayofweek (Monday = 0) Dayofyear Is_month_end Is_month_start Is_quarter_end
 * Is_quarter_start Is_year_end Is_year_start Elapsed (seconds since 1970-01-01 00:00 UTC,
 * floor(ns / 1e9) as fastai computes it). Calendar arithmetic: the proleptic Gregorian
 * calendar, days from civil after H. Hinnant. */
#include "data/tabular/tab_internal.h"

#include <string.h>

static const char *const part_names[KILN_TAB_N_PARTS] = {
    "Year", "Month", "Week", "Day", "Dayofweek", "Dayofyear", "Is_month_end", "Is_month_start",
    "Is_quarter_end", "Is_quarter_start", "Is_year_end", "Is_year_start", "Elapsed"};

enum { P_YEAR, P_MONTH, P_WEEK, P_DAY, P_DOW, P_DOY, P_ME, P_MS, P_QE, P_QS, P_YE, P_YS, P_ELAPSED };

const char *kiln__tab_part_name(int part)
{
    return part >= 0 && part < KILN_TAB_N_PARTS ? part_names[part] : NULL;
}

int kiln__tab_part_index(const char *name)
{
    for (int k = 0; name && k < KILN_TAB_N_PARTS; k++)
        if (!strcmp(part_names[k], name)) return k;
    return -1;
}

bool kiln__tab_part_is_bool(int part) { return part >= P_ME && part <= P_YS; }

static bool leap(int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

static int month_days(int64_t y, int m)
{
    static const int d[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && leap(y) ? 29 : d[m - 1];
}

static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int day_of_year(int64_t y, int m, int d) { return (int)(days_from_civil(y, m, d) - days_from_civil(y, 1, 1)) + 1; }

/* n digits at s as a number; -1 when one is not a digit. */
static int digits(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

bool kiln__tab_parse_date(const char *s, kiln__tab_date *d)
{
    if (!s) return false;
    size_t n = strlen(s);
    if (n < 10 || s[4] != '-' || s[7] != '-') return false;
    int y = digits(s, 4), m = digits(s + 5, 2), dd = digits(s + 8, 2), hh = 0, mi = 0, ss = 0;
    if (y < 0 || m < 1 || m > 12 || dd < 1 || dd > month_days(y, m)) return false;
    if (n > 10) {
        if ((s[10] != ' ' && s[10] != 'T') || (n != 16 && n != 19) || s[13] != ':') return false;
        hh = digits(s + 11, 2), mi = digits(s + 14, 2);
        if (n == 19) {
            if (s[16] != ':') return false;
            ss = digits(s + 17, 2);
        }
        if (hh < 0 || hh > 23 || mi < 0 || mi > 59 || ss < 0 || ss > 59) return false;
    }
    d->year = y, d->month = m, d->day = dd, d->hour = hh, d->minute = mi, d->second = ss;
    d->days = days_from_civil(y, m, dd);
    return true;
}

/* ISO 8601 week: the week (Monday first) holding the year's first Thursday is week 1. */
static int iso_week(const kiln__tab_date *d)
{
    int64_t dow = ((d->days % 7) + 7 + 3) % 7; /* 1970-01-01 was a Thursday (3) */
    int64_t thu = d->days - dow + 3;
    /* the Thursday's year: its civil year */
    int64_t y = d->year + 1;
    while (days_from_civil(y, 1, 1) > thu) y--;
    return (int)((thu - days_from_civil(y, 1, 1)) / 7) + 1;
}

double kiln__tab_part_value(const kiln__tab_date *d, int part)
{
    int dim = month_days(d->year, d->month);
    switch (part) {
    case P_YEAR: return d->year;
    case P_MONTH: return d->month;
    case P_WEEK: return iso_week(d);
    case P_DAY: return d->day;
    case P_DOW: return (double)(((d->days % 7) + 7 + 3) % 7);
    case P_DOY: return day_of_year(d->year, d->month, d->day);
    case P_ME: return d->day == dim;
    case P_MS: return d->day == 1;
    case P_QE: return d->month % 3 == 0 && d->day == dim;
    case P_QS: return d->month % 3 == 1 && d->day == 1;
    case P_YE: return d->month == 12 && d->day == 31;
    case P_YS: return d->month == 1 && d->day == 1;
    case P_ELAPSED: return (double)(d->days * 86400 + d->hour * 3600 + d->minute * 60 + d->second);
    default: return 0;
    }
}
