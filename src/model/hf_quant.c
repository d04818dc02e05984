/* The quantization_config of a Hugging Face checkpoint: which published quantized formats load
 * (block-scaled FP8 e4m3, symmetric 4-bit GPTQ without act-order) and with which parameters.
 * Anything else is refused here, naming the field, before a weight is read. */
#include <jansson.h>
#include <string.h>
#include "model/model.h"

static q3_status int_field(json_t *qc, const char *key, int *out, int fallback, const char *path, q3_error *e) {
    json_t *v = json_object_get(qc, key);
    if (!v || json_is_null(v)) {
        *out = fallback;
        return Q3_OK;
    }
    if (!json_is_integer(v) || json_integer_value(v) < -1 || json_integer_value(v) > (1 << 20))
        return q3_fail(e, Q3_EFORMAT, "%s: quantization_config.%s must be an integer", path, key);
    *out = (int)json_integer_value(v);
    return Q3_OK;
}

static bool string_is(json_t *v, const char *want) { return json_is_string(v) && !strcmp(json_string_value(v), want); }

static q3_status read_fp8(q3_hf_quant *q, json_t *qc, const char *path, q3_error *e) {
    q->method = Q3_HF_QUANT_FP8;
    json_t *fmt = json_object_get(qc, "fmt"), *block = json_object_get(qc, "weight_block_size");
    if (fmt && !json_is_null(fmt) && !string_is(fmt, "e4m3"))
        return q3_fail(e, Q3_EUNSUPPORTED, "%s: quantization_config.fmt %s is not supported (e4m3)", path,
                       json_is_string(fmt) ? json_string_value(fmt) : "(not a string)");
    q->block_rows = q->block_cols = 128;
    if (block && !json_is_null(block)) {
        json_t *r = json_array_get(block, 0), *c = json_array_get(block, 1);
        if (!json_is_array(block) || json_array_size(block) != 2 || !json_is_integer(r) || !json_is_integer(c) ||
            json_integer_value(r) <= 0 || json_integer_value(c) <= 0 || json_integer_value(r) > (1 << 20) ||
            json_integer_value(c) > (1 << 20))
            return q3_fail(e, Q3_EFORMAT, "%s: quantization_config.weight_block_size must be [rows, cols]", path);
        q->block_rows = (int)json_integer_value(r);
        q->block_cols = (int)json_integer_value(c);
    }
    if (q->block_cols % 32)
        return q3_fail(e, Q3_EUNSUPPORTED, "%s: quantization_config.weight_block_size: %d columns is not a multiple of 32",
                       path, q->block_cols);
    return Q3_OK;
}

static q3_status read_gptq(q3_hf_quant *q, json_t *qc, const char *path, q3_error *e) {
    q->method = Q3_HF_QUANT_GPTQ;
    q3_status st;
    if ((st = int_field(qc, "bits", &q->bits, 0, path, e)) || (st = int_field(qc, "group_size", &q->group_size, 0, path, e)))
        return st;
    if (q->bits != 4)
        return q3_fail(e, Q3_EUNSUPPORTED, "%s: quantization_config.bits %d is not supported (GPTQ: 4)", path, q->bits);
    if (q->group_size <= 0 || q->group_size % 32)
        return q3_fail(e, Q3_EUNSUPPORTED, "%s: quantization_config.group_size %d is not supported (a multiple of 32)",
                       path, q->group_size);
    if (json_is_true(json_object_get(qc, "desc_act")))
        return q3_fail(e, Q3_EUNSUPPORTED, "%s: quantization_config.desc_act true (act-order) is not supported", path);
    if (json_is_false(json_object_get(qc, "sym")))
        return q3_fail(e, Q3_EUNSUPPORTED, "%s: quantization_config.sym false (asymmetric) is not supported", path);
    /* The original GPTQ format stores each zero point minus one (AutoGPTQ's packing; its
     * kernels, and GPTQModel's v1 -> v2 conversion, add the one back); gptq_v2 stores it as is. */
    json_t *format = json_object_get(qc, "checkpoint_format");
    if (!format || json_is_null(format) || string_is(format, "gptq")) q->zero_offset = 1;
    else if (string_is(format, "gptq_v2")) q->zero_offset = 0;
    else
        return q3_fail(e, Q3_EUNSUPPORTED, "%s: quantization_config.checkpoint_format %s is not supported (gptq, gptq_v2)",
                       path, json_is_string(format) ? json_string_value(format) : "(not a string)");
    return Q3_OK;
}

q3_status q3_hf_quant_read(q3_hf_quant *q, const char *path, q3_error *e) {
    memset(q, 0, sizeof *q);
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root) return q3_fail(e, Q3_EFORMAT, "%s: not JSON: %s (line %d)", path, je.text, je.line);
    json_t *qc = json_object_get(root, "quantization_config");
    q3_status st = Q3_OK;
    if (qc && !json_is_null(qc)) {
        json_t *method = json_object_get(qc, "quant_method");
        if (!json_is_object(qc) || !json_is_string(method))
            st = q3_fail(e, Q3_EFORMAT, "%s: quantization_config has no quant_method", path);
        else if (string_is(method, "fp8"))
            st = read_fp8(q, qc, path, e);
        else if (string_is(method, "gptq"))
            st = read_gptq(q, qc, path, e);
        else
            st = q3_fail(e, Q3_EUNSUPPORTED, "%s: quantization_config.quant_method %s is not supported (fp8, gptq)", path,
                         json_string_value(method));
    }
    json_decref(root);
    return st;
}
