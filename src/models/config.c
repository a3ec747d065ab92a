#include "models/config.h"

sdc_clip_config sdc_clip_config_sd1(void) {
    sdc_clip_config c = {49408, 768, 12, 12, 3072, 77, 1e-5f, 1};
    return c;
}

sdc_unet_config sdc_unet_config_sd1(void) {
    sdc_unet_config c = {0};
    c.in_channels = c.out_channels = 4;
    c.levels = 4;
    c.channels[0] = 320; c.channels[1] = 640; c.channels[2] = 1280; c.channels[3] = 1280;
    c.attn[0] = c.attn[1] = c.attn[2] = 1; c.attn[3] = 0;
    c.layers_per_block = 2;
    c.heads = 8;
    c.cross_dim = 768;
    c.groups = 32;
    c.eps = 1e-5f;
    c.transformer_depth = 1;
    c.use_linear_projection = 0;
    c.sample_size = 64;
    return c;
}

sdc_vae_config sdc_vae_config_sd1(void) {
    sdc_vae_config c = {0};
    c.in_channels = c.out_channels = 3;
    c.latent_channels = 4;
    c.levels = 4;
    c.channels[0] = 128; c.channels[1] = 256; c.channels[2] = 512; c.channels[3] = 512;
    c.layers_per_block = 2;
    c.groups = 32;
    c.scaling_factor = 0.18215f;
    c.sample_size = 512;
    return c;
}

sdc_sched_config sdc_sched_config_sd1(void) {
    sdc_sched_config c = {1000, 0.00085, 0.012, SDC_BETA_SCALED_LINEAR, 1, 0, 0, SDC_PRED_EPSILON};
    return c;
}
