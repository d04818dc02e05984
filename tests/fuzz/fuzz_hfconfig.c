/* libFuzzer: config.json parsing must reject any input with an error, never crash. */
#include "model/model.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    q3_config c;
    q3_error e;
    q3_config_from_json_buffer(&c, (const char *)data, size, "fuzz", &e);
    return 0;
}
