#!/usr/bin/env bash
# A model whose weights hold a NaN: sdc stops with a message naming the
# network and the step, exit 1, and writes no file (it wrote a black image
# with exit 0 before).
. "$(dirname "$0")/common.bash"

# poison DIR REL TENSOR BYTES: writes BYTES (printf escapes) over the first
# value of TENSOR in the safetensors file DIR/REL, found through its header.
poison() {
    local file=$1/$2 tensor=$3 bytes=$4
    local hlen entry begin
    hlen=$(od -An -tu8 -N8 "$file" | tr -d ' ')
    entry=$(head -c $((8 + hlen)) "$file" | tail -c "$hlen" | grep -o "\"$tensor\":{[^}]*}")
    begin=$(printf '%s' "$entry" | sed -n 's/.*"data_offsets":\[\([0-9]*\),.*/\1/p')
    if [ -z "$begin" ]; then
        fail "no $tensor in $file"
        return 1
    fi
    printf "$bytes" | dd of="$file" bs=1 seek=$((8 + hlen + begin)) conv=notrunc status=none
}

cp -r "$FIX/tiny-sd" "$WORK/nan-unet"
poison "$WORK/nan-unet" unet/diffusion_pytorch_model.safetensors conv_out.bias '\000\000\300\177'
expect_fail 1 "the UNet produced NaN at step 1 of 2" \
    -m "$WORK/nan-unet" -p "a cat" -W 32 -H 32 --steps 2 -o out.png

cp -r "$FIX/tiny-sd" "$WORK/inf-vae"
poison "$WORK/inf-vae" vae/diffusion_pytorch_model.safetensors decoder.conv_out.bias \
    '\000\000\200\177'
expect_fail 1 "the VAE decoder produced Inf" \
    -m "$WORK/inf-vae" -p "a cat" -W 32 -H 32 --steps 2 -o out.png

finish
