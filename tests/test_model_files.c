/* Model files: layout detection, original -> diffusers name mapping and
 * configs, checked on the tiny fixture model saved by diffusers in both
 * layouts (tests/fixtures/tiny-sd/ and tests/fixtures/tiny-sd.safetensors);
 * model families sdc does not run are refused with a message naming them. */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "harness.h"
#include "io/model_files.h"
#include "io/name_map.h"
#include "io/safetensors.h"

static char g_folder[4096], g_single[4096];

static sdc_model_files *open_ok(const char *path) {
    sdc_model_files *mf = NULL;
    sdc_status st = sdc_model_files_open(path, &mf);
    CHECKF(st == SDC_OK, "%s: %s", path, sdc_last_error());
    return st == SDC_OK ? mf : NULL;
}

/* Opening path fails with want and a message containing each needle. */
static void expect_fail(const char *path, sdc_status want, const char *needle1,
                        const char *needle2) {
    sdc_model_files *mf = (sdc_model_files *)1;
    sdc_clear_error();
    sdc_status st = sdc_model_files_open(path, &mf);
    const char *msg = sdc_last_error();
    CHECKF(st == want, "%s: got %s, want %s (%s)", path, sdc_status_str(st), sdc_status_str(want),
           msg);
    CHECK(mf == NULL);
    CHECKF(strstr(msg, needle1) != NULL, "message '%s' lacks '%s'", msg, needle1);
    if (needle2) CHECKF(strstr(msg, needle2) != NULL, "message '%s' lacks '%s'", msg, needle2);
    if (st == SDC_OK) sdc_model_files_close(mf);
}

/* ---- files written for the tests -------------------------------------- */

static void write_bytes(const char *path, const void *b, size_t n) {
    FILE *fp = fopen(path, "wb");
    if (!fp) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(2);
    }
    fwrite(b, 1, n, fp);
    fclose(fp);
}

static void write_text(const char *path, const char *s) { write_bytes(path, s, strlen(s)); }

/* A safetensors file holding one 1-element F32 tensor under each name. */
static void write_names(const char *path, const char *const *names, int n) {
    char header[8192];
    size_t k = 0;
    k += (size_t)snprintf(header, sizeof header, "{");
    for (int i = 0; i < n; i++)
        k += (size_t)snprintf(header + k, sizeof header - k,
                              "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[%d,%d]}",
                              i ? "," : "", names[i], 4 * i, 4 * i + 4);
    k += (size_t)snprintf(header + k, sizeof header - k, "}");
    while (k % 8) header[k++] = ' ';
    size_t total = 8 + k + 4 * (size_t)n;
    unsigned char *buf = calloc(1, total);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)k >> (8 * i));
    memcpy(buf + 8, header, k);
    write_bytes(path, buf, total);
    free(buf);
}

/* A copy of the fixture folder in t_tmp(name): weights as symlinks,
 * configs copied, so a test can change one file. */
static const char *copy_folder(const char *name) {
    static char dir[4096];
    char cmd[32768];
    snprintf(dir, sizeof dir, "%s", t_tmp(name));
    snprintf(
        cmd, sizeof cmd,
        "rm -rf '%s' && mkdir -p '%s' && cd '%s' && cp -r '%s'/. . && "
        "for f in unet/diffusion_pytorch_model.safetensors vae/diffusion_pytorch_model.safetensors "
        "text_encoder/model.safetensors; do rm -f $f; ln -s '%s'/$f $f; done",
        dir, dir, dir, g_folder, g_folder);
    if (system(cmd) != 0) {
        fprintf(stderr, "failed: %s\n", cmd);
        exit(2);
    }
    return dir;
}

