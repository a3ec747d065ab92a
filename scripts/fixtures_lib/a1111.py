"""a1111_ref.safetensors: AUTOMATIC1111's text encoding (chunks of 75
tokens, BREAK, the comma backtrack, emphasis with its mean-restoring
rescale, textual-inversion embeddings, CLIP skip), for tests/test_a1111.c.

The reference is AUTOMATIC1111/stable-diffusion-webui (no Python package to
install), rewritten here from its rules:

  modules/sd_hijack_clip.py   tokenize_line (runs tokenized one by one
                              without BOS/EOS; a chunk holds 75; BREAK
                              ends it; a full chunk moves the tokens after
                              a comma at most 20 back into the next;
                              embeddings found by their names' tokens,
                              longest first, never split), forward (each
                              chunk encoded alone; CLIP skip N: hidden
                              state -N through final_layer_norm)
  modules/sd_emphasis.py      EmphasisOriginal (z * weight, then z * mean
                              before / mean after)
  modules/sd_hijack.py        EmbeddingsWithFixes (the vectors replace the
                              token embeddings at their positions)
  modules/sd_samplers_cfg_denoiser.py  pad_cond_uncond: the shorter of
                              prompt and negative padded with the empty
                              prompt's encoding

The text encoder is the tiny one in tests/fixtures/tiny-sd; the tokenizer is
transformers' CLIPTokenizer on SD 1.x's vocabulary.  Pipelines: diffusers'
StableDiffusionPipeline given prompt_embeds / negative_prompt_embeds from
the encoding above; and one with its own clip_skip (plain prompts).

Writes outdir/a1111_ref.safetensors:
  chunk.<i>.ids I32 [n*77], chunk.<i>.mult F32 [n*77]: tokenize_line's chunks
    of chunk case i (metadata "chunk_cases": [{text, fixes: [[pos, name, n]]}])
  <case>.ctx F32 [B, S, D]: the conditioning (negative first when B == 2)
  <case>.latents / <case>.image: the pipeline's output (pipeline cases)
  metadata "cases": [{name, prompt, negative, clip_skip, syntax, cfg, steps,
    seed, width, height, pipeline (0/1)}]
and outdir/embeddings/*.safetensors (the embeddings the cases use, and some
that tests refuse).
"""
import json
import math
import os
import tempfile

import torch
from safetensors.torch import save_file

from . import prompts as pp

CHUNK = 75
BACKTRACK = 20
SEED = 77

EMBEDDINGS = {  # name: (shape, key) -- vectors are random, D = 32
    "tinyemb": ((2, 32), "emb_params"),      # A1111's layout
    "my-style": ((32,), "<my-style>"),       # diffusers' learned_embeds, one vector
    "three vec": ((3, 32), "emb_params"),
}
BAD_EMBEDDINGS = {  # name: tensors (the tests expect these refused by name)
    "wide": {"emb_params": ((2, 48), torch.float32)},
    "sdxl": {"clip_l": ((1, 32), torch.float32), "clip_g": ((1, 48), torch.float32)},
    "twokeys": {"a": ((1, 32), torch.float32), "b": ((1, 32), torch.float32)},
}

LONG = ", ".join(f"detail {w}" for w in ["red", "green", "blue", "small", "large", "old", "new",
                                         "bright", "dark", "soft", "sharp", "warm", "cold",
                                         "round", "square", "shiny", "matte", "wet", "dry",
                                         "tall", "short", "heavy", "light", "empty", "full",
                                         "quiet", "loud", "fast", "slow", "near", "far"])

# (name, prompt, negative, clip_skip, run the pipeline)
CASES = [
    ("plain", "a red cube on a wooden table, studio light", "blurry, low quality", 1, 1),
    ("emph", "a (red:1.3) cube on a [wooden] table, ((studio light))",
     "blurry, (low quality:1.4)", 1, 1),
    ("long", "a photo of a red cube, " + LONG + ", (masterpiece:1.2)", "blurry", 1, 1),
    ("break", "a red cube BREAK on a (table:0.8) BREAK studio light", LONG, 1, 0),
    ("skip2", "a (red:1.3) cube on a [wooden] table", "blurry", 2, 1),
    ("ti", "a tinyemb cube, (my-style:1.2), [three vec]", "blurry, tinyemb", 1, 1),
    ("ti_long", "tinyemb, " + LONG + ", three vec, " + LONG, "", 1, 0),
    ("empty", "", "", 1, 0),
]

CHUNK_EXTRA = [
    LONG, LONG + ", " + LONG, "BREAK " * 3, "a " * 75, "a " * 76, "a " * 150, "a, " * 40,
    "word " * 60 + ", " + "x " * 30,  # comma 16 back from the chunk's end: backtrack
    "word " * 50 + ", " + "x " * 30,  # comma 25 back: no backtrack
    "a " * 74 + ", b c d",
    "(a:1.5) " * 80, "[x] , " * 50 + "BREAK (y)",
    "a " * 73 + "three vec",  # an embedding that would cross the chunk: moved on
    "a " * 70 + ", b c d e tinyemb f",  # the comma backtrack moves an embedding's tokens
    "tinyemb tinyemb my-style three vec three tinyemb", "(tinyemb:0.5) [my-style]",
    "three vec" * 30,
]


