#!/usr/bin/env bash
# Bad models: missing, garbage, truncated, lying headers, wrong kind.  Each
# gets status 1, a message naming the file and the problem, no crash and no
# output file.
. "$(dirname "$0")/common.bash"
run() { expect_fail 1 "$1" -m "$2" -p "a cat" -W 32 -H 32 --steps 1 -s 1 -o "$OUT"; }

run "no-such-model.*(no such|not found|cannot)" "$WORK/no-such-model.safetensors"

printf 'this is not a model, just some text\n%.0s' $(seq 40) >"$WORK/garbage.safetensors"
run "garbage\.safetensors" "$WORK/garbage.safetensors"

: >"$WORK/empty.safetensors"
run "empty\.safetensors" "$WORK/empty.safetensors"

head -c 5 "$FIX/tiny-sd.safetensors" >"$WORK/tiny5.safetensors"
run "tiny5\.safetensors" "$WORK/tiny5.safetensors"

# the real header, cut before the data ends
head -c 200000 "$FIX/tiny-sd.safetensors" >"$WORK/truncated.safetensors"
run "truncated\.safetensors" "$WORK/truncated.safetensors"

# header length beyond the file; header length 2^63-1
{ u64le 5000; printf '{}'; } >"$WORK/longhdr.safetensors"
run "longhdr\.safetensors" "$WORK/longhdr.safetensors"
{ printf '\377\377\377\377\377\377\377\177'; printf '{}'; } >"$WORK/hugehdr.safetensors"
run "hugehdr\.safetensors" "$WORK/hugehdr.safetensors"

# a header that lies: a tensor whose data lies past the end of the file
h='{"model.diffusion_model.conv_in.weight":{"dtype":"F32","shape":[320,4,3,3],"data_offsets":[0,46080]}}'
{ u64le ${#h}; printf '%s' "$h"; head -c 64 /dev/zero; } >"$WORK/lying.safetensors"
run "lying\.safetensors" "$WORK/lying.safetensors"

# offsets that do not match the shape
h='{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}}'
{ u64le ${#h}; printf '%s' "$h"; head -c 12 /dev/zero; } >"$WORK/mismatch.safetensors"
run "mismatch\.safetensors" "$WORK/mismatch.safetensors"

# header not JSON
h='{"a": [1, 2'
{ u64le ${#h}; printf '%s' "$h"; } >"$WORK/notjson.safetensors"
run "notjson\.safetensors" "$WORK/notjson.safetensors"

# a valid file that is not a Stable Diffusion checkpoint
h='{"foo.weight":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'
{ u64le ${#h}; printf '%s' "$h"; head -c 8 /dev/zero; } >"$WORK/notsd.safetensors"
run "notsd\.safetensors.*(stable diffusion|checkpoint)|(stable diffusion|checkpoint).*notsd" \
    "$WORK/notsd.safetensors"

# a pickle checkpoint (.ckpt is a zip) -> unsupported, says how to convert
printf 'PK\003\004 not really a zip but starts like one' >"$WORK/model.ckpt"
run "model\.ckpt.*(convert|safetensors)|(convert|safetensors).*model\.ckpt" "$WORK/model.ckpt"

# an empty folder, and a diffusers folder missing its VAE
mkdir -p "$WORK/emptydir"
run "emptydir" "$WORK/emptydir"
mkdir -p "$WORK/novae"
cp -r "$FIX/tiny-sd/unet" "$FIX/tiny-sd/text_encoder" "$FIX/tiny-sd/scheduler" \
    "$FIX/tiny-sd/model_index.json" "$WORK/novae/"
run "vae" "$WORK/novae"

# a tokenizer/ folder whose merges.txt holds no merges (empty, or only the
# version line): valid, every word falls to its characters' tokens (as
# transformers' CLIPTokenizer does); it crashed (SIGSEGV) before
mkdir -p "$WORK/nomerges/tokenizer"
for part in unet text_encoder vae scheduler model_index.json; do
    ln -s "$FIX/tiny-sd/$part" "$WORK/nomerges/$part"
done
printf '{"a": 0, "b": 1, "a</w>": 2, "b</w>": 3, "<|startoftext|>": 4, "<|endoftext|>": 5}' \
    >"$WORK/nomerges/tokenizer/vocab.json"
for merges in '' '#version: 0.2\n'; do
    printf '%b' "$merges" >"$WORK/nomerges/tokenizer/merges.txt"
    rm -f "$WORK/nomerges.png"
    if expect_ok -m "$WORK/nomerges" -p ab -W 32 -H 32 --steps 1 -s 1 -o "$WORK/nomerges.png"; then
        CHECKS=$((CHECKS + 1))
        is_png "$WORK/nomerges.png" || fail "no merges ('$merges'): no PNG written"
    fi
done
# a vocabulary larger than the text encoder's embedding table (49408 rows):
# <|endoftext|> = 49408 has no row; refused, not read past the table
awk 'BEGIN { printf "{\"a\": 0, \"b\": 1, \"ab\": 2, ";
             for (i = 3; i < 49407; i++) printf "\"t%d\": %d, ", i, i;
             printf "\"<|startoftext|>\": 49407, \"<|endoftext|>\": 49408}" }' \
    >"$WORK/nomerges/tokenizer/vocab.json"
printf '#version: 0.2\na b\n' >"$WORK/nomerges/tokenizer/merges.txt"
run "token id 49408.*49408 token embeddings" "$WORK/nomerges"

finish
