/* Textual-inversion embeddings, as AUTOMATIC1111 finds and uses them: every
 * .safetensors file in a folder is an embedding named by its file name
 * without the extension; a prompt uses one by writing its name, which
 * matches where the name's tokens appear in the prompt's tokens (the
 * longest name first, then the first in name order).  The vectors replace
 * those tokens' embeddings at the text encoder's input.
 *
 * Files are read when a prompt first uses them (a folder may hold SDXL
 * embeddings and others that are never used).  Accepted tensors:
 * "emb_params" [n, D] (AUTOMATIC1111), or a file's only tensor [n, D] or
 * [D] (diffusers' learned_embeds, named by its token); F32, F16 or BF16;
 * 1 <= n <= 75.  SDXL's "clip_l"/"clip_g" pair is refused by name; .pt and
 * .bin (pickles) are not read. */
#ifndef SDC_TEXT_EMBEDDINGS_H
#define SDC_TEXT_EMBEDDINGS_H

#include <stdint.h>

#include "sdc.h"
#include "text/tokenizer.h"

#define SDC_EMBEDDING_MAX_VECTORS 75

typedef struct sdc_embeddings sdc_embeddings;

/* Indexes dir's *.safetensors files (not its subfolders), each name
 * tokenized with t (kept borrowed; it must outlive the index).  A missing
 * or unreadable folder is SDC_ERR_IO naming it; an empty one is fine. */
sdc_status sdc_embeddings_open(const char *dir, const sdc_tokenizer *t, sdc_embeddings **out);
void sdc_embeddings_free(sdc_embeddings *e);

int sdc_embeddings_count(const sdc_embeddings *e);
const char *sdc_embeddings_name(const sdc_embeddings *e, int i);

/* The embedding whose name's tokens start at tokens[pos] (the longest such
 * name), its token count in *len; -1 if none. */
int sdc_embeddings_match(const sdc_embeddings *e, const int32_t *tokens, int n, int pos,
                         int *len);

/* Embedding i's vectors, read from its file on first use and checked
 * against the text encoder's width D: *vec [n, D] (valid until free), *n.
 * A file that is not an embedding, or one of another width, fails with a
 * message naming the file. */
sdc_status sdc_embeddings_vectors(sdc_embeddings *e, int i, int D, const float **vec, int *n);

#endif
