/* The resampling kernels behind kiln_augment_apply (see augment_internal.h):
 *   - an antialiased bilinear resize of a box, PIL's ImagingResample with a box, which is
 *     also what torch's F.interpolate(mode='bilinear', antialias=True) computes;
 *   - a window copy with 'reflect' padding (random crop with padding);
 *   - grid_sample(bilinear, reflection, align_corners=True) over a projective grid;
 *   - fastai's lighting on logits.
 * Each is a plain loop; the work per item is small next to a network's forward pass. */
#include "data/vision/augment_internal.h"

#include "core/internal.h"

#include <math.h>
#include <string.h>

/* ---- antialiased resize ----------------------------------------------------------------- */

/* Filter windows of one axis: out index i reads in[start[i] .. start[i] + len[i]) with
 * weights wt[i * k ..]. */
typedef struct axis_w {
    int *start, *len;
    double *wt;
    int k;
} axis_w;

static double tri(double x)
{
    x = fabs(x);
    return x < 1.0 ? 1.0 - x : 0.0;
}

/* PIL's precompute_coeffs, with the frame [lo, hi) in which the window is clamped. */
static void axis_fill(axis_w *a, double b0, double b1, int lo, int hi, int out)
{
    double scale = (b1 - b0) / out;
    double support = scale >= 1.0 ? scale : 1.0, invs = scale >= 1.0 ? 1.0 / scale : 1.0;
    for (int i = 0; i < out; i++) {
        double center = (b0 - lo) + (i + 0.5) * scale; /* in the frame, like a cropped image */
        int xmin = (int)(center - support + 0.5), xmax = (int)(center + support + 0.5);
        xmin = xmin < 0 ? 0 : xmin;
        xmax = xmax > hi - lo ? hi - lo : xmax;
        int n = xmax - xmin;
        n = n > a->k ? a->k : n;
        double *w = a->wt + (size_t)i * a->k, total = 0;
        for (int j = 0; j < n; j++) {
            w[j] = tri((j + xmin - center + 0.5) * invs);
            total += w[j];
        }
        for (int j = 0; j < n; j++)
            w[j] = total > 0 ? w[j] / total : 0;
        a->start[i] = lo + xmin;
        a->len[i] = n;
    }
}

static int axis_k(double b0, double b1, int out)
{
    double scale = (b1 - b0) / out, support = scale >= 1.0 ? scale : 1.0;
    return (int)ceil(support) * 2 + 1;
}

kiln_status kiln__aug_resize_box(const float *src, int c, int h, int w, const double box[4], bool clamp_box,
                                 float *dst, int oh, int ow)
{
    int xlo = 0, xhi = w, ylo = 0, yhi = h;
    if (clamp_box) {
        xlo = (int)floor(box[0]), xhi = (int)ceil(box[2]);
        ylo = (int)floor(box[1]), yhi = (int)ceil(box[3]);
        xlo = xlo < 0 ? 0 : xlo, ylo = ylo < 0 ? 0 : ylo;
        xhi = xhi > w ? w : xhi, yhi = yhi > h ? h : yhi;
    }
    axis_w ax = {.k = axis_k(box[0], box[2], ow)}, ay = {.k = axis_k(box[1], box[3], oh)};
    size_t ints = 2 * (size_t)(ow + oh) * sizeof(int);
    size_t dbls = ((size_t)ow * ax.k + (size_t)oh * ay.k) * sizeof(double);
    unsigned char *mem = kiln__malloc(ints + dbls);
    if (!mem)
        return kiln__err(KILN_STATUS_NOMEM, "augment: out of memory for resize weights");
    ax.wt = (double *)mem;
    ay.wt = ax.wt + (size_t)ow * ax.k;
    ax.start = (int *)(mem + dbls);
    ax.len = ax.start + ow;
    ay.start = ax.len + ow;
    ay.len = ay.start + oh;
    axis_fill(&ax, box[0], box[2], xlo, xhi, ow);
    axis_fill(&ay, box[1], box[3], ylo, yhi, oh);

    /* rows of src that the vertical windows touch */
    int r0 = h, r1 = 0;
    for (int i = 0; i < oh; i++) {
        r0 = ay.start[i] < r0 ? ay.start[i] : r0;
        r1 = ay.start[i] + ay.len[i] > r1 ? ay.start[i] + ay.len[i] : r1;
    }
    if (r1 <= r0)
        r1 = r0 + 1;
    size_t tbytes = (size_t)c * (r1 - r0) * ow * sizeof(float);
    float *tmp = kiln__malloc(tbytes); /* (c, r1 - r0, ow): horizontal pass */
    if (!tmp) {
        kiln__free(mem, ints + dbls);
        return kiln__err(KILN_STATUS_NOMEM, "augment: out of memory for a %dx%d resize", oh, ow);
    }
    for (int ch = 0; ch < c; ch++)
        for (int r = r0; r < r1; r++) {
            const float *in = src + ((size_t)ch * h + r) * w;
            float *o = tmp + ((size_t)ch * (r1 - r0) + (r - r0)) * ow;
            for (int j = 0; j < ow; j++) {
                const double *wt = ax.wt + (size_t)j * ax.k;
                const float *p = in + ax.start[j];
                double s = 0;
                for (int t = 0; t < ax.len[j]; t++)
                    s += wt[t] * p[t];
                o[j] = (float)s;
            }
        }
    for (int ch = 0; ch < c; ch++)
        for (int i = 0; i < oh; i++) {
            const double *wt = ay.wt + (size_t)i * ay.k;
            float *o = dst + ((size_t)ch * oh + i) * ow;
            const float *base = tmp + ((size_t)ch * (r1 - r0) + (ay.start[i] - r0)) * ow;
            for (int j = 0; j < ow; j++) {
                double s = 0;
                for (int t = 0; t < ay.len[i]; t++)
                    s += wt[t] * base[(size_t)t * ow + j];
                o[j] = (float)s;
            }
        }
    kiln__free(tmp, tbytes);
    kiln__free(mem, ints + dbls);
    return KILN_STATUS_OK;
}

