/* Bilinear resizing as PIL does it (Image.resize(BILINEAR), which torchvision's Resize calls on
 * PIL images): a separable triangle filter whose support widens with the downscale factor, so
 * shrinking averages every source pixel instead of skipping some (antialiasing). Rows first,
 * then columns, like PIL; in float, without PIL's rounding to u8 after each pass, so values
 * agree with PIL to within about 1/255. Only the kept (cropped) window is computed. */
#include "data/vision/vision_internal.h"

#include <math.h>
#include <string.h>

/* torchvision: the shorter side becomes size, the longer int(size * long / short); CenterCrop
 * puts the window at int(round((r - size) / 2)) with Python's round-half-to-even. */
void kiln__vision_geometry(int h, int w, int size, kiln_vision_resize mode, int *rh, int *rw, int *oy, int *ox)
{
    if (mode == KILN_VISION_RESIZE_SQUISH) {
        *rh = *rw = size;
    } else if (h <= w) {
        *rh = size;
        *rw = (int)((double)size * w / h);
    } else {
        *rw = size;
        *rh = (int)((double)size * h / w);
    }
    *oy = (int)nearbyint((*rh - size) / 2.0);
    *ox = (int)nearbyint((*rw - size) / 2.0);
}

static double tri(double x)
{
    if (x < 0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

/* Filter taps for out positions [o0, o0 + n) of a resize in -> out: tap j of position i reads
 * source first[i] + j with weight wt[i * k + j]; returns k (taps per position). PIL's
 * precompute_coeffs with the bilinear filter (support 1). */
static int coeffs(int in, int out, int o0, int n, int *first, int *count, float **wt)
{
    double scale = (double)in / out, fscale = scale > 1.0 ? scale : 1.0, support = fscale;
    int k = (int)ceil(support) * 2 + 1;
    float *w = calloc((size_t)n * k, sizeof *w);
    if (!w) return -1;
    for (int i = 0; i < n; i++) {
        double center = (o0 + i + 0.5) * scale, ss = 1.0 / fscale, sum = 0;
        int xmin = (int)(center - support + 0.5), xmax = (int)(center + support + 0.5);
        if (xmin < 0) xmin = 0;
        if (xmax > in) xmax = in;
        int m = xmax - xmin;
        if (m > k) m = k;
        double tmp[64], *t = m <= 64 ? tmp : malloc((size_t)m * sizeof *t);
        if (!t) {
            free(w);
            return -1;
        }
        for (int j = 0; j < m; j++) sum += t[j] = tri((j + xmin - center + 0.5) * ss);
        for (int j = 0; j < m; j++) w[(size_t)i * k + j] = (float)(sum != 0 ? t[j] / sum : 0);
        if (t != tmp) free(t);
        first[i] = xmin;
        count[i] = m;
    }
    *wt = w;
    return k;
}

kiln_status kiln__vision_resize(const float *src, int h, int w, int c, int size, kiln_vision_resize mode,
                                float *dst)
{
    if (h <= 0 || w <= 0 || size <= 0 || c <= 0)
        return kiln__err(KILN_STATUS_INVALID, "resize: bad sizes %dx%dx%d -> %d", h, w, c, size);
    int rh, rw, oy, ox;
    kiln__vision_geometry(h, w, size, mode, &rh, &rw, &oy, &ox);
    int *xf = malloc(sizeof(int) * 2 * size), *yf = malloc(sizeof(int) * 2 * size);
    float *xw = NULL, *yw = NULL;
    float *tmp = malloc((size_t)h * size * c * sizeof *tmp); /* (h, size, c): after the row pass */
    int kx = xf && yf && tmp ? coeffs(w, rw, ox, size, xf, xf + size, &xw) : -1;
    int ky = kx > 0 ? coeffs(h, rh, oy, size, yf, yf + size, &yw) : -1;
    if (kx < 0 || ky < 0) {
        free(xf), free(yf), free(xw), free(tmp);
        return kiln__err(KILN_STATUS_NOMEM, "resize: out of memory (%dx%d -> %d)", h, w, size);
    }
    /* rows: tmp[y, x, k] = sum_j xw[x, j] * src[y, xf[x] + j, k] */
    for (int y = 0; y < h; y++) {
        const float *row = src + (size_t)y * w * c;
        for (int x = 0; x < size; x++) {
            const float *wx = xw + (size_t)x * kx;
            for (int k = 0; k < c; k++) {
                float acc = 0;
                for (int j = 0; j < xf[size + x]; j++) acc += wx[j] * row[(size_t)(xf[x] + j) * c + k];
                tmp[((size_t)y * size + x) * c + k] = acc;
            }
        }
    }
    /* columns, written planar: dst[k, y, x] = sum_j yw[y, j] * tmp[yf[y] + j, x, k] */
    for (int y = 0; y < size; y++) {
        const float *wy = yw + (size_t)y * ky;
        for (int x = 0; x < size; x++)
            for (int k = 0; k < c; k++) {
                float acc = 0;
                for (int j = 0; j < yf[size + y]; j++) acc += wy[j] * tmp[((size_t)(yf[y] + j) * size + x) * c + k];
                dst[((size_t)k * size + y) * size + x] = acc;
            }
    }
    free(xf), free(yf), free(xw), free(yw), free(tmp);
    return KILN_STATUS_OK;
}
