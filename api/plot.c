/*
 * plot.c - a clean, labelled SVG plot of a job's training and validation loss against step.
 * Plain string building: axes with rounded ticks, two polylines (validation as points joined when
 * measured), a legend. No dependencies.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fine_tuning.h"
#include "hlpt/err.h"

typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void put(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(sbuf *b, const char *fmt, ...) {
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) return;
        if (b->p && b->n + (size_t)k < b->cap) {
            b->n += (size_t)k;
            return;
        }
        size_t cap = (b->cap + (size_t)k + 1) * 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

/* A "nice" tick step for a range split in about n parts. */
static double nice_step(double range, int n) {
    double raw = range / n, mag = pow(10, floor(log10(raw))), f = raw / mag;
    return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
}

int hlptd_api_loss_svg(const char *title, const hlptd_metric *rows, size_t n, char **svg, size_t *len) {
    const double W = 720, H = 420, L = 70, R = 20, T = 50, B = 60;
    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        double v[2] = {rows[i].train_loss, rows[i].valid_loss};
        for (int k = 0; k < 2; k++) {
            if (!isfinite(v[k])) continue;
            xmin = fmin(xmin, (double)rows[i].step);
            xmax = fmax(xmax, (double)rows[i].step);
            ymin = fmin(ymin, v[k]);
            ymax = fmax(ymax, v[k]);
        }
    }
    int empty = !isfinite(xmin);
    if (empty) xmin = 0, xmax = 1, ymin = 0, ymax = 1;
    if (xmax <= xmin) xmax = xmin + 1;
    if (ymax <= ymin) ymax = ymin + 1;
    double ys = nice_step(ymax - ymin, 5), xs = nice_step(xmax - xmin, 8);
    ymin = floor(ymin / ys) * ys;
    ymax = ceil(ymax / ys) * ys;
    xmin = floor(xmin / xs) * xs;
    xmax = ceil(xmax / xs) * xs;
#define PX(x) (L + ((x) - xmin) / (xmax - xmin) * (W - L - R))
#define PY(y) (H - B - ((y) - ymin) / (ymax - ymin) * (H - T - B))
    sbuf b = {0};
    put(&b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
            "font-family=\"sans-serif\" font-size=\"12\">\n", W, H, W, H);
    put(&b, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    put(&b, "<text x=\"%.0f\" y=\"28\" font-size=\"16\" text-anchor=\"middle\">Loss of %s</text>\n", W / 2, title ? title : "");
    for (double y = ymin; y <= ymax + ys / 2; y += ys) {
        put(&b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e5e5e5\"/>\n", L, PY(y), W - R, PY(y));
        put(&b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n", L - 6, PY(y) + 4, y);
    }
    for (double x = xmin; x <= xmax + xs / 2; x += xs)
        put(&b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%g</text>\n", PX(x), H - B + 18, x);
    put(&b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n", L, H - B, W - R, H - B);
    put(&b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n", L, T, L, H - B);
    put(&b, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">step</text>\n", (L + W - R) / 2, H - 18);
    put(&b, "<text x=\"18\" y=\"%.0f\" text-anchor=\"middle\" transform=\"rotate(-90 18 %.0f)\">cross-entropy loss</text>\n",
        (T + H - B) / 2, (T + H - B) / 2);
    const char *colors[2] = {"#1f77b4", "#d62728"}, *names[2] = {"train", "validation"};
    for (int k = 0; k < 2; k++) {
        int any = 0;
        put(&b, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"%s\" points=\"", colors[k], k ? "2" : "1.5");
        for (size_t i = 0; i < n; i++) {
            double v = k ? rows[i].valid_loss : rows[i].train_loss;
            if (!isfinite(v)) continue;
            put(&b, "%.1f,%.1f ", PX((double)rows[i].step), PY(v));
            any = 1;
        }
        put(&b, "\"/>\n");
        if (k == 1 && any)
            for (size_t i = 0; i < n; i++)
                if (isfinite(rows[i].valid_loss))
                    put(&b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", PX((double)rows[i].step),
                        PY(rows[i].valid_loss), colors[k]);
        put(&b, "<rect x=\"%.0f\" y=\"%.0f\" width=\"14\" height=\"3\" fill=\"%s\"/>"
                "<text x=\"%.0f\" y=\"%.0f\">%s</text>\n", W - R - 120, T + 6 + 16.0 * k, colors[k], W - R - 100,
            T + 11 + 16.0 * k, names[k]);
    }
    if (empty) put(&b, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\" fill=\"#888\">no metrics yet</text>\n", W / 2, H / 2);
    put(&b, "</svg>\n");
#undef PX
#undef PY
    if (b.oom) {
        free(b.p);
        return HLPT_ERR_NOMEM;
    }
    *svg = b.p;
    *len = b.n;
    return HLPT_OK;
}
