/* libFuzzer: GGUF files, as a downloaded model arrives. The reader must reject any input cleanly;
 * every tensor it accepts lies inside the buffer (touched here so ASan would see a stray read), and
 * metadata getters stay in bounds. What the loader then reads from the metadata must load or be
 * refused with an error too: the model config, the tokenizer (tokenizer.ggml.*: one that loads
 * must encode and decode a text), and the chat templates. */
#include <stdlib.h>
#include <string.h>

#include "formats/gguf.h"
#include "model/model.h"
#include "text/chat.h"
#include "text/tokenizer.h"

static void touch_tensors_and_metadata(const q3_gguf *g) {
    volatile unsigned char sink = 0;
    for (int64_t i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].nbytes) sink ^= ((const unsigned char *)g->tensors[i].data)[g->tensors[i].nbytes - 1];
    for (int64_t i = 0; i < g->n_kv; i++) {
        const q3_gguf_kv *kv = &g->kv[i];
        if (kv->type == Q3_GGUF_ARRAY && kv->arr_type != Q3_GGUF_STRING && kv->arr_n)
            sink ^= (unsigned char)q3_gguf_arr_int(kv, kv->arr_n - 1);
        if (kv->strs && kv->type == Q3_GGUF_STRING && kv->strs[0].len)
            sink ^= (unsigned char)kv->strs[0].ptr[kv->strs[0].len - 1];
    }
    (void)sink;
}

static void use_tokenizer(const q3_gguf *g) {
    static const char TEXT[] = "Hello, wörld! <|im_start|>user\n  12345 <think>x</think>";
    q3_tokenizer *tok;
    q3_error e;
    if (q3_tok_load_gguf(&tok, g, &e)) return;
    int32_t *ids = NULL;
    int n = 0;
    char *text = NULL;
    size_t len;
    if (!q3_tok_encode(tok, TEXT, sizeof TEXT - 1, true, &ids, &n, &e) && !q3_tok_decode(tok, ids, n, &text, &len, &e))
        free(text);
    free(ids);
    q3_tok_free(tok);
}

/* Compiled only: rendering is fuzz_jinja's and fuzz_chat_render's, with their limits. */
static void use_template(const q3_gguf *g) {
    q3_chat_template *t;
    q3_error e;
    if (!q3_chat_template_from_gguf(g, &t, &e)) q3_chat_template_free(t);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    q3_gguf g;
    q3_error e;
    if (q3_gguf_parse(&g, data, size, "fuzz", &e) != Q3_OK) return 0;
    touch_tensors_and_metadata(&g);
    q3_config c;
    (void)q3_config_from_gguf(&c, &g, &e);
    use_tokenizer(&g);
    use_template(&g);
    q3_gguf_close(&g);
    return 0;
}
