#!/usr/bin/env bash
# Remakes the seed corpora fuzz/corpus/<harness>/ from tests/fixtures (and a
# few small synthetic files).  Developers only: the corpora are committed.
# Needs bash, coreutils, gzip and awk; python3 for the prompts of
# tests/fixtures/tokens.json (skipped without it).
#   fuzz/make_corpus.sh
# Large .safetensors files are cut to their 8 + header bytes: fuzz_model
# extends weights files with zeros to what their headers name.
set -euo pipefail
cd "$(dirname "$0")/.."
fix=tests/fixtures
out=fuzz/corpus
sep=$'\n##part##\n' # FZ_SEP in fuzz/fuzz_util.h

# files are overwritten, not the folders emptied: crash inputs added by hand
# (README "Fuzzing") stay
mkdir -p "$out"/{safetensors,model,tokenizer,png,image,taesd,prompt}

# le64 N: N as 8 little-endian bytes
le64() {
  local n=$1 i s=""
  for i in 0 1 2 3 4 5 6 7; do
    s+=$(printf '\\x%02x' $(((n >> (8 * i)) & 255)))
  done
  printf "$s"
}

# header FILE: the first 8 + header-length bytes of a .safetensors file
header() {
  local n
  n=$(od -An -tu8 -N8 "$1" | tr -d ' ')
  head -c $((8 + n)) "$1"
}

