/* CLIP vocabulary data inside sdc, and the writer of HF-format files. */
#ifndef SDC_TEXT_VOCAB_H
#define SDC_TEXT_VOCAB_H

#include <stddef.h>

#include "text/tokenizer.h"

/* data/clip/bpe_simple_vocab_16e6.txt.gz (open-clip-torch 3.3.0, OpenAI
 * CLIP's BPE merges), embedded by cmake/vocab.cmake. */
extern const unsigned char sdc_clip_vocab_gz[];
extern const size_t sdc_clip_vocab_gz_size;

/* Writes t's vocabulary as a diffusers tokenizer/ folder holds it:
 * vocab.json ({"token": id, ...} in id order) and merges.txt ("#version: 0.2"
 * then one "left right" pair a line, by rank). */
sdc_status sdc_tokenizer_save(const sdc_tokenizer *t, const char *vocab_json,
                              const char *merges_txt);

#endif
