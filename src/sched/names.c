/* Names of samplers and schedules, as the CLI and the server spell them. */
#include <string.h>

#include "sdc.h"

static const char *const sampler_names[SDC_SAMPLER_COUNT] = {
    "euler", "euler_a", "heun", "dpm++2m", "ddim", "pndm", "lms", "lcm", "tcd",
};

static const char *const schedule_names[SDC_SCHEDULE_COUNT] = {"discrete", "karras"};

static const char *const spacing_names[SDC_SPACING_COUNT] = {"default", "linspace", "leading",
                                                             "trailing"};

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

const char *sdc_spacing_name(sdc_spacing s) {
    return (unsigned)s < SDC_SPACING_COUNT ? spacing_names[s] : "unknown";
}

sdc_spacing sdc_spacing_from_name(const char *name) {
    if (name)
        for (int i = 0; i < SDC_SPACING_COUNT; i++)
            if (strcmp(name, spacing_names[i]) == 0) return (sdc_spacing)i;
    return SDC_SPACING_COUNT;
}
