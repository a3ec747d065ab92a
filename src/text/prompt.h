/* AUTOMATIC1111's prompt syntax, parsed (the text encoder's chunking and
 * emphasis rescale are its consumers).  Two steps, in A1111's order:
 *
 *   1. Extra-network tags (SDC_PARSE_TAGS): every match of
 *      <(\w+):([^>]+)> is cut out of the prompt, left to right, its second
 *      group split on ':' (modules/extra_networks.py, parse_prompt).
 *      "<lora:NAME:WEIGHT>" names a LoRA; any other kind is kept too.
 *   2. Emphasis (modules/prompt_parser.py, parse_prompt_attention), on what
 *      step 1 left: "(x)" multiplies x's weight by 1.1, "[x]" by 1/1.1,
 *      "(x:W)" (spaces allowed around W) by W, nesting multiplies;
 *      \( \) \[ \] \\ are literal characters, a lone "\" vanishes; brackets
 *      left open are closed at the end (the round ones, then the square);
 *      a stray ")" or "]" is text; "BREAK" as a word (upper case, Unicode
 *      word boundaries) becomes a run of its own with weight -1 (times the
 *      brackets around it), the white space around it dropped; neighbouring
 *      runs of equal weight (==, so 0 and -0 too) are merged; an empty
 *      result is one run "" of weight 1.
 *
 * Weights are doubles multiplied in A1111's order (each bracket's factor
 * applied to every run from its opening, when it closes), so they equal
 * Python's floats bit for bit (tests: 1e-12 relative).  They may overflow
 * to inf or underflow to 0 under thousands of brackets, as Python's do;
 * 0 * inf is NaN.  A weight that A1111 matches but Python's float()
 * rejects ("(a:1.2.3)", "(a:.)") makes A1111 fail the whole prompt with
 * ValueError: sdc_prompt_parse returns SDC_ERR_INVALID_ARG.
 *
 * Text is bytes: whatever is not syntax (invalid UTF-8 included) reaches
 * the runs unchanged.  The Unicode classes of A1111's regexes are Python's:
 * \s (str.isspace), \d (category Nd, any script: "(a:１.５)" is 1.5), \w
 * (letters, numbers, "_": \p{L} \p{N} from unicode_tables.c).  Ill-formed
 * bytes are one non-word, non-space character each.
 *
 * Not handled: prompt editing/alternation ("[a:b:10]", "[a|b]"), "AND",
 * and the comment lines that the newest extra_networks.parse_prompt
 * removes first (prompt_parser.remove_comment_lines); their characters
 * are parsed as above, as parse_prompt_attention alone would see them.
 * The \w tables come from the tokenizer's Unicode version, which may
 * differ from Python 3.11's (Unicode 14) for characters assigned since. */
#ifndef SDC_TEXT_PROMPT_H
#define SDC_TEXT_PROMPT_H

#include <stddef.h>

#include "sdc.h"

/* Inputs longer than this (bytes, before the NUL) are refused with
 * SDC_ERR_INVALID_ARG; the tokenizer's limit (SDC_TOKENIZER_MAX_BYTES). */
#define SDC_PROMPT_MAX_BYTES 65536

enum {
    SDC_PARSE_TAGS = 1,  /* cut out <kind:args> tags first (A1111 does) */
    SDC_PARSE_PLAIN = 2, /* no emphasis syntax: one run, the whole text (after
                           * tags, if asked), weight 1 (diffusers' behaviour) */
};

/* A piece of the prompt with one weight.  text points into the sdc_prompt
 * (valid until sdc_prompt_free) and is NOT NUL-terminated: len bytes. */
typedef struct sdc_prompt_run {
    const char *text;
    size_t len;
    double weight;
    /* A1111's BREAK test in its text encoder: text == "BREAK" and
     * weight == -1 (a BREAK inside brackets has another weight and is
     * then the word "BREAK", as in A1111).  The encoder starts a new
     * 75-token chunk here and does not encode the run. */
    int is_break;
} sdc_prompt_run;

enum {
    SDC_TAG_WEIGHT_NONE = 0, /* one arg only: weight 1.0 (A1111's default) */
    SDC_TAG_WEIGHT_OK = 1,   /* args[1] is a number as Python's float() reads it */
    SDC_TAG_WEIGHT_BAD = -1, /* args[1] is not a number: A1111's LoRA extension
                              * fails to activate the prompt's networks */
};

/* One <kind:args> tag.  Strings are NUL-terminated, owned by the
 * sdc_prompt, valid until sdc_prompt_free. */
typedef struct sdc_prompt_tag {
    const char *kind;        /* group 1, e.g. "lora" (case kept) */
    const char *name;        /* args[0], may be "" ("<lora::1>") */
    const char *const *args; /* group 2 split on ':' (Python's str.split) */
    int n_args;              /* >= 1 */
    double weight;           /* float(args[1]) if weight_status == OK, else 1.0 */
    int weight_status;       /* SDC_TAG_WEIGHT_* */
    size_t offset, len;      /* the tag's bytes in the input */
} sdc_prompt_tag;

typedef struct sdc_prompt sdc_prompt; /* owns copies of everything */

/* Parses utf8 (NUL-terminated; NULL as "") with flags SDC_PARSE_*.
 * *out is set on SDC_OK and must be released with sdc_prompt_free; on
 * failure *out is NULL and the message says why (too long, a weight
 * A1111 cannot read, out of memory).  No recursion; O(runs x brackets)
 * time in the worst case (64 KiB of "(a": 0.5 s on CI's 2-core machine). */
sdc_status sdc_prompt_parse(const char *utf8, int flags, sdc_prompt **out);

/* The runs, in order; returns their count (>= 1). */
int sdc_prompt_runs(const sdc_prompt *p, const sdc_prompt_run **runs);
/* The tags, in order of appearance; returns their count (0 without
 * SDC_PARSE_TAGS).  *tags is NULL when there are none. */
int sdc_prompt_tags(const sdc_prompt *p, const sdc_prompt_tag **tags);
/* The prompt with the tags cut out (NUL-terminated; the input itself
 * without SDC_PARSE_TAGS): what step 2 reads.  A1111's infotext keeps
 * the original prompt, tags included. */
const char *sdc_prompt_text(const sdc_prompt *p);
void sdc_prompt_free(sdc_prompt *p);

#endif
