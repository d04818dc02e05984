/* quant_dump: the type kernels on the command line, for tests in other languages
 * (tests/test_quant_gguf.py compares them with the gguf Python package).
 *
 *   quant_dump dequantize TYPE   raw blocks on stdin  -> little-endian float32 on stdout
 *   quant_dump quantize TYPE     float32 on stdin     -> raw blocks on stdout
 *   quant_dump isa               prints the instruction set the kernels run on
 *
 * TYPE is a name as llama.cpp prints it (Q4_K, q8_0, BF16, ...). Q3_ISA selects the ISA. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cpu/kernel_table.h"

/* All of stdin in one malloc'd buffer. */
static unsigned char *read_stdin(size_t *len) {
    size_t cap = 1 << 16, n = 0;
    unsigned char *buf = malloc(cap);
    for (size_t got; buf && (got = fread(buf + n, 1, cap - n, stdin)) > 0;) {
        n += got;
        if (n == cap) {
            unsigned char *grown = realloc(buf, cap *= 2);
            if (!grown) free(buf);
            buf = grown;
        }
    }
    *len = n;
    return buf;
}

static int convert(const char *mode, const q3_type_traits *tr) {
    size_t len;
    unsigned char *in = read_stdin(&len);
    if (!in) {
        fprintf(stderr, "quant_dump: out of memory\n");
        return 1;
    }
    bool dequantize = strcmp(mode, "dequantize") == 0;
    size_t in_unit = dequantize ? tr->type_size : (size_t)tr->block_size * sizeof(float);
    if (len % in_unit) {
        fprintf(stderr, "quant_dump: %zu bytes is not a whole number of %s blocks\n", len, tr->name);
        free(in);
        return 1;
    }
    int64_t n = (int64_t)(len / in_unit) * tr->block_size;
    size_t out_len = dequantize ? (size_t)n * sizeof(float) : (size_t)(n / tr->block_size) * tr->type_size;
    void *out = malloc(out_len ? out_len : 1);
    if (out && dequantize) tr->to_float(in, out, n);
    if (out && !dequantize) q3_quantize_row(tr, (const float *)in, out, n, NULL);
    int ok = out && fwrite(out, 1, out_len, stdout) == out_len && fflush(stdout) == 0;
    if (!ok) fprintf(stderr, "quant_dump: cannot write the output\n");
    free(in);
    free(out);
    return ok ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "isa") == 0) {
        printf("%s\n", q3_isa_name(q3_isa_active()));
        return 0;
    }
    q3_type t;
    if (argc != 3 || (strcmp(argv[1], "dequantize") != 0 && strcmp(argv[1], "quantize") != 0)) {
        fprintf(stderr, "usage: quant_dump dequantize|quantize TYPE < in > out\n       quant_dump isa\n");
        return 2;
    }
    if (!q3_type_from_name(argv[2], &t) || !q3_type_get(t)->to_float || !q3_type_get(t)->from_float) {
        fprintf(stderr, "quant_dump: %s: not a type with kernels\n", argv[2]);
        return 2;
    }
    return convert(argv[1], q3_type_get(t));
}
