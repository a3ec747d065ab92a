/* Hyperparameters of the three networks and the noise schedule, as read
 * from a diffusers config.json or inferred from tensor shapes. */
#ifndef SDC_MODELS_CONFIG_H
#define SDC_MODELS_CONFIG_H

#define SDC_MAX_LEVELS 6

typedef struct sdc_clip_config {
    int vocab_size;    /* 49408 */
    int hidden;        /* 768 */
    int layers;        /* 12 */
    int heads;         /* 12 */
    int intermediate;  /* 3072 */
    int max_positions; /* 77 */
    float eps;         /* layer_norm_eps, 1e-5 */
    int quick_gelu;    /* 1: hidden_act quick_gelu (SD 1.x), 0: gelu */
} sdc_clip_config;

typedef struct sdc_unet_config {
    int in_channels, out_channels;  /* 4, 4 */
    int levels;                     /* len(block_out_channels): 4 */
    int channels[SDC_MAX_LEVELS];   /* block_out_channels: 320 640 1280 1280 */
    int attn[SDC_MAX_LEVELS];       /* 1 where the down block is CrossAttnDownBlock2D
                                       (the up path mirrors it) */
    int layers_per_block;           /* 2 */
    int heads;                      /* attention heads (SD 1.x config's attention_head_dim: 8) */
    int cross_dim;                  /* cross_attention_dim: 768 */
    int groups;                     /* norm_num_groups: 32 */
    float eps;                      /* norm_eps: 1e-5 */
    int transformer_depth;          /* transformer_layers_per_block: 1 */
    int use_linear_projection;      /* 0 in SD 1.x (proj_in/out are 1x1 convs) */
    int sample_size;                /* 64 */
    int time_cond_proj_dim;         /* 0, or the width of the guidance-scale embedding
                                       LCM-distilled UNets add to the timestep's
                                       (time_embedding.cond_proj [C0, dim]): 256 */
} sdc_unet_config;

typedef struct sdc_vae_config {
    int in_channels, out_channels;  /* 3, 3 */
    int latent_channels;            /* 4 */
    int levels;                     /* len(block_out_channels): 4 */
    int channels[SDC_MAX_LEVELS];   /* 128 256 512 512 */
    int layers_per_block;           /* 2 (the decoder has layers_per_block + 1) */
    int groups;                     /* 32 */
    float scaling_factor;           /* 0.18215 */
    int sample_size;                /* 512: the training image side, diffusers'
                                       tile_sample_min_size (tiled decoding);
                                       0 when config.json gives a list */
} sdc_vae_config;

typedef enum { SDC_BETA_SCALED_LINEAR = 0, SDC_BETA_LINEAR } sdc_beta_schedule;
typedef enum { SDC_PRED_EPSILON = 0, SDC_PRED_V } sdc_prediction;

typedef struct sdc_sched_config {
    int num_train_timesteps;  /* 1000 */
    double beta_start;        /* 0.00085 */
    double beta_end;          /* 0.012 */
    sdc_beta_schedule beta_schedule;
    int steps_offset;         /* 1 */
    int set_alpha_to_one;     /* 0 */
    int clip_sample;          /* 0 */
    sdc_prediction prediction_type;
} sdc_sched_config;

/* SD 1.x defaults. */
sdc_clip_config sdc_clip_config_sd1(void);
sdc_unet_config sdc_unet_config_sd1(void);
sdc_vae_config sdc_vae_config_sd1(void);
sdc_sched_config sdc_sched_config_sd1(void);

#endif