/* Replaces the first occurrence of `from` by `to` in dir/rel. */
static void edit(const char *dir, const char *rel, const char *from, const char *to) {
    char path[4096], buf[65536];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    FILE *fp = fopen(path, "rb");
    size_t n = fp ? fread(buf, 1, sizeof buf - 1, fp) : 0;
    if (fp) fclose(fp);
    buf[n] = 0;
    char *at = strstr(buf, from);
    if (!at) {
        fprintf(stderr, "%s: '%s' not found\n", path, from);
        exit(2);
    }
    char out[70000];
    snprintf(out, sizeof out, "%.*s%s%s", (int)(at - buf), buf, to, at + strlen(from));
    write_text(path, out);
}

/* ---- tests ----------------------------------------------------------------- */

static void test_folder(void) {
    sdc_model_files *mf = open_ok(g_folder);
    if (!mf) return;
    CHECK(sdc_model_files_layout(mf) == SDC_LAYOUT_DIFFUSERS);
    CHECK(strcmp(sdc_model_files_name(mf), "tiny-sd") == 0);
    CHECK(sdc_model_files_vocab_path(mf) == NULL && sdc_model_files_merges_path(mf) == NULL);
    /* values from the fixture's config.json files */
    const sdc_unet_config *u = sdc_model_files_unet(mf);
    CHECK(u->in_channels == 4 && u->out_channels == 4 && u->levels == 2);
    CHECK(u->channels[0] == 32 && u->channels[1] == 64 && u->attn[0] == 1 && u->attn[1] == 0);
    CHECK(u->layers_per_block == 2 && u->heads == 8 && u->cross_dim == 32 && u->groups == 32);
    CHECK(u->transformer_depth == 1 && u->use_linear_projection == 0 && u->sample_size == 16);
    CHECK(fabsf(u->eps - 1e-5f) < 1e-12f);
    const sdc_vae_config *v = sdc_model_files_vae(mf);
    CHECK(v->in_channels == 3 && v->out_channels == 3 && v->latent_channels == 4 && v->levels == 2);
    CHECK(v->channels[0] == 32 && v->channels[1] == 64 && v->layers_per_block == 1 &&
          v->groups == 32);
    CHECK(v->scaling_factor == 0.18215f);
    const sdc_clip_config *c = sdc_model_files_clip(mf);
    CHECK(c->vocab_size == 49408 && c->hidden == 32 && c->layers == 2 && c->heads == 4);
    CHECK(c->intermediate == 37 && c->max_positions == 77 && c->quick_gelu == 1);
    const sdc_sched_config *s = sdc_model_files_sched(mf);
    CHECK(s->num_train_timesteps == 1000 && s->beta_start == 0.00085 && s->beta_end == 0.012);
    CHECK(s->beta_schedule == SDC_BETA_SCALED_LINEAR && s->steps_offset == 1);
    CHECK(s->set_alpha_to_one == 0 && s->clip_sample == 0 &&
          s->prediction_type == SDC_PRED_EPSILON);

    const sdc_weight *w = sdc_model_files_get(mf, "unet.conv_in.weight");
    CHECK(w && w->ndim == 4 && w->shape[0] == 32 && w->shape[1] == 4 && w->dtype == SDC_DT_F32);
    w = sdc_model_files_get(mf, "text_encoder.text_model.embeddings.token_embedding.weight");
    CHECK(w && w->dtype == SDC_DT_BF16 && w->shape[0] == 49408 && w->shape[1] == 32);
    w = sdc_model_files_get(mf, "vae.decoder.mid_block.attentions.0.to_q.weight");
    CHECK(w && w->ndim == 2 && w->shape[0] == 64 && w->shape[1] == 64);
    CHECK(sdc_model_files_get(mf, "unet.nope") == NULL);
    CHECK(sdc_model_files_get(mf, "conv_in.weight") == NULL);
    CHECK(sdc_model_files_key(mf, sdc_model_files_count(mf)) == NULL);
    sdc_model_files_close(mf);
}

/* Every canonical weight of the folder is in the single file with the same
 * shape and the same values (compared as float: dtypes differ). */
