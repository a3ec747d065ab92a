/* Progress display on stderr and Ctrl-C handling for the sdc program.
 *
 * On a terminal: one bar, redrawn in place per step
 *   "sample  [#######.......]  7/20  1.84 s/it  ETA 24s"
 * otherwise (a log, a pipe): one plain line per step
 *   "sdc: sample 7/20 1.84 s/it ETA 24s" */
#ifndef SDC_TOOL_PROGRESS_H
#define SDC_TOOL_PROGRESS_H

#include "sdc.h"

typedef struct progress {
    int tty;             /* stderr is a terminal */
    int label_image;     /* image number shown (0: none) */
    int n_images;
    sdc_stage stage;     /* stage of the last event, or SDC_STAGE_COUNT */
    double stage_start;  /* time the stage began (the previous event) */
    double last;         /* time of the previous event */
    int open_line;       /* a bar is drawn without its newline */
} progress;

void progress_init(progress *p, int image, int n_images);
/* An sdc_progress_fn: draws, and returns 1 once SIGINT was received. */
int progress_cb(void *user, sdc_stage stage, int step, int total);
/* Ends an open bar line. */
void progress_done(progress *p);

/* Installs the SIGINT/SIGTERM handler: the first signal cancels the
 * generation of the model named by interrupt_cancels (sdc_model_cancel: it
 * stops within about a second, mid-step); a second one ends the program at
 * once (the default action).  Both signals are also unblocked: a blocked
 * mask inherited from the launcher would hold them pending to the last
 * step. */
void interrupt_install(void);
/* The model a signal cancels (NULL: none; set it before freeing the model);
 * a signal already received cancels it at once. */
void interrupt_cancels(sdc_model *m);
int interrupted(void);

#endif
