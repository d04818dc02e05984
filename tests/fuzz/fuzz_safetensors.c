/* libFuzzer: the safetensors header parser must reject any input cleanly and never read outside
 * the buffer (ASan checks). */
#include "formats/safetensors.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    q3_st_file f;
    q3_error e;
    if (q3_st_parse(&f, data, size, "fuzz", &e) == Q3_OK) {
        for (int i = 0; i < f.n_tensors; i++) {
            volatile unsigned char sink = 0;
            if (f.tensors[i].nbytes) sink ^= ((const unsigned char *)f.tensors[i].data)[f.tensors[i].nbytes - 1];
            (void)sink;
        }
        q3_st_close(&f);
    }
    return 0;
}