/* ---- window copy with reflect padding ----------------------------------------------------- */

/* torch 'reflect' (edge not repeated), for any distance outside [0, n). */
static int reflect_index(int i, int n)
{
    if (n == 1)
        return 0;
    int period = 2 * (n - 1);
    i %= period;
    if (i < 0)
        i += period;
    return i >= n ? period - i : i;
}

void kiln__aug_pad_copy(const float *src, int c, int h, int w, int x0, int y0, float *dst, int oh, int ow)
{
    for (int ch = 0; ch < c; ch++)
        for (int i = 0; i < oh; i++) {
            const float *row = src + ((size_t)ch * h + reflect_index(y0 + i, h)) * w;
            float *o = dst + ((size_t)ch * oh + i) * ow;
            if (x0 >= 0 && x0 + ow <= w) {
                memcpy(o, row + x0, (size_t)ow * sizeof *o);
                continue;
            }
            for (int j = 0; j < ow; j++)
                o[j] = row[reflect_index(x0 + j, w)];
        }
}

/* ---- projective grid_sample ----------------------------------------------------------------- */

/* torch's reflect_coordinates(x, 0, 2 (n - 1)) then clip_coordinates (align_corners=True). */
static double reflect_coord(double x, int n)
{
    if (n <= 1 || !isfinite(x))
        return 0;
    double span = n - 1;
    if (x >= 0 && x <= span)
        return x; /* inside: the common case */
    x = fabs(x);
    double extra = fmod(x, span);
    double flips = floor(x / span);
    x = fmod(flips, 2.0) == 0 ? extra : span - extra;
    return x < 0 ? 0 : (x > span ? span : x);
}

/* linspace(-1, 1, n)[i] as torch computes it (from the nearer end). */
static double grid_coord(int i, int n)
{
    if (n <= 1)
        return -1.0;
    double step = 2.0 / (n - 1);
    return i < n / 2 ? -1.0 + step * i : 1.0 - step * (n - 1 - i);
}

void kiln__aug_warp(const float *src, int c, int h, int w, const double m[9], const double fallback[9],
                    float *dst)
{
    size_t plane = (size_t)h * w;
    for (int i = 0; i < h; i++) {
        double gy = grid_coord(i, h);
        for (int j = 0; j < w; j++) {
            double gx = grid_coord(j, w);
            const double *t = m;
            double z = t[6] * gx + t[7] * gy + t[8];
            if (z == 0 && fallback)
                t = fallback, z = t[6] * gx + t[7] * gy + t[8];
            if (z == 0)
                z = 1;
            double u = (t[0] * gx + t[1] * gy + t[2]) / z, v = (t[3] * gx + t[4] * gy + t[5]) / z;
            double ix = reflect_coord((u + 1) / 2 * (w - 1), w), iy = reflect_coord((v + 1) / 2 * (h - 1), h);
            int x0 = (int)floor(ix), y0 = (int)floor(iy);
            double fx = ix - x0, fy = iy - y0;
            bool has_x1 = x0 + 1 < w, has_y1 = y0 + 1 < h;
            double w00 = (1 - fx) * (1 - fy), w01 = fx * (1 - fy), w10 = (1 - fx) * fy, w11 = fx * fy;
            size_t o00 = (size_t)y0 * w + x0;
            for (int ch = 0; ch < c; ch++) {
                const float *p = src + ch * plane + o00;
                double s = w00 * p[0];
                if (has_x1)
                    s += w01 * p[1];
                if (has_y1) {
                    s += w10 * p[w];
                    if (has_x1)
                        s += w11 * p[w + 1];
                }
                dst[ch * plane + (size_t)i * w + j] = (float)s;
            }
        }
    }
}

/* ---- lighting ---------------------------------------------------------------------------------- */

static float logit_clamped(float x)
{
    const float lo = 1e-7f, hi = 1.0f - 1e-7f;
    x = x < lo ? lo : (x > hi ? hi : x);
    return -logf(1.0f / x - 1.0f);
}

void kiln__aug_lighting(float *x, size_t n, float brightness, float contrast)
{
    float shift = logit_clamped(brightness);
    for (size_t i = 0; i < n; i++) {
        float l = (logit_clamped(x[i]) + shift) * contrast;
        x[i] = 1.0f / (1.0f + expf(-l));
    }
}
