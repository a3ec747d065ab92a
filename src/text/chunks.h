/* A prompt as AUTOMATIC1111's text encoder takes it (modules/
 * sd_hijack_clip.py, tokenize_line): each weighted run tokenized on its own
 * (no BOS/EOS, no truncation), the tokens laid into chunks of 75 that are
 * encoded separately, each as BOS + 75 + EOS (77, padded with EOS), every
 * token carrying its run's weight (1 for BOS, EOS and padding).
 *   - BREAK ends the chunk (padding it).
 *   - A chunk that fills up while a comma lies at most 20 tokens back moves
 *     the tokens after that comma into the next chunk (A1111's "comma
 *     padding backtrack", default 20).
 *   - Textual-inversion embeddings (text/embeddings.h) found in a run's
 *     tokens take as many positions as they have vectors, never split
 *     across chunks; their positions hold token id 0 and are listed as
 *     fixes whose vectors replace the token embeddings there.  As in A1111,
 *     a fix stays in the chunk it was made in when the comma backtrack moves
 *     its tokens on.
 *   - An empty prompt is one chunk: BOS, EOS x 76. */
#ifndef SDC_TEXT_CHUNKS_H
#define SDC_TEXT_CHUNKS_H

#include <stdint.h>

#include "sdc.h"
#include "text/embeddings.h"
#include "text/prompt.h"
#include "text/tokenizer.h"

#define SDC_CHUNK_TOKENS 75 /* a chunk's prompt tokens, BOS and EOS aside */

typedef struct sdc_chunk_fix {
    int pos;       /* index into ids of the first vector's position */
    int emb;       /* the embedding (index in the sdc_embeddings) */
    int n;         /* its vectors */
    const float *vec; /* [n, D], owned by the sdc_embeddings */
} sdc_chunk_fix;

typedef struct sdc_chunks {
    int n;              /* chunks, >= 1 */
    int32_t *ids;       /* [n * SDC_CLIP_CONTEXT] */
    float *mult;        /* [n * SDC_CLIP_CONTEXT]: the weights (A1111's multipliers) */
    sdc_chunk_fix *fix; /* [n_fix], ordered by pos within each chunk */
    int n_fix;
    int tokens;         /* A1111's token count: 75 per full chunk, the last's own */
} sdc_chunks;

/* Chunks of a parsed prompt.  emb may be NULL (no embeddings); D is the
 * text encoder's width, which the embeddings used must have.  On failure
 * *out is empty and the message says why. */
sdc_status sdc_chunks_make(const sdc_tokenizer *t, const sdc_prompt *p, sdc_embeddings *emb,
                           int D, sdc_chunks *out);
/* One chunk of ids without syntax (diffusers: BOS, text truncated to 75
 * tokens, EOS, padding), every weight 1. */
sdc_status sdc_chunks_plain(const sdc_tokenizer *t, const char *text, sdc_chunks *out);
void sdc_chunks_free(sdc_chunks *c);

#endif
