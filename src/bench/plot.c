/* SVG by hand: a frame, ticks and grid lines on both axes, one polyline with markers per series,
 * a legend. The y axis turns logarithmic when the values span more than a factor of 30 (a tiny
 * model's prefill can be a hundred times its decode rate), so every series stays readable. */
#include "bench/plot.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WIDTH 720
#define HEIGHT 440
#define LEFT 80   /* room for the y tick labels and the axis title */
#define RIGHT 180 /* room for the legend */
#define TOP 40
#define BOTTOM 60

typedef struct axis {
    double lo, hi;
    bool log;
} axis;

static double axis_fraction(const axis *a, double v) {
    if (a->log) return (log10(v) - log10(a->lo)) / (log10(a->hi) - log10(a->lo));
    return (v - a->lo) / (a->hi - a->lo);
}

static double px(const axis *x, double v) { return LEFT + axis_fraction(x, v) * (WIDTH - LEFT - RIGHT); }
static double py(const axis *y, double v) { return HEIGHT - BOTTOM - axis_fraction(y, v) * (HEIGHT - TOP - BOTTOM); }

/* A round step (1, 2 or 5 times a power of ten) giving about `ticks` intervals over span. */
static double nice_step(double span, int ticks) {
    double raw = span / ticks, mag = pow(10, floor(log10(raw)));
    double f = raw / mag;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * mag;
}

static void xml_text(FILE *f, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f); break;
        }
    }
}

/* From 0: prompt lengths are sizes, and the eye compares them from zero. */
static axis x_axis(const q3_plot_point *p, int n) {
    double hi = 0;
    for (int i = 0; i < n; i++)
        if (p[i].prompt_tokens > hi) hi = p[i].prompt_tokens;
    double step = nice_step(hi > 0 ? hi : 1, 5);
    return (axis){0, ceil(hi * 1.05 / step) * step, false};
}

static axis y_axis(const q3_plot_point *p, int n) {
    double lo = INFINITY, hi = 0;
    for (int i = 0; i < n; i++) {
        double v[3] = {p[i].prefill_tok_s, p[i].decode_tok_s, p[i].roofline_tok_s};
        for (int k = 0; k < 3; k++) {
            if (!(v[k] > 0)) continue;
            if (v[k] < lo) lo = v[k];
            if (v[k] > hi) hi = v[k];
        }
    }
    if (!(hi > 0)) return (axis){0, 1, false};
    if (hi / lo > 30) return (axis){pow(10, floor(log10(lo))), pow(10, ceil(log10(hi))), true};
    double step = nice_step(hi, 5);
    return (axis){0, ceil(hi * 1.05 / step) * step, false};
}

static void draw_x_ticks(FILE *f, const axis *x, const axis *y) {
    double step = nice_step(x->hi - x->lo, 6);
    for (double v = ceil(x->lo / step) * step; v <= x->hi; v += step) {
        double X = px(x, v);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", X, TOP, X, py(y, y->lo));
        fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%g</text>\n", X, HEIGHT - BOTTOM + 18, v);
    }
}

static void draw_y_ticks(FILE *f, const axis *x, const axis *y) {
    if (y->log) {
        for (double v = y->lo; v <= y->hi * 1.0001; v *= 10) {
            double Y = py(y, v);
            fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", LEFT, Y, px(x, x->hi), Y);
            fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n", LEFT - 6, Y + 4, v);
        }
        return;
    }
    double step = nice_step(y->hi - y->lo, 5);
    for (double v = y->lo; v <= y->hi * 1.0001; v += step) {
        double Y = py(y, v);
        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", LEFT, Y, px(x, x->hi), Y);
        fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n", LEFT - 6, Y + 4, v);
    }
}

typedef struct series {
    const char *label, *color;
    bool dashed;
    size_t offset; /* of the value inside q3_plot_point */
} series;

static double value_of(const q3_plot_point *p, const series *s) { return *(const double *)((const char *)p + s->offset); }

static void draw_series(FILE *f, const axis *x, const axis *y, const q3_plot_point *p, int n, const series *s, int row) {
    fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s points=\"", s->color,
            s->dashed ? " stroke-dasharray=\"6,4\"" : "");
    for (int i = 0; i < n; i++)
        if (value_of(&p[i], s) > 0) fprintf(f, "%.1f,%.1f ", px(x, p[i].prompt_tokens), py(y, value_of(&p[i], s)));
    fputs("\"/>\n", f);
    for (int i = 0; i < n && !s->dashed; i++)
        if (value_of(&p[i], s) > 0)
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"%s\"/>\n", px(x, p[i].prompt_tokens),
                    py(y, value_of(&p[i], s)), s->color);
    int lx = WIDTH - RIGHT + 20, ly = TOP + 10 + 22 * row;
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"2\"%s/>\n", lx, ly, lx + 24, ly,
            s->color, s->dashed ? " stroke-dasharray=\"6,4\"" : "");
    fprintf(f, "<text x=\"%d\" y=\"%d\">%s</text>\n", lx + 30, ly + 4, s->label);
}

static int by_prompt(const void *a, const void *b) {
    double x = ((const q3_plot_point *)a)->prompt_tokens, y = ((const q3_plot_point *)b)->prompt_tokens;
    return (x > y) - (x < y);
}

q3_status q3_plot_svg(const char *path, const char *title, const q3_plot_point *points, int n, q3_error *e) {
    if (n < 1) return q3_fail(e, Q3_EINVAL, "%s: no results to plot", path);
    q3_plot_point *p = malloc((size_t)n * sizeof *p);
    if (!p) return q3_fail(e, Q3_ENOMEM, "%s: out of memory", path);
    memcpy(p, points, (size_t)n * sizeof *p);
    qsort(p, (size_t)n, sizeof *p, by_prompt);
    FILE *f = fopen(path, "w");
    if (!f) {
        free(p);
        return q3_fail(e, Q3_EIO, "%s: cannot create: %s", path, strerror(errno));
    }
    axis x = x_axis(p, n), y = y_axis(p, n);
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
               "font-family=\"sans-serif\" font-size=\"12\">\n"
               "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            WIDTH, HEIGHT, WIDTH, HEIGHT);
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" font-size=\"14\">", (LEFT + WIDTH - RIGHT) / 2, TOP - 16);
    xml_text(f, title);
    fputs("</text>\n", f);
    draw_x_ticks(f, &x, &y);
    draw_y_ticks(f, &x, &y);
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"black\"/>\n", LEFT, TOP,
            WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">prompt length (tokens)</text>\n",
            (LEFT + WIDTH - RIGHT) / 2, HEIGHT - 18);
    fprintf(f, "<text transform=\"translate(20,%d) rotate(-90)\" text-anchor=\"middle\">tokens per second%s</text>\n",
            (TOP + HEIGHT - BOTTOM) / 2, y.log ? " (log scale)" : "");
    const series lines[] = {
        {"prefill", "#1f77b4", false, offsetof(q3_plot_point, prefill_tok_s)},
        {"decode", "#d62728", false, offsetof(q3_plot_point, decode_tok_s)},
        {"decode roofline", "#7f7f7f", true, offsetof(q3_plot_point, roofline_tok_s)},
    };
    for (int i = 0; i < 3; i++) draw_series(f, &x, &y, p, n, &lines[i], i);
    fputs("</svg>\n", f);
    free(p);
    if (ferror(f) | fclose(f)) return q3_fail(e, Q3_EIO, "%s: write failed", path);
    return Q3_OK;
}