static void test_single_matches_folder(void) {
    sdc_model_files *a = open_ok(g_folder), *b = open_ok(g_single);
    if (!a || !b) goto done;
    CHECK(sdc_model_files_layout(b) == SDC_LAYOUT_SINGLE_FILE);
    CHECK(strcmp(sdc_model_files_name(b), "tiny-sd") == 0);
    CHECK(sdc_model_files_vocab_path(b) == NULL);
    size_t n = sdc_model_files_count(a), missing = 0, bad_shape = 0, bad_values = 0;
    CHECK(n > 400);
    for (size_t i = 0; i < n; i++) {
        const char *key = sdc_model_files_key(a, i);
        const sdc_weight *wa = sdc_model_files_get(a, key), *wb = sdc_model_files_get(b, key);
        CHECK(wa != NULL);
        if (!wb) {
            if (missing++ < 10) fprintf(stderr, "single file lacks %s\n", key);
            continue;
        }
        int same = wa->ndim == wb->ndim && wa->numel == wb->numel;
        for (int d = 0; same && d < wa->ndim; d++) same = wa->shape[d] == wb->shape[d];
        if (!same) {
            if (bad_shape++ < 10) fprintf(stderr, "shape differs: %s\n", key);
            continue;
        }
        int is_float =
            wa->dtype == SDC_DT_F32 || wa->dtype == SDC_DT_F16 || wa->dtype == SDC_DT_BF16;
        if (!is_float) continue;
        for (int64_t j = 0; j < wa->numel; j++)
            if (sdc_weight_get(wa, j) != sdc_weight_get(wb, j)) {
                if (bad_values++ < 10)
                    fprintf(stderr, "values differ: %s[%lld]\n", key, (long long)j);
                break;
            }
    }
    CHECKF(missing == 0, "%zu missing", missing);
    CHECKF(bad_shape == 0, "%zu shapes differ", bad_shape);
    CHECKF(bad_values == 0, "%zu tensors differ", bad_values);
    /* the single file maps nothing the folder lacks but position_ids */
    size_t extra = 0;
    for (size_t i = 0; i < sdc_model_files_count(b); i++) {
        const char *key = sdc_model_files_key(b, i);
        if (!sdc_model_files_get(a, key) && !strstr(key, "position_ids")) {
            if (extra++ < 10) fprintf(stderr, "only in the single file: %s\n", key);
        }
    }
    CHECK(extra == 0);
    const sdc_weight *w =
        sdc_model_files_get(b, "vae.encoder.mid_block.attentions.0.to_out.0.weight");
    CHECK(w && w->ndim == 2 && w->shape[0] == 64 && w->shape[1] == 64 && w->dtype == SDC_DT_F32);
    w = sdc_model_files_get(b, "unet.up_blocks.0.upsamplers.0.conv.weight");
    CHECK(w && w->ndim == 4 && w->dtype == SDC_DT_F16);
    w = sdc_model_files_get(b, "text_encoder.text_model.embeddings.position_ids");
    CHECK(w && w->dtype == SDC_DT_I64 && w->numel == 77);
done:
    sdc_model_files_close(a);
    sdc_model_files_close(b);
}

/* Configs inferred from the single file's shapes agree with config.json
 * (sample_size cannot be inferred: SD 1.x's 64). */
static int same_unet(const sdc_unet_config *a, const sdc_unet_config *b) {
    int same = a->in_channels == b->in_channels && a->out_channels == b->out_channels &&
               a->levels == b->levels && a->layers_per_block == b->layers_per_block &&
               a->heads == b->heads && a->cross_dim == b->cross_dim && a->groups == b->groups &&
               a->eps == b->eps && a->transformer_depth == b->transformer_depth &&
               a->use_linear_projection == b->use_linear_projection;
    for (int i = 0; i < SDC_MAX_LEVELS; i++)
        same = same && a->channels[i] == b->channels[i] && a->attn[i] == b->attn[i];
    return same; /* sample_size aside */
}

