#!/usr/bin/env bash
# Image to image and inpainting from the command line: -i, --strength,
# --mask on the tiny models (the init images and masks are sdc's own PNGs),
# --preview,
# the default size from the init image, the metadata A1111 reads, and every
# bad input refused with a message, the right status and no output file.
. "$(dirname "$0")/common.bash"
M=$FIX/tiny-sd
M9=$FIX/tiny-sd-inpaint

has_text() {  # has_text FILE STRING: the bytes occur in the file
    CHECKS=$((CHECKS + 1))
    grep -aqF -- "$2" "$1" || fail "$1 lacks '$2'"
}

# inputs: two images made by sdc (32x32 and 48x40)
expect_ok -m "$M" -p "a red cube" -W 32 -H 32 --steps 1 -s 1 -o init.png || exit 1
expect_ok -m "$M" -p "a blue ball" -W 32 -H 32 --steps 1 -s 2 -o mask.png || exit 1
expect_ok -m "$M" -p "a field" -W 48 -H 40 --steps 1 -s 3 -o wide.png || exit 1

# img2img: int(4 * 0.5) = 2 steps; strength in the metadata; the size taken
# from the init image
if expect_ok -m "$M" -p "a green cube" -i init.png --strength 0.5 --steps 4 -s 5 \
    --sampler euler -o a.png; then
    CHECKS=$((CHECKS + 1))
    is_png "$WORK/a.png" || fail "a.png is not a PNG"
    has_text "$WORK/a.png" "Steps: 4, Sampler: Euler, Schedule type: Karras, CFG scale: 7.5, Seed: 5, Size: 32x32, Model: tiny-sd, Denoising strength: 0.5, Version: sdc"
    has_text "$WORK/stderr" "encode 1/1"
    has_text "$WORK/stderr" "sample 2/2"
fi
if expect_ok -m "$M.safetensors" -p "a field at dusk" -i wide.png --steps 2 -o b.png; then
    has_text "$WORK/b.png" "Size: 48x40"
    has_text "$WORK/b.png" "Denoising strength: 0.75"
fi
# -W/-H given: the init image is resized to them
if expect_ok -m "$M" -p x -i wide.png -W 32 -H 32 --steps 2 -o c.png; then
    has_text "$WORK/c.png" "Size: 32x32"
    has_text "$WORK/stderr" "resized to 32x32"
fi

# inpainting: an inpainting model (strength 1 by default) and an ordinary one
if expect_ok -m "$M9" -p "a cat" -i init.png --mask mask.png --steps 2 -o d.png; then
    has_text "$WORK/d.png" "Size: 32x32, Model: tiny-sd-inpaint, Denoising strength: 1.0, Version"
fi
expect_ok -m "$M" -p "a cat" -i init.png --mask mask.png --strength 0.6 --steps 3 -o e.png &&
    has_text "$WORK/e.png" "Denoising strength: 0.6"

# previews: the file is a PNG of the latent's size (16x16 here), written atomically
if expect_ok -m "$M" -p x -W 32 -H 32 --steps 3 --preview p.png --preview-every 2 -o f.png; then
    CHECKS=$((CHECKS + 1))
    is_png "$WORK/p.png" || fail "p.png is not a PNG"
    CHECKS=$((CHECKS + 1))
    [ "$(head -c 24 "$WORK/p.png" | tail -c 8 | od -An -tx1 | tr -d ' \n')" = "0000001000000010" ] ||
        fail "p.png is not 16x16"
fi
expect_fail 1 "p.png already exists" -m "$M" -p x -W 32 -H 32 --steps 1 --preview p.png -o "$OUT"
expect_fail 2 "--preview-every.*out of range" -m "$M" -p x --preview q.png --preview-every 0 -o "$OUT"
CHECKS=$((CHECKS + 1))
[ ! -e "$WORK/q.png" ] || fail "q.png written by a refused run"

# TAESD: decoding, encoding and full-size previews (32x32); for previews only
if expect_ok -m "$M" -p x -i init.png --steps 2 --taesd "$FIX/tiny-taesd-x2" --preview t.png \
    -o g.png; then
    CHECKS=$((CHECKS + 1))
    [ "$(head -c 24 "$WORK/t.png" | tail -c 8 | od -An -tx1 | tr -d ' \n')" = "0000002000000020" ] ||
        fail "t.png is not 32x32"
fi
expect_ok -m "$M" -p x -W 32 -H 32 --steps 2 --taesd "$FIX/tiny-taesd-x2" --taesd-preview-only \
    --preview u.png -o h.png
expect_fail 1 "TAESD.*tiny-taesd.*does not fit" -m "$M" -p x -o "$OUT" --taesd "$FIX/tiny-taesd"
expect_fail 1 "TAESD" -m "$M" -p x -o "$OUT" --taesd "$FIX/tiny-sd/vae"
expect_fail 2 "--taesd-preview-only needs --taesd" -m "$M" -p x -o "$OUT" --taesd-preview-only

# bad input
printf 'not an image at all' >"$WORK/text.png"
head -c 200 "$WORK/init.png" >"$WORK/cut.png"
expect_fail 2 "--mask needs the image"          -m "$M" -p x -o "$OUT" --mask mask.png
expect_fail 2 "--strength needs an init image"  -m "$M" -p x -o "$OUT" --strength 0.5
expect_fail 2 "--strength.*out of range"        -m "$M" -p x -o "$OUT" -i init.png --strength 1.5
expect_fail 2 "--strength.*not a number"        -m "$M" -p x -o "$OUT" -i init.png --strength half
expect_fail 1 "cannot read the init image.*missing.png" -m "$M" -p x -o "$OUT" -i missing.png
expect_fail 1 "cannot read the init image.*text.png"    -m "$M" -p x -o "$OUT" -i text.png
expect_fail 1 "cannot read the init image.*cut.png"     -m "$M" -p x -o "$OUT" -i cut.png
expect_fail 1 "cannot read the mask.*cut.png"   -m "$M" -p x -o "$OUT" -i init.png --mask cut.png
expect_fail 2 "mask is 48x40.*init image 32x32.*same size" -m "$M" -p x -o "$OUT" -i init.png \
    --mask wide.png
expect_fail 2 "inpainting model.*--mask"        -m "$M9" -p x -o "$OUT" -i init.png
expect_fail 2 "inpainting model.*--mask"        -m "$M9" -p x -o "$OUT"
expect_fail 2 "strength 0.2 leaves no step"     -m "$M" -p x -o "$OUT" -i init.png \
    --strength 0.2 --steps 4
finish
