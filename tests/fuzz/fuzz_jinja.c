/* libFuzzer: any template source must compile or be refused with an error, and any compiled
 * template must render or fail with an error within its limits, never crash or hang. The
 * context is a small conversation with tools, as chat templates see it. */
#include <stdlib.h>

#include "text/jinja.h"

static const char CONTEXT[] =
    "{\"messages\": [{\"role\": \"system\", \"content\": \"s\"}, {\"role\": \"user\", \"content\": \"Hi \\u00e9\"},"
    " {\"role\": \"assistant\", \"content\": \"<think>\\nr\\n</think>\\n\\na\", \"tool_calls\": [{\"function\":"
    " {\"name\": \"f\", \"arguments\": {\"x\": [1, 2.5, null, true]}}}]}, {\"role\": \"tool\", \"content\": \"ok\"}],"
    " \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": {\"type\": \"object\","
    " \"properties\": {\"x\": {\"type\": \"array\"}}}}}], \"add_generation_prompt\": true, \"documents\": null}";

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    static json_t *context;
    if (!context) context = json_loads(CONTEXT, 0, NULL);
    q3_jinja *t = NULL;
    if (q3_jinja_compile((const char *)data, size, "fuzz", &t, NULL)) return 0;
    q3_jinja_limits lim = {.max_output = 1 << 16, .max_memory = 16 << 20, .max_steps = 20000, .max_depth = 50};
    char *out = NULL;
    if (!q3_jinja_render(t, context, &lim, &out, NULL)) free(out);
    q3_jinja_free(t);
    return 0;
}