static int same_vae(const sdc_vae_config *a, const sdc_vae_config *b) {
    int same = a->in_channels == b->in_channels && a->out_channels == b->out_channels &&
               a->latent_channels == b->latent_channels && a->levels == b->levels &&
               a->layers_per_block == b->layers_per_block && a->groups == b->groups &&
               a->scaling_factor == b->scaling_factor;
    for (int i = 0; i < SDC_MAX_LEVELS; i++) same = same && a->channels[i] == b->channels[i];
    return same;
}

static int same_clip(const sdc_clip_config *a, const sdc_clip_config *b) {
    return a->vocab_size == b->vocab_size && a->hidden == b->hidden && a->layers == b->layers &&
           a->heads == b->heads && a->intermediate == b->intermediate &&
           a->max_positions == b->max_positions && a->eps == b->eps &&
           a->quick_gelu == b->quick_gelu;
}

static int same_sched(const sdc_sched_config *a, const sdc_sched_config *b) {
    return a->num_train_timesteps == b->num_train_timesteps && a->beta_start == b->beta_start &&
           a->beta_end == b->beta_end && a->beta_schedule == b->beta_schedule &&
           a->steps_offset == b->steps_offset && a->set_alpha_to_one == b->set_alpha_to_one &&
           a->clip_sample == b->clip_sample && a->prediction_type == b->prediction_type;
}

static void test_configs_agree(void) {
    sdc_model_files *a = open_ok(g_folder), *b = open_ok(g_single);
    if (a && b) {
        CHECK(sdc_model_files_unet(b)->sample_size == 64);
        CHECK(same_unet(sdc_model_files_unet(a), sdc_model_files_unet(b)));
        CHECK(same_vae(sdc_model_files_vae(a), sdc_model_files_vae(b)));
        CHECK(same_clip(sdc_model_files_clip(a), sdc_model_files_clip(b)));
        CHECK(same_sched(sdc_model_files_sched(a), sdc_model_files_sched(b)));
    }
    sdc_model_files_close(a);
    sdc_model_files_close(b);
}

/* A folder without config.json files: configs come from shapes and agree. */
static void test_folder_without_configs(void) {
    const char *dir = copy_folder("noconfig");
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "rm -f '%s'/*/config.json '%s'/scheduler/scheduler_config.json", dir,
             dir);
    CHECK(system(cmd) == 0);
    sdc_model_files *a = open_ok(g_folder), *b = open_ok(dir);
    if (a && b) {
        CHECK(same_unet(sdc_model_files_unet(a), sdc_model_files_unet(b)));
        CHECK(same_vae(sdc_model_files_vae(a), sdc_model_files_vae(b)));
        CHECK(same_clip(sdc_model_files_clip(a), sdc_model_files_clip(b)));
        CHECK(same_sched(sdc_model_files_sched(a), sdc_model_files_sched(b)));
    }
    sdc_model_files_close(a);
    sdc_model_files_close(b);
}

