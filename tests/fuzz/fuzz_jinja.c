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
    /* The server's limits scaled down by 8 to 50: what -timeout=1 checks here, under the
     * sanitizers (and a loaded machine), is that every unit of every limit costs bounded time, so
     * that the defaults stay well within a second of a release build whatever the template does
     * (tests/fuzz/RESULTS.md has the worst cases measured). */
    q3_jinja_limits lim = q3_jinja_default_limits();
    lim.max_steps /= 50;
    lim.max_memory /= 8;
    lim.max_output /= 16;
    char *out = NULL;
    if (!q3_jinja_render(t, context, &lim, &out, NULL)) free(out);
    q3_jinja_free(t);
    return 0;
}