def tokenize_runs(tokenizer, texts):
    return tokenizer(texts, truncation=False, add_special_tokens=False)["input_ids"]


class Embeddings:
    def __init__(self, tokenizer, vectors):
        self.vectors = vectors  # name -> tensor [n, D]
        self.ids = {name: tokenize_runs(tokenizer, [name])[0] for name in sorted(vectors)}

    def find(self, tokens, pos):
        best, best_len = None, 0
        for name in sorted(self.ids):  # the longest; the first in name order among equals
            ids = self.ids[name]
            if len(ids) > best_len and tokens[pos:pos + len(ids)] == ids:
                best, best_len = name, len(ids)
        return best, best_len


def tokenize_line(tokenizer, line, emb, bos=49406, eos=49407):
    """A1111's tokenize_line: [(tokens[77], mults[77], fixes[(offset, name)])]"""
    runs = pp.attention(line)
    comma = tokenizer.get_vocab()[",</w>"]
    chunks = []
    cur = {"t": [], "m": [], "f": []}
    last_comma = -1

    def next_chunk():
        nonlocal cur, last_comma
        pad = CHUNK - len(cur["t"])
        t = [bos] + cur["t"] + [eos] * pad + [eos]
        m = [1.0] + cur["m"] + [1.0] * pad + [1.0]
        chunks.append((t, m, cur["f"]))
        cur = {"t": [], "m": [], "f": []}
        last_comma = -1

    for tokens, (text, weight) in zip(tokenize_runs(tokenizer, [t for t, _ in runs]), runs):
        if text == "BREAK" and weight == -1:
            next_chunk()
            continue
        pos = 0
        while pos < len(tokens):
            tok = tokens[pos]
            if tok == comma:
                last_comma = len(cur["t"])
            elif len(cur["t"]) == CHUNK and last_comma != -1 and len(cur["t"]) - last_comma <= BACKTRACK:
                at = last_comma + 1
                rt, rm = cur["t"][at:], cur["m"][at:]
                cur["t"], cur["m"] = cur["t"][:at], cur["m"][:at]
                next_chunk()
                cur["t"], cur["m"] = rt, rm
            if len(cur["t"]) == CHUNK:
                next_chunk()
            name, name_len = emb.find(tokens, pos) if emb else (None, 0)
            if name is None:
                cur["t"].append(tok)
                cur["m"].append(weight)
                pos += 1
                continue
            n = emb.vectors[name].shape[0]
            if len(cur["t"]) + n > CHUNK:
                next_chunk()
            cur["f"].append((len(cur["t"]), name))
            cur["t"] += [0] * n
            cur["m"] += [weight] * n
            pos += name_len
    if cur["t"] or not chunks:
        next_chunk()
    return chunks


@torch.no_grad()
def encode_chunk(text_encoder, chunk, emb, clip_skip):
    tokens, mults, fixes = chunk
    ids = torch.tensor([tokens])
    tm = getattr(text_encoder, "text_model", text_encoder)  # transformers 5 has no text_model
    emb_layer = tm.embeddings.token_embedding
    x = emb_layer(ids)
    for offset, name in fixes:  # EmbeddingsWithFixes: offset + 1 for the BOS
        vec = emb.vectors[name]
        n = min(vec.shape[0], x.shape[1] - offset - 1)
        x[0, offset + 1:offset + 1 + n] = vec[:n]
    # the token table with the fixed rows appended, so that the model's own
    # embeddings module adds the positions
    table = torch.cat([emb_layer.weight, x[0]], 0)
    saved = emb_layer.weight
    emb_layer.weight = torch.nn.Parameter(table, requires_grad=False)
    try:
        idx = torch.arange(saved.shape[0], saved.shape[0] + x.shape[1])[None]
        out = text_encoder(idx, output_hidden_states=True)
    finally:
        emb_layer.weight = saved
    if clip_skip > 1:
        z = tm.final_layer_norm(out.hidden_states[-clip_skip])
    else:
        z = out.last_hidden_state
    m = torch.asarray(mults)  # float32, as A1111 makes it
    original_mean = z.mean()
    z = z * m.reshape(m.shape + (1,)).expand(z.shape)
    new_mean = z.mean()
    return z * (original_mean / new_mean)


def encode(text_encoder, tokenizer, text, emb, clip_skip):
    chunks = tokenize_line(tokenizer, text, emb)
    return [encode_chunk(text_encoder, c, emb, clip_skip) for c in chunks]


