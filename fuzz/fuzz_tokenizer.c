/* libFuzzer harness: the CLIP tokenizer (text/tokenizer.c, text/unicode.c):
 * prompts through the built-in vocabulary, and the loading of a diffusers
 * tokenizer/ folder's vocab.json and merges.txt.
 *
 * Input: part 0 is the prompt (a NUL inside ends it, as for a C string).
 * With more parts, part 1 is vocab.json and part 2 merges.txt (empty when
 * absent); they are loaded with sdc_tokenizer_load and, when they load,
 * tokenize the prompt too.  Properties: sdc_tokenize returns 2..77 or -1
 * with a message; the ids are BOS, tokens, EOS, then padding, as
 * tokenizing "" gives them; with the built-in vocabulary every id is below
 * 49408. */
#include "fuzz_util.h"

#include <stdint.h>
#include <string.h>

#include "text/tokenizer.h"

#define BUILTIN_VOCAB 49408

static sdc_tokenizer *g_builtin; /* loaded once: it takes ~100 ms */

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    if (sdc_tokenizer_load_builtin(&g_builtin) != SDC_OK) {
        fprintf(stderr, "fuzz: built-in vocabulary: %s\n", sdc_last_error());
        exit(2);
    }
    return 0;
}

/* Tokenizes text with t and checks the result; vocab: the number of ids
 * (0: not known). */
static void check_tokenize(const sdc_tokenizer *t, const char *text, int vocab) {
    int32_t empty[SDC_CLIP_CONTEXT], ids[SDC_CLIP_CONTEXT];
    FZ_ASSERT(sdc_tokenize(t, "", empty) == 2, "\"\" gives %s", sdc_last_error());
    int n = sdc_tokenize(t, text, ids);
    if (n < 0) {
        FZ_ASSERT(n == -1 && *sdc_last_error() != 0, "returned %d without a message", n);
        return;
    }
    FZ_ASSERT(n >= 2 && n <= SDC_CLIP_CONTEXT, "%d tokens", n);
    FZ_ASSERT(ids[0] == empty[0], "first id %d, not BOS %d", ids[0], empty[0]);
    FZ_ASSERT(ids[n - 1] == empty[1], "last id %d, not EOS %d", ids[n - 1], empty[1]);
    for (int i = n; i < SDC_CLIP_CONTEXT; i++)
        FZ_ASSERT(ids[i] == empty[SDC_CLIP_CONTEXT - 1], "id %d at %d is not padding", ids[i], i);
    for (int i = 0; vocab && i < SDC_CLIP_CONTEXT; i++)
        FZ_ASSERT(ids[i] >= 0 && ids[i] < vocab, "id %d at %d", ids[i], i);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz_part parts[3];
    size_t np = fz_split(data, size, parts, 3);
    char *text = fz_cstr(parts[0]);
    check_tokenize(g_builtin, text, BUILTIN_VOCAB);
    if (np > 1) {
        fz_write("vocab.json", parts[1].p, parts[1].n, 0);
        fz_write("merges.txt", np > 2 ? parts[2].p : NULL, np > 2 ? parts[2].n : 0, 0);
        char vocab[4096], merges[4096];
        sdc_tokenizer *t = (sdc_tokenizer *)&np; /* must become NULL on failure */
        sdc_status st =
            sdc_tokenizer_load(fz_path(vocab, "vocab.json"), fz_path(merges, "merges.txt"), &t);
        fz_report("load", st, sdc_last_error());
        if (st == SDC_OK) {
            check_tokenize(t, text, 0);
            sdc_tokenizer_free(t);
        } else {
            FZ_ASSERT(t == NULL, "failed load left *out set");
            FZ_ASSERT(*sdc_last_error() != 0, "failure (%d) without a message", (int)st);
        }
    }
    free(text);
    return 0;
}
