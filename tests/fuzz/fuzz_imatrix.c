/* libFuzzer: importance-matrix files (formats/imatrix.c), as `q3moe convert --imatrix` reads
 * them: llama.cpp's GGUF imatrix (NAME.in_sum2 and NAME.counts tensors, imatrix.* metadata) and
 * its legacy binary .dat. Any file must load or be refused with a message naming it, within
 * memory proportional to the file (a count in a header is not a promise); a file that loads must
 * save (in the GGUF form) and load back to the same entries, and every entry's importance must
 * read.
 *
 * Input: the file's bytes (GGUF by its magic, else .dat), kept in a memory file (memfd); the
 * saved copy goes to /dev/shm (or TMPDIR), as saving writes a temporary file and renames it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "formats/imatrix.h"

static char out_path[256];

static void remove_saved(void) { unlink(out_path); }

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    const char *tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(out_path, sizeof out_path, "%s/fuzz_imatrix.%d.gguf", tmp, (int)getpid());
    atexit(remove_saved);
    return 0;
}

static void same_entries(const q3_imatrix *a, const q3_imatrix *b) {
    if (a->n_entries != b->n_entries) abort();
    for (int i = 0; i < a->n_entries; i++) {
        const q3_imatrix_entry *x = &a->entries[i], *y = NULL;
        for (int j = 0; j < b->n_entries && !y; j++)
            if (!strcmp(b->entries[j].name, x->name)) y = &b->entries[j];
        if (!y || y->n_per_row != x->n_per_row || y->n_mats != x->n_mats) abort();
        for (int k = 0; k < x->n_mats; k++) /* counts are F32 in the file, as llama.cpp writes them */
            if ((float)y->counts[k] != (float)x->counts[k]) abort();
        for (int64_t k = 0; k < x->n_per_row * x->n_mats; k++)
            /* saved as float: the same value once rounded to float (NaN stays NaN) */
            if ((float)y->sums[k] != (float)x->sums[k] && !(y->sums[k] != y->sums[k] && x->sums[k] != x->sums[k]))
                abort();
    }
}

static void read_importance(const q3_imatrix *m) {
    for (int i = 0; i < m->n_entries; i++) {
        const q3_imatrix_entry *en = &m->entries[i];
        float *out = malloc((size_t)en->n_per_row * sizeof *out);
        if (!out) abort();
        for (int k = 0; k < en->n_mats && k < 4; k++)
            if (!q3_imatrix_importance(m, en->name, k, en->n_per_row, out)) abort();
        free(out);
    }
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    int in = memfd_create("imatrix", 0);
    if (in < 0 || write(in, data, size) != (ssize_t)size) abort();
    char in_path[64];
    snprintf(in_path, sizeof in_path, "/proc/self/fd/%d", in);
    q3_imatrix m = {0}, back = {0};
    q3_error e = {0};
    if (q3_imatrix_load(&m, in_path, &e)) {
        if (!strstr(e.msg, in_path)) abort(); /* the error names the file */
    } else {
        read_importance(&m);
        if (q3_imatrix_save(&m, out_path, &e) || q3_imatrix_load(&back, out_path, &e)) {
            fprintf(stderr, "round trip: %s\n", e.msg);
            abort();
        }
        same_entries(&m, &back);
        q3_imatrix_free(&back);
        q3_imatrix_free(&m);
    }
    close(in);
    return 0;
}