def make(outdir):
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline
    from .pipeline import _tokenizer, tiny_sd

    torch.use_deterministic_algorithms(True)
    unet, vae, text_encoder, pndm = tiny_sd(outdir)
    sched = EulerDiscreteScheduler.from_config(pndm.config)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = _tokenizer(tmp)

    # the embeddings
    edir = os.path.join(outdir, "embeddings")
    os.makedirs(edir, exist_ok=True)
    gen = torch.Generator().manual_seed(5)
    vectors = {}
    for name, (shape, key) in EMBEDDINGS.items():
        t = torch.randn(shape, generator=gen) * 0.02
        save_file({key: t.contiguous()}, os.path.join(edir, name + ".safetensors"))
        vectors[name] = t.reshape(-1, 32)
    for name, tensors in BAD_EMBEDDINGS.items():
        save_file({k: torch.zeros(s, dtype=dt) for k, (s, dt) in tensors.items()},
                  os.path.join(edir, name + ".safetensors"))
    emb = Embeddings(tokenizer, vectors)

    tensors, chunk_cases = {}, []
    texts = [t for t in pp.PROMPTS] + CHUNK_EXTRA
    for i, text in enumerate(texts):
        try:
            chunks = tokenize_line(tokenizer, text, emb)
        except ValueError:
            continue  # A1111 fails the prompt (a weight float() rejects)
        tensors[f"chunk.{i}.ids"] = torch.tensor([t for c in chunks for t in c[0]], dtype=torch.int32)
        tensors[f"chunk.{i}.mult"] = torch.tensor([m for c in chunks for m in c[1]], dtype=torch.float32)
        fixes = [[k * 77 + 1 + off, name, vectors[name].shape[0]]
                 for k, c in enumerate(chunks) for off, name in c[2]]
        chunk_cases.append({"index": i, "text": text, "fixes": fixes})

    cases = []
    for name, prompt, negative, clip_skip, run in CASES:
        zp = encode(text_encoder, tokenizer, prompt, emb, clip_skip)
        zn = encode(text_encoder, tokenizer, negative, emb, clip_skip)
        empty = encode(text_encoder, tokenizer, "", emb, clip_skip)[0]
        n = max(len(zp), len(zn))
        zp += [empty] * (n - len(zp))
        zn += [empty] * (n - len(zn))
        cond, uncond = torch.cat(zp, 1), torch.cat(zn, 1)
        tensors[f"{name}.ctx"] = torch.cat([uncond, cond], 0).contiguous()
        c = dict(name=name, prompt=prompt, negative=negative, clip_skip=clip_skip,
                 syntax="a1111", cfg=7.5, steps=4, seed=SEED, width=32, height=32, pipeline=run)
        if run:
            pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                           unet=unet, scheduler=sched, safety_checker=None,
                                           feature_extractor=None, requires_safety_checker=False)
            pipe.set_progress_bar_config(disable=True)
            for kind, key in (("latent", "latents"), ("np", "image")):
                with torch.no_grad():
                    r = pipe(prompt_embeds=cond, negative_prompt_embeds=uncond, height=32, width=32,
                             num_inference_steps=4, guidance_scale=7.5,
                             generator=torch.Generator("cpu").manual_seed(SEED), output_type=kind)
                tensors[f"{name}.{key}"] = torch.as_tensor(r.images).float().contiguous()
        cases.append(c)
        print(f"  {name:10s} chunks {n}  ctx {tuple(tensors[name + '.ctx'].shape)}")

    # diffusers' own clip_skip on a plain prompt: clip_skip=1 is A1111's CLIP skip 2.
    # diffusers 0.42.1 reads text_encoder.text_model.final_layer_norm, which
    # transformers 5 moved up to the model: an alias, not a submodule
    if not hasattr(text_encoder, "text_model"):
        object.__setattr__(text_encoder, "text_model", text_encoder)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                   unet=unet, scheduler=sched, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    prompt, negative = "a (red) cube on a [wooden] table", "blurry"
    for kind, key in (("latent", "latents"), ("np", "image")):
        with torch.no_grad():
            r = pipe(prompt, negative_prompt=negative, height=32, width=32, num_inference_steps=4,
                     guidance_scale=7.5, clip_skip=1,
                     generator=torch.Generator("cpu").manual_seed(SEED), output_type=kind)
        tensors[f"plain_skip2.{key}"] = torch.as_tensor(r.images).float().contiguous()
    cases.append(dict(name="plain_skip2", prompt=prompt, negative=negative, clip_skip=2,
                      syntax="plain", cfg=7.5, steps=4, seed=SEED, width=32, height=32, pipeline=1))

    save_file(tensors, os.path.join(outdir, "a1111_ref.safetensors"),
              metadata={"cases": json.dumps(cases), "chunk_cases": json.dumps(chunk_cases),
                        "diffusers": __import__("diffusers").__version__,
                        "torch": torch.__version__})
    print(f"  {len(chunk_cases)} chunked prompts, {len(cases)} encodings")