static void test_name_map(void) {
    /* SD 1.x: L = 2, 4 levels in the UNet and the VAE */
    sdc_orig_layout lay = {2, 4};
    static const char *const cases[][2] = {
        {"model.diffusion_model.time_embed.0.weight", "unet.time_embedding.linear_1.weight"},
        {"model.diffusion_model.time_embed.2.bias", "unet.time_embedding.linear_2.bias"},
        {"model.diffusion_model.input_blocks.0.0.weight", "unet.conv_in.weight"},
        {"model.diffusion_model.input_blocks.1.0.in_layers.0.weight",
         "unet.down_blocks.0.resnets.0.norm1.weight"},
        {"model.diffusion_model.input_blocks.2.1.proj_in.weight",
         "unet.down_blocks.0.attentions.1.proj_in.weight"},
        {"model.diffusion_model.input_blocks.3.0.op.weight",
         "unet.down_blocks.0.downsamplers.0.conv.weight"},
        {"model.diffusion_model.input_blocks.4.0.skip_connection.bias",
         "unet.down_blocks.1.resnets.0.conv_shortcut.bias"},
        {"model.diffusion_model.input_blocks.9.0.op.bias",
         "unet.down_blocks.2.downsamplers.0.conv.bias"},
        {"model.diffusion_model.input_blocks.11.0.emb_layers.1.weight",
         "unet.down_blocks.3.resnets.1.time_emb_proj.weight"},
        {"model.diffusion_model.middle_block.0.out_layers.3.weight",
         "unet.mid_block.resnets.0.conv2.weight"},
        {"model.diffusion_model.middle_block.1.transformer_blocks.0.attn2.to_k.weight",
         "unet.mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight"},
        {"model.diffusion_model.middle_block.2.in_layers.2.bias",
         "unet.mid_block.resnets.1.conv1.bias"},
        {"model.diffusion_model.output_blocks.2.1.conv.weight",
         "unet.up_blocks.0.upsamplers.0.conv.weight"},
        {"model.diffusion_model.output_blocks.5.2.conv.bias",
         "unet.up_blocks.1.upsamplers.0.conv.bias"},
        {"model.diffusion_model.output_blocks.5.1.norm.weight",
         "unet.up_blocks.1.attentions.2.norm.weight"},
        {"model.diffusion_model.output_blocks.11.0.out_layers.0.bias",
         "unet.up_blocks.3.resnets.2.norm2.bias"},
        {"model.diffusion_model.out.0.weight", "unet.conv_norm_out.weight"},
        {"model.diffusion_model.out.2.bias", "unet.conv_out.bias"},
        {"first_stage_model.encoder.down.0.block.1.conv2.weight",
         "vae.encoder.down_blocks.0.resnets.1.conv2.weight"},
        {"first_stage_model.encoder.down.2.downsample.conv.bias",
         "vae.encoder.down_blocks.2.downsamplers.0.conv.bias"},
        {"first_stage_model.decoder.up.3.block.2.norm1.weight",
         "vae.decoder.up_blocks.0.resnets.2.norm1.weight"},
        {"first_stage_model.decoder.up.0.block.0.nin_shortcut.weight",
         "vae.decoder.up_blocks.3.resnets.0.conv_shortcut.weight"},
        {"first_stage_model.decoder.up.1.upsample.conv.weight",
         "vae.decoder.up_blocks.2.upsamplers.0.conv.weight"},
        {"first_stage_model.decoder.mid.attn_1.proj_out.weight",
         "vae.decoder.mid_block.attentions.0.to_out.0.weight"},
        {"first_stage_model.encoder.mid.attn_1.norm.bias",
         "vae.encoder.mid_block.attentions.0.group_norm.bias"},
        {"first_stage_model.encoder.mid.block_2.conv1.weight",
         "vae.encoder.mid_block.resnets.1.conv1.weight"},
        {"first_stage_model.decoder.norm_out.weight", "vae.decoder.conv_norm_out.weight"},
        {"first_stage_model.post_quant_conv.weight", "vae.post_quant_conv.weight"},
        {"cond_stage_model.transformer.text_model.final_layer_norm.weight",
         "text_encoder.text_model.final_layer_norm.weight"},
        {"cond_stage_model.transformer.embeddings.token_embedding.weight",
         "text_encoder.text_model.embeddings.token_embedding.weight"},
    };
    char out[512];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sdc_name_result r = sdc_name_from_original(cases[i][0], &lay, out, sizeof out);
        CHECKF(r == SDC_NAME_MAPPED && strcmp(out, cases[i][1]) == 0, "%s -> %s (want %s)",
               cases[i][0], r == SDC_NAME_MAPPED ? out : "?", cases[i][1]);
    }
    CHECK(sdc_name_from_original("model_ema.diffusion_modelinput_blocks00weight", &lay, out,
                                 sizeof out) == SDC_NAME_IGNORED);
    CHECK(sdc_name_from_original("alphas_cumprod", &lay, out, sizeof out) == SDC_NAME_IGNORED);
    CHECK(sdc_name_from_original("model.diffusion_model.input_blocks.x.0.weight", &lay, out,
                                 sizeof out) == SDC_NAME_BAD);
    CHECK(sdc_name_from_original("model.diffusion_model.input_blocks.01.0.weight", &lay, out,
                                 sizeof out) == SDC_NAME_BAD);
    CHECK(sdc_name_from_original("model.diffusion_model.input_blocks.99999999.0.weight", &lay, out,
                                 sizeof out) == SDC_NAME_BAD);
    CHECK(sdc_name_from_original("model.diffusion_model.input_blocks.3.1.weight", &lay, out,
                                 sizeof out) == SDC_NAME_BAD);
    CHECK(sdc_name_from_original("first_stage_model.decoder.up.4.block.0.conv1.weight", &lay, out,
                                 sizeof out) == SDC_NAME_BAD);
    CHECK(sdc_name_from_original("first_stage_model.decoder.mid.attn_1.x.weight", &lay, out,
                                 sizeof out) == SDC_NAME_BAD);
    CHECK(sdc_name_from_original("model.diffusion_model.out.2.weight", &lay, out, 10) ==
          SDC_NAME_BAD);
    /* older diffusers VAE attention names */
    CHECK(sdc_name_from_diffusers("vae", "decoder.mid_block.attentions.0.query.weight", out,
                                  sizeof out) == SDC_NAME_MAPPED &&
          strcmp(out, "vae.decoder.mid_block.attentions.0.to_q.weight") == 0);
    CHECK(sdc_name_from_diffusers("vae", "encoder.mid_block.attentions.0.proj_attn.bias", out,
                                  sizeof out) == SDC_NAME_MAPPED &&
          strcmp(out, "vae.encoder.mid_block.attentions.0.to_out.0.bias") == 0);
    CHECK(sdc_name_from_diffusers("unet", "mid_block.attentions.0.norm.weight", out, sizeof out) ==
              SDC_NAME_MAPPED &&
          strcmp(out, "unet.mid_block.attentions.0.norm.weight") == 0);
}

