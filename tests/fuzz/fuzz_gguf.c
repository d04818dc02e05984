/* libFuzzer: the GGUF reader must reject any input cleanly; every tensor it accepts lies inside
 * the buffer (touched here so ASan would see a stray read), and metadata getters stay in bounds. */
#include "formats/gguf.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    q3_gguf g;
    q3_error e;
    if (q3_gguf_parse(&g, data, size, "fuzz", &e) != Q3_OK) return 0;
    volatile unsigned char sink = 0;
    for (int64_t i = 0; i < g.n_tensors; i++)
        if (g.tensors[i].nbytes) sink ^= ((const unsigned char *)g.tensors[i].data)[g.tensors[i].nbytes - 1];
    for (int64_t i = 0; i < g.n_kv; i++) {
        const q3_gguf_kv *kv = &g.kv[i];
        if (kv->type == Q3_GGUF_ARRAY && kv->arr_type != Q3_GGUF_STRING && kv->arr_n)
            sink ^= (unsigned char)q3_gguf_arr_int(kv, kv->arr_n - 1);
        if (kv->strs && kv->type == Q3_GGUF_STRING && kv->strs[0].len)
            sink ^= (unsigned char)kv->strs[0].ptr[kv->strs[0].len - 1];
    }
    (void)sink;
    q3_gguf_close(&g);
    return 0;
}
