#!/usr/bin/env bash
# --lora FILE[:WEIGHT] (repeatable) and --lora-dir: the fixtures' kohya and
# PEFT LoRAs make PNGs different from the plain one, the same at the same
# weight however it is written (":1" or nothing), and a weight of 0 gives the
# plain image; -v says what was merged.  Bad input: a missing, corrupt or
# SDXL LoRA, one whose shapes do not fit: exit 1 with a message naming the
# file, no output; a bad weight or an empty name: usage errors (exit 2).
. "$(dirname "$0")/common.bash"

tiny=(-m "$FIX/tiny-sd" -p "a red cube" -W 32 -H 32 --steps 2 -s 7 --overwrite)
K=$FIX/lora/kohya.safetensors
P=$FIX/lora/peft.safetensors

expect_fail 2 "empty file name" "${tiny[@]}" --lora ""
expect_fail 2 "out of range" "${tiny[@]}" --lora "$K:1e9"
expect_fail 2 "empty path" "${tiny[@]}" --lora-dir ""
expect_fail 1 "missing\.safetensors" "${tiny[@]}" --lora "$WORK/missing.safetensors"
printf 'not a safetensors file' >"$WORK/corrupt.safetensors"
expect_fail 1 "corrupt\.safetensors" "${tiny[@]}" --lora "$WORK/corrupt.safetensors"
head -c 1000 "$K" >"$WORK/cut.safetensors"
expect_fail 1 "cut\.safetensors" "${tiny[@]}" --lora "$WORK/cut.safetensors"

# hand-made files: an SDXL LoRA (lora_te2_) and a factor of the wrong width
st_file() { # st_file PATH JSON-HEADER DATA-BYTES
    local hdr=$2
    while [ $(((${#hdr}) % 8)) -ne 0 ]; do hdr="$hdr "; done
    { u64le ${#hdr}; printf '%s' "$hdr"; head -c "$3" /dev/zero; } >"$1"
}
q=lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q
st_file "$WORK/sdxl.safetensors" '{"lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight":{"dtype":"F32","shape":[1,4],"data_offsets":[0,16]},"lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_up.weight":{"dtype":"F32","shape":[4,1],"data_offsets":[16,32]}}' 32
expect_fail 1 "sdxl\.safetensors.*SDXL" "${tiny[@]}" --lora "$WORK/sdxl.safetensors"
st_file "$WORK/shape.safetensors" "{\"$q.lora_down.weight\":{\"dtype\":\"F32\",\"shape\":[1,5],\"data_offsets\":[0,20]},\"$q.lora_up.weight\":{\"dtype\":\"F32\",\"shape\":[32,1],\"data_offsets\":[20,148]}}" 148
expect_fail 1 "shape\.safetensors.*attn1_to_q.*\[1, 5\].*\[32, 32\]" "${tiny[@]}" --lora "$WORK/shape.safetensors"

# the pixels of a PNG: its bytes from the first IDAT chunk on (the text
# chunk before it names the LoRAs)
idat() { tail -c +"$(grep -abo IDAT "$1" | head -1 | cut -d: -f1)" "$1"; }
same_pixels() { cmp -s <(idat "$1") <(idat "$2"); }

# images
if expect_ok "${tiny[@]}" --lora "$K" -o k.png -v; then
    CHECKS=$((CHECKS + 1))
    grep -q "LoRA .*kohya.safetensors (kohya): 120 weights at weight 1" "$WORK/stderr" ||
        fail "-v does not say what was merged: $(cat "$WORK/stderr")"
fi
if expect_ok "${tiny[@]}" -o plain.png && expect_ok "${tiny[@]}" --lora "$K:1" -o k1.png && expect_ok "${tiny[@]}" --lora "$K:0" -o k0.png &&
    expect_ok "${tiny[@]}" --lora "$K:0.5" --lora "$P:-0.5" -o kp.png; then
    CHECKS=$((CHECKS + 1))
    same_pixels "$WORK/k.png" "$WORK/k1.png" || fail "--lora FILE and FILE:1 differ"
    CHECKS=$((CHECKS + 1))
    ! same_pixels "$WORK/k.png" "$WORK/plain.png" || fail "the LoRA changed nothing"
    CHECKS=$((CHECKS + 1))
    ! same_pixels "$WORK/kp.png" "$WORK/k.png" || fail "two LoRAs: the second changed nothing"
    CHECKS=$((CHECKS + 1))
    same_pixels "$WORK/k0.png" "$WORK/plain.png" || fail "weight 0 differs from no LoRA"
fi
# a path with a ':' that is not a weight
cp "$K" "$WORK/a:b.safetensors"
if expect_ok "${tiny[@]}" --lora "$WORK/a:b.safetensors" -o ab.png; then
    CHECKS=$((CHECKS + 1))
    same_pixels "$WORK/ab.png" "$WORK/k.png" || fail "a:b.safetensors is not the same LoRA"
fi
CHECKS=$((CHECKS + 1))
"$SDC" --help | grep -q -- "--lora FILE" || fail "--help does not mention --lora"
finish