static void test_pickles(void) {
    const char *p = t_tmp("model.ckpt");
    static const char zip[] = "PK\x03\x04\x00\x00\x00\x00\x08\x00"
                              "archive/data.pkl";
    write_bytes(p, zip, sizeof zip - 1);
    expect_fail(p, SDC_ERR_UNSUPPORTED, "pickle", ".safetensors");
    p = t_tmp("model.pt");
    static const char pickle[] = "\x80\x02}q\x00(X\x05\x00\x00\x00state.";
    write_bytes(p, pickle, sizeof pickle - 1);
    expect_fail(p, SDC_ERR_UNSUPPORTED, "pickle", "save_file");
    const char *dir = copy_folder("binonly");
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "cd '%s/unet' && rm diffusion_pytorch_model.safetensors && "
             "printf 'PK\\003\\004xxxxxxxxxxxx' > diffusion_pytorch_model.bin",
             dir);
    CHECK(system(cmd) == 0);
    expect_fail(dir, SDC_ERR_UNSUPPORTED, "diffusion_pytorch_model.bin", "safetensors");
}

static void test_other_families_single(void) {
    const char *sd2[] = {"model.diffusion_model.input_blocks.0.0.weight",
                         "first_stage_model.encoder.conv_in.weight",
                         "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight"};
    const char *p = t_tmp("sd2.safetensors");
    write_names(p, sd2, 3);
    expect_fail(p, SDC_ERR_UNSUPPORTED, "SD 2.x", p);
    const char *xl[] = {"model.diffusion_model.input_blocks.0.0.weight",
                        "first_stage_model.encoder.conv_in.weight",
                        "conditioner.embedders.0.transformer.text_model.final_layer_norm.weight",
                        "conditioner.embedders.1.model.ln_final.weight"};
    p = t_tmp("sdxl.safetensors");
    write_names(p, xl, 4);
    expect_fail(p, SDC_ERR_UNSUPPORTED, "SDXL", p);
    const char *other[] = {"encoder.layer.0.weight", "lm_head.weight"};
    p = t_tmp("bert.safetensors");
    write_names(p, other, 2);
    expect_fail(p, SDC_ERR_FORMAT, "not a Stable Diffusion checkpoint", p);
    const char *unet_only[] = {"down_blocks.0.resnets.0.conv1.weight", "conv_in.weight"};
    p = t_tmp("unet_only.safetensors");
    write_names(p, unet_only, 2);
    expect_fail(p, SDC_ERR_FORMAT, "diffusers component", p);
    const char *novae[] = {"model.diffusion_model.input_blocks.0.0.weight",
                           "cond_stage_model.transformer.text_model.final_layer_norm.weight"};
    p = t_tmp("novae.safetensors");
    write_names(p, novae, 2);
    expect_fail(p, SDC_ERR_FORMAT, "no VAE", p);
    /* names right, tensors missing: a clear message, no crash */
    const char *sparse[] = {"model.diffusion_model.input_blocks.1.0.in_layers.0.weight",
                            "first_stage_model.encoder.down.0.block.0.conv1.weight",
                            "first_stage_model.decoder.up.0.block.0.conv1.weight",
                            "cond_stage_model.transformer.text_model.final_layer_norm.weight"};
    p = t_tmp("sparse.safetensors");
    write_names(p, sparse, 4);
    expect_fail(p, SDC_ERR_FORMAT, "unet.conv_in.weight", p);
    /* hostile safetensors inside the model path: the reader's message */
    p = t_tmp("lies.safetensors");
    static const char lies[] = "\xff\xff\xff\xff\x00\x00\x00\x00{}";
    write_bytes(p, lies, sizeof lies - 1);
    expect_fail(p, SDC_ERR_FORMAT, "header length", p);
    expect_fail(t_tmp("no-such-model.safetensors"), SDC_ERR_IO, "no-such-model", "cannot open");
}

