/* The benchmark chart: prefill and decode tokens per second against prompt length, with the
 * decode bandwidth roofline as a dashed line, as one self-contained SVG file (no fonts, scripts
 * or external references), readable in any browser and by any XML parser. */
#ifndef Q3_BENCH_PLOT_H
#define Q3_BENCH_PLOT_H

#include "base/error.h"

typedef struct q3_plot_point {
    double prompt_tokens;
    double prefill_tok_s;
    double decode_tok_s;
    double roofline_tok_s; /* decode's bandwidth roofline at this prompt length */
} q3_plot_point;

/* Writes the chart of n points (in any order) to path; title is escaped for XML. */
q3_status q3_plot_svg(const char *path, const char *title, const q3_plot_point *points, int n, q3_error *e);

#endif
