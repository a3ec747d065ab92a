/* Names of samplers and schedules, as the CLI and the server spell them. */
#include <string.h>

#include "sdc.h"

static const char *const sampler_names[SDC_SAMPLER_COUNT] = {
    "euler", "euler_a", "heun", "dpm++2m", "ddim", "pndm", "lms",
};

static const char *const schedule_names[SDC_SCHEDULE_COUNT] = {"discrete", "karras"};

const char *sdc_sampler_name(sdc_sampler s) {
    return (unsigned)s < SDC_SAMPLER_COUNT ? sampler_names[s] : "unknown";
}

sdc_sampler sdc_sampler_from_name(const char *name) {
    if (name)
        for (int i = 0; i < SDC_SAMPLER_COUNT; i++)
            if (strcmp(name, sampler_names[i]) == 0) return (sdc_sampler)i;
    return SDC_SAMPLER_COUNT;
}

const char *sdc_schedule_name(sdc_schedule s) {
    return (unsigned)s < SDC_SCHEDULE_COUNT ? schedule_names[s] : "unknown";
}

sdc_schedule sdc_schedule_from_name(const char *name) {
    if (name)
        for (int i = 0; i < SDC_SCHEDULE_COUNT; i++)
            if (strcmp(name, schedule_names[i]) == 0) return (sdc_schedule)i;
    return SDC_SCHEDULE_COUNT;
}