static void test_other_families_folder(void) {
    const char *dir = copy_folder("sd2a");
    edit(dir, "unet/config.json", "\"cross_attention_dim\": 32", "\"cross_attention_dim\": 1024");
    expect_fail(dir, SDC_ERR_UNSUPPORTED, "SD 2.x", NULL);
    dir = copy_folder("sd2b");
    edit(dir, "unet/config.json", "\"use_linear_projection\": false",
         "\"use_linear_projection\": true");
    expect_fail(dir, SDC_ERR_UNSUPPORTED, "SD 2.x", "use_linear_projection");
    dir = copy_folder("sd2c");
    edit(dir, "unet/config.json", "\"attention_head_dim\": 8", "\"attention_head_dim\": [5, 10]");
    expect_fail(dir, SDC_ERR_UNSUPPORTED, "SD 2.x", "attention_head_dim");
    dir = copy_folder("sd2v");
    edit(dir, "scheduler/scheduler_config.json", "\"clip_sample\": false",
         "\"clip_sample\": false, \"prediction_type\": \"v_prediction\"");
    expect_fail(dir, SDC_ERR_UNSUPPORTED, "v-prediction", NULL);
    /* inpainting UNets (9 input channels) load: tests/fixtures/tiny-sd-inpaint */
    dir = copy_folder("pix2pix");
    edit(dir, "unet/config.json", "\"in_channels\": 4", "\"in_channels\": 8");
    expect_fail(dir, SDC_ERR_UNSUPPORTED, "InstructPix2Pix", NULL);
    dir = copy_folder("sdxl1");
    edit(dir, "unet/config.json", "\"addition_embed_type\": null",
         "\"addition_embed_type\": \"text_time\"");
    expect_fail(dir, SDC_ERR_UNSUPPORTED, "SDXL", NULL);
    dir = copy_folder("sdxl2");
    edit(dir, "model_index.json", "\"StableDiffusionPipeline\"", "\"StableDiffusionXLPipeline\"");
    expect_fail(dir, SDC_ERR_UNSUPPORTED, "StableDiffusionXLPipeline", NULL);
    dir = copy_folder("sdxl3");
    char p[4096];
    snprintf(p, sizeof p, "%s/text_encoder_2", dir);
    mkdir(p, 0755);
    expect_fail(dir, SDC_ERR_UNSUPPORTED, "SDXL", "text_encoder_2");
    dir = copy_folder("blocks");
    edit(dir, "unet/config.json", "\"DownBlock2D\"", "\"SimpleCrossAttnDownBlock2D\"");
    expect_fail(dir, SDC_ERR_UNSUPPORTED, "SimpleCrossAttnDownBlock2D", NULL);
    dir = copy_folder("badjson");
    edit(dir, "vae/config.json", "{", "[");
    expect_fail(dir, SDC_ERR_FORMAT, "vae/config.json", "JSON");
    dir = copy_folder("badrange");
    edit(dir, "unet/config.json", "\"layers_per_block\": 2", "\"layers_per_block\": -3");
    expect_fail(dir, SDC_ERR_FORMAT, "layers_per_block", NULL);
}