# st OUT JSON DATA-BYTES [misaligned]: a .safetensors file; the header is
# padded with spaces to a multiple of 8 (as real files are) unless asked
st() {
  local json=$2
  if [ "${4:-}" != misaligned ]; then
    while [ $(((8 + ${#json}) % 8)) -ne 0 ]; do json+=" "; done
  fi
  { le64 ${#json}; printf '%s' "$json"; head -c "$3" /dev/zero | tr '\0' '\101'; } > "$1"
}

# ---- safetensors: small files of every dtype and shape kind, real headers
S=$out/safetensors
st $S/f32 '{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"__metadata__":{"format":"pt"}}' 24
st $S/dtypes '{"a":{"dtype":"F64","shape":[1],"data_offsets":[0,8]},"b":{"dtype":"F16","shape":[2],"data_offsets":[8,12]},"c":{"dtype":"BF16","shape":[2],"data_offsets":[12,16]},"d":{"dtype":"I64","shape":[1],"data_offsets":[16,24]},"e":{"dtype":"I32","shape":[1],"data_offsets":[24,28]},"f":{"dtype":"I16","shape":[1],"data_offsets":[28,30]},"g":{"dtype":"I8","shape":[1],"data_offsets":[30,31]},"h":{"dtype":"U8","shape":[1],"data_offsets":[31,32]},"i":{"dtype":"BOOL","shape":[1],"data_offsets":[32,33]}}' 33
st $S/scalar_empty '{"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]},"z":{"dtype":"F32","shape":[0,7],"data_offsets":[4,4]}}' 4
st $S/misaligned '{"m":{"dtype":"F32","shape":[3],"data_offsets":[2,14]}}' 14 misaligned
st $S/empty '{}' 0
cp $fix/vae_ref.safetensors $S/vae_ref
header $fix/tiny-sd/text_encoder/model.safetensors > $S/text_encoder_header

# ---- model: a single file and diffusers folders (parts in fuzz_model.c's order)
M=$out/model
header $fix/tiny-sd.safetensors > $M/single
# folder OUT CONFIGS(0/1) WEIGHTS(0/1): tiny-sd's files; without weights,
# components holding no tensors (the configs parse, the networks then fail)
folder() {
  local c=$2 w=$3 d=$fix/tiny-sd f
  {
    cat $d/model_index.json; printf '%s' "$sep"
    [ "$c" = 1 ] && cat $d/unet/config.json; printf '%s' "$sep"
    [ "$c" = 1 ] && cat $d/vae/config.json; printf '%s' "$sep"
    [ "$c" = 1 ] && cat $d/text_encoder/config.json; printf '%s' "$sep"
    cat $d/scheduler/scheduler_config.json
    for f in unet/diffusion_pytorch_model vae/diffusion_pytorch_model text_encoder/model; do
      printf '%s' "$sep"
      if [ "$w" = 1 ]; then header $d/$f.safetensors; else le64 2; printf '{}'; fi
    done
  } > "$1"
}
folder $M/folder 1 1
folder $M/folder_no_configs 0 1
folder $M/folder_configs_only 1 0

# ---- tokenizer: prompts; prompts with a small vocab.json + merges.txt
T=$out/tokenizer
if command -v python3 >/dev/null; then
  python3 - "$fix/tokens.json" "$T" <<'EOF'
import json, sys
cases = json.load(open(sys.argv[1]))["cases"]
for i, c in enumerate(cases):
    if "text" in c:
        b = c["text"].encode()
    elif "hex" in c:
        b = bytes.fromhex(c["hex"])
    else:
        continue
    open(f"{sys.argv[2]}/prompt_{i:02d}", "wb").write(b)
EOF
fi
printf 'a photo of an astronaut riding a horse on mars' > $T/prompt

# ---- prompt: the parser's and the chunker's fixture prompts (A1111 syntax),
# those under 4 KiB, and two that name fuzz_prompt.c's embeddings
if command -v python3 >/dev/null; then
  python3 - "$fix/prompts_ref.json" "$fix/a1111_ref.safetensors" "$out/prompt" <<'EOF'
import json, struct, sys
texts = [c["text"] for c in json.load(open(sys.argv[1]))["cases"] if "text" in c]
with open(sys.argv[2], "rb") as f:  # the chunk cases in the header's metadata
    header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
texts += [c["text"] for c in json.loads(header["__metadata__"]["chunk_cases"])]
texts += ["cat (a b:1.3) wide", "<lora:x:1> cat, BREAK a b"]
for i, t in enumerate(dict.fromkeys(t for t in texts if len(t.encode()) < 4096)):
    open(f"{sys.argv[3]}/p{i:03d}", "wb").write(t.encode())
EOF
fi
# vocab.json: the 256 byte characters (CLIP's bytes_to_unicode), the same
# with </w>, the first 300 merges of the built-in file joined, BOS, EOS;
# merges.txt: those 300 merges
merges=$(zcat data/clip/bpe_simple_vocab_16e6.txt.gz | sed -n '2,301p')
vocab=$(printf '%s\n' "$merges" | awk '
  function key(s) { gsub(/\\/, "\\\\", s); gsub(/"/, "\\\"", s); return s }
  BEGIN {
    n = 0; extra = 0
    for (b = 0; b < 256; b++) {
      pr = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174
      cp[b] = pr ? b : 256 + extra++
    }
    for (b = 0; b < 256; b++) { printf "%s\"\\u%04X\":%d", n ? "," : "{", cp[b], n; n++ }
    for (b = 0; b < 256; b++) { printf ",\"\\u%04X</w>\":%d", cp[b], n; n++ }
  }
  { t = $1 $2; if (!(t in seen)) { seen[t] = 1; printf ",\"%s\":%d", key(t), n; n++ } }
  END { printf ",\"<|startoftext|>\":%d,\"<|endoftext|>\":%d}", n, n + 1 }')
{ printf 'a photo of an astronaut riding a horse on mars%s%s%s#version: 0.2\n%s\n' \
    "$sep" "$vocab" "$sep" "$merges"; } > $T/files_300
{ printf 'ab ba <|endoftext|> aab%s' "$sep"
  printf '{"a": 0, "b": 1, "ab": 2, "<|startoftext|>": 3, "<|endoftext|>": 4}%s' "$sep"
  printf '#version: 0.2\na b\n'; } > $T/files_tiny

# ---- png: HEAD bytes (fuzz_png.c), then prompt, negative, model, key, text
P=$out/png
# head STEPS SAMPLER SCHEDULE CFG-BITS SEED WIDTH HEIGHT/64 IMG-W IMG-H FLAGS
head22() {
  local s
  s=$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($1 & 255)) $(($1 >> 8)) "$2" "$3")
  s+=$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($4 & 255)) $((($4 >> 8) & 255)) \
       $((($4 >> 16) & 255)) $((($4 >> 24) & 255)))
  printf "$s"; le64 "$5"
  printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x\\x%02x\\x%02x' $(($6 & 255)) $(($6 >> 8)) \
    "$7" "$8" "$9" "${10}")"
}
{ head22 20 3 1 $((0x40F00000)) 42 512 8 2 2 3
  printf 'a lighthouse at dawn, oil painting%sblurry%stiny-sd' "$sep" "$sep"; } > $P/basic
{ head22 30 1 0 $((0x3F800000)) 18446744073709551615 768 12 3 1 1
  printf 'caf\xc3\xa9 \xc2\xbfqu\xc3\xa9?%s%smodel, v1: "x"\\y' "$sep" "$sep"; } > $P/latin1
{ head22 1 6 1 $((0x7FC00000)) 0 64 1 1 3 2
  printf '\xe5\xa4\x9c\xe3\x81\xae\xe6\xb5\xb7 \xf0\x9f\x8c\x8a\n\xff\xfe%sno\tpe%ssd%sComment%shello \xe2\x82\xac' \
    "$sep" "$sep" "$sep" "$sep"; } > $P/utf8_extra

# ---- image: a few small PNGs and JPEGs of each kind (bit depths, palette,
# interlace, tRNS, progressive, restart markers, CMYK, Exif and XMP orientation)
I=$out/image
for f in g1.png g16_i.png p4_trns.png rgba8.png rgb8_exif6.png rgb8_xmp8.png \
         grey_prog.jpg j420_rst.jpg j444_prog.jpg cmyk.jpg orient6_be.jpg xmp7_exif.jpg; do
  cp $fix/images/$f $I/$f
done

# ---- taesd: headers only (fuzz_taesd extends them with zeros); one part a
# single file, two parts config.json then the weights of a folder
A=$out/taesd
header $fix/tiny-taesd.safetensors > $A/single
{ cat $fix/tiny-taesd/config.json; printf '%s' "$sep"
  header $fix/tiny-taesd/diffusion_pytorch_model.safetensors; } > $A/folder
{ cat $fix/tiny-taesd-x2/config.json; printf '%s' "$sep"
  header $fix/tiny-taesd-x2/diffusion_pytorch_model.safetensors; } > $A/folder_x2
{ printf '%s' "$sep"; header $fix/tiny-taesd-x2/diffusion_pytorch_model.safetensors; } \
  > $A/folder_no_config
# madebyollin's decoder file: decoder.layers.K is its K+1
if command -v python3 >/dev/null; then
  python3 - $fix/tiny-taesd-x2/diffusion_pytorch_model.safetensors $A/original_decoder <<'EOF2'
import json, re, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
out = {}
for k, v in h.items():
    m = re.match(r"decoder\.layers\.(\d+)\.(.*)", k)
    if m:
        out[f"{int(m[1]) + 1}.{m[2]}"] = v
j = json.dumps(out, separators=(",", ":")).encode()
j += b" " * (-(8 + len(j)) % 8)
open(sys.argv[2], "wb").write(struct.pack("<Q", len(j)) + j)
EOF2
fi

du -sh "$out"/*
