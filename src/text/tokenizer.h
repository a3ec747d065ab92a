/* CLIP's byte-level BPE tokenizer, as transformers' CLIPTokenizer (5.x,
 * backed by HF tokenizers; no ftfy, no HTML unescaping) loads it for SD 1.x:
 * NFC, runs of white space collapsed, lowercasing, the pre-tokenisation
 * regex (PCRE2, Unicode classes), byte-to-unicode mapping, BPE with "</w>"
 * word ends, <|startoftext|> and <|endoftext|> (also when they appear in
 * the text, as the reference's added tokens), truncation and padding to the
 * context length.  Details in tokenizer.c. */
#ifndef SDC_TEXT_TOKENIZER_H
#define SDC_TEXT_TOKENIZER_H

#include <stdint.h>

#include "sdc.h"

#define SDC_CLIP_CONTEXT 77
/* Longer prompts are rejected (SDC_ERR_INVALID_ARG), not truncated. */
#define SDC_TOKENIZER_MAX_BYTES 65536

typedef struct sdc_tokenizer sdc_tokenizer;

/* From a diffusers tokenizer/ folder's vocab.json and merges.txt. */
sdc_status sdc_tokenizer_load(const char *vocab_json, const char *merges_txt, sdc_tokenizer **out);
/* From the CLIP vocabulary built into sdc. */
sdc_status sdc_tokenizer_load_builtin(sdc_tokenizer **out);
void sdc_tokenizer_free(sdc_tokenizer *t);

/* ids[SDC_CLIP_CONTEXT]: BOS, tokens (truncated), EOS, then padding with the
 * pad id (<|endoftext|>, 49407).  Returns the number of tokens before padding
 * (<= 77) or -1 with an error set (invalid UTF-8 is replaced by U+FFFD, not
 * an error).  text: NUL-terminated UTF-8, NULL as "".  Thread-safe: t is
 * only read. */
int sdc_tokenize(const sdc_tokenizer *t, const char *text, int32_t ids[SDC_CLIP_CONTEXT]);

/* Every token of text[0..len) (not NUL-terminated; NULL as ""), without
 * BOS/EOS and without truncation: transformers' tokenizer(text,
 * add_special_tokens=False, truncation=False), as AUTOMATIC1111 tokenizes
 * each weighted run of a prompt.  *ids is malloc'ed (NULL when *n is 0).
 * len above SDC_TOKENIZER_MAX_BYTES is SDC_ERR_INVALID_ARG. */
sdc_status sdc_tokenize_all(const sdc_tokenizer *t, const char *text, size_t len, int32_t **ids,
                            int *n);

enum { SDC_TOKEN_BOS, SDC_TOKEN_EOS, SDC_TOKEN_PAD };
int32_t sdc_tokenizer_special(const sdc_tokenizer *t, int which);
/* The id of a vocabulary entry ("," + "</w>" is ",</w>"), or -1. */
int32_t sdc_tokenizer_find(const sdc_tokenizer *t, const char *token);

#endif
