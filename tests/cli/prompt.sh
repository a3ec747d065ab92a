#!/usr/bin/env bash
# AUTOMATIC1111's prompt syntax from the command line: emphasis changes the
# image and plain syntax reads the brackets as text (another image); a
# prompt of 200 words runs; --clip-skip 2 changes the image and the PNG says
# "Clip skip: 2"; --embeddings uses a fixture embedding by its name (another
# image than without the folder); <lora:NAME:W> with --lora-dir gives the
# image of --lora FILE:W, and the PNG keeps the tag.  Bad input: clip skip
# beyond the model's layers, an embedding of the wrong width, a missing
# folder, a LoRA tag without --lora-dir, option misuse: a message, the
# right status (2 for what the user asked, 1 for what a file holds), no
# output.
. "$(dirname "$0")/common.bash"

tiny=(-m "$FIX/tiny-sd" -W 32 -H 32 --steps 2 -s 7 --overwrite)
E=$FIX/embeddings

# has FILE STRING: the bytes occur in the PNG (its "parameters" text is tEXt)
has() { grep -aqF -- "$2" "$1"; }
same() { cmp -s "$WORK/$1" "$WORK/$2"; }

expect_ok "${tiny[@]}" -p "a red cube, studio light" -o plain.png
expect_ok "${tiny[@]}" -p "a (red:1.5) cube, [studio light]" -o emph.png
expect_ok "${tiny[@]}" -p "a (red:1.5) cube, [studio light]" --prompt-syntax plain -o text.png
CHECKS=$((CHECKS + 2))
same plain.png emph.png && fail "emphasis made no difference"
same emph.png text.png && fail "--prompt-syntax plain read the brackets as emphasis"

long=$(for i in $(seq 1 200); do printf 'word%d, ' "$i"; done)
expect_ok "${tiny[@]}" -p "$long" -o long.png && { CHECKS=$((CHECKS + 1)); is_png "$WORK/long.png" || fail "no PNG for a long prompt"; }

expect_ok "${tiny[@]}" -p "a red cube, studio light" --clip-skip 2 -o skip.png
CHECKS=$((CHECKS + 2))
same plain.png skip.png && fail "--clip-skip 2 made no difference"
has "$WORK/skip.png" "Clip skip: 2" || fail "no 'Clip skip: 2' in the PNG"

expect_ok "${tiny[@]}" -p "a tinyemb cube" -o noemb.png
expect_ok "${tiny[@]}" -p "a tinyemb cube" --embeddings "$E" -o emb.png
CHECKS=$((CHECKS + 1))
same noemb.png emb.png && fail "--embeddings made no difference"

K=$FIX/lora/kohya.safetensors
expect_ok "${tiny[@]}" -p "a red cube" --lora "$K:0.5" -o l1.png
expect_ok "${tiny[@]}" -p "a red cube <lora:kohya:0.5>" --lora-dir "$FIX/lora" -o l2.png
CHECKS=$((CHECKS + 3))
same l1.png l2.png || fail "<lora:kohya:0.5> differs from --lora FILE:0.5"
has "$WORK/l2.png" "<lora:kohya:0.5>" || fail "the PNG lost the tag"
has "$WORK/l1.png" "a red cube <lora:kohya:0.5>" || fail "--lora is not written as a tag"

expect_fail 2 "clip skip 3" "${tiny[@]}" -p "x" --clip-skip 3
expect_fail 2 "--clip-skip" "${tiny[@]}" -p "x" --clip-skip 0
expect_fail 1 "wide\.safetensors.*48 wide" "${tiny[@]}" -p "a wide cube" --embeddings "$E"
expect_fail 1 "SDXL" "${tiny[@]}" -p "sdxl" --embeddings "$E"
expect_fail 1 "no/such/folder" "${tiny[@]}" -p "x" --embeddings "$WORK/no/such/folder"
expect_fail 2 "no LoRA folder" "${tiny[@]}" -p "x <lora:kohya:1>"
expect_fail 1 "nosuch\.safetensors" "${tiny[@]}" -p "x <lora:nosuch:1>" --lora-dir "$FIX/lora"
expect_fail 2 "unknown syntax" "${tiny[@]}" -p "x" --prompt-syntax markdown
expect_fail 2 "--embeddings needs" "${tiny[@]}" -p "x" --embeddings "$E" --prompt-syntax plain
expect_fail 2 "--lora-dir needs" "${tiny[@]}" -p "x" --lora-dir "$FIX/lora" --prompt-syntax plain
# unbalanced brackets are text as A1111 reads them, not an error
expect_ok "${tiny[@]}" -p "((a cube [on (a) table" -o unbalanced.png
CHECKS=$((CHECKS + 1))
"$SDC" --help | grep -q -- "--prompt-syntax" || fail "--help does not list --prompt-syntax"
finish