static void test_incomplete_folders(void) {
    const char *dir = copy_folder("novae");
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "rm -rf '%s/vae'", dir);
    CHECK(system(cmd) == 0);
    expect_fail(dir, SDC_ERR_FORMAT, "VAE", "vae/");
    dir = copy_folder("noweights");
    snprintf(cmd, sizeof cmd, "rm -f '%s/text_encoder/model.safetensors'", dir);
    CHECK(system(cmd) == 0);
    expect_fail(dir, SDC_ERR_FORMAT, "text encoder", "text_encoder/model.safetensors");
    dir = copy_folder("empty");
    snprintf(cmd, sizeof cmd, "rm -rf '%s'/*", dir);
    CHECK(system(cmd) == 0);
    expect_fail(dir, SDC_ERR_FORMAT, "not a diffusers model folder", NULL);
    /* fp16 variant names are found; a tokenizer folder is reported */
    dir = copy_folder("variant");
    snprintf(cmd, sizeof cmd,
             "cd '%s' && mv unet/diffusion_pytorch_model.safetensors "
             "unet/diffusion_pytorch_model.fp16.safetensors"
             " && mkdir tokenizer && echo '{}' > tokenizer/vocab.json && echo '#' > "
             "tokenizer/merges.txt",
             dir);
    CHECK(system(cmd) == 0);
    char folder[4096];
    snprintf(folder, sizeof folder, "%s/", dir); /* trailing slash */
    sdc_model_files *mf = open_ok(folder);
    if (mf) {
        CHECK(strcmp(sdc_model_files_name(mf), "variant") == 0);
        const char *v = sdc_model_files_vocab_path(mf), *m = sdc_model_files_merges_path(mf);
        CHECK(v && strstr(v, "tokenizer/vocab.json") && m && strstr(m, "tokenizer/merges.txt"));
        CHECK(sdc_model_files_get(mf, "unet.conv_out.weight") != NULL);
    }
    sdc_model_files_close(mf);
}

int main(void) {
    snprintf(g_folder, sizeof g_folder, "%s", t_fixture("tiny-sd"));
    snprintf(g_single, sizeof g_single, "%s", t_fixture("tiny-sd.safetensors"));
    char abs[PATH_MAX]; /* copies link to the fixtures by absolute path */
    if (realpath(g_folder, abs)) snprintf(g_folder, sizeof g_folder, "%s", abs);
    RUN(test_name_map);
    RUN(test_folder);
    RUN(test_single_matches_folder);
    RUN(test_configs_agree);
    RUN(test_folder_without_configs);
    RUN(test_pickles);
    RUN(test_other_families_single);
    RUN(test_other_families_folder);
    RUN(test_incomplete_folders);
    return t_summary();
}
