"""tokens.json: CLIP token ids from the reference tokenizer, for tests/test_tokenizer.c.

The reference is transformers' CLIPTokenizer as diffusers loads it for SD 1.x
(CLIPTokenizer.from_pretrained on a tokenizer/ folder, then
tokenizer(prompt, padding="max_length", max_length=77, truncation=True)).
The SD 1.4 folder cannot be downloaded here, so it is rebuilt in a temporary
folder from open_clip's bpe_simple_vocab_16e6.txt.gz the way OpenAI's CLIP
builds its vocabulary, with SD 1.4's tokenizer_config.json and
special_tokens_map.json.

In transformers 5.x CLIPTokenizer is backed by HF tokenizers
(CLIPTokenizerFast is the same class): NFC, \\s+ -> " ", lower case; no ftfy,
no HTML unescaping.  Each case also records whether OpenAI CLIP's own
tokenizer (open_clip.SimpleTokenizer: ftfy, html.unescape) gives the same
ids, for the documentation of the differences; the tests compare with the
transformers ids only.

Output (JSON object):
  transformers, tokenizers, ftfy, open_clip: versions
  cases: [{text, ids[77], n (tokens before padding), same_as_open_clip}]
         a case has "hex" (its UTF-8 bytes, possibly ill-formed: text is
         then their decoding with errors="replace") or "repeat": [unit,
         count] (text = unit * count, not stored) instead of plain text.
  codepoints: one tokenisation of "x" + chr(c) + "!" for every scalar
         value c but NUL (C strings) and the surrogates, hashed per block of 4096 code points:
         FNV-1a 64 over the 77 ids of each, as int32 little-endian.
"""
import gzip
import json
import os
import struct
import tempfile

CONTEXT = 77
BLOCK = 4096

PROMPTS = [
    "a photo of an astronaut riding a horse on mars",
    "A Photo Of A CAT, Highly Detailed, 8K, trending on ArtStation",
    "",
    "   ",
    "  leading and trailing spaces  ",
    "multiple   spaces\tand\ttabs\nand\n\nnewlines\r\nend",
    "it's, don't, we're, they've, I'm, we'll, he'd",
    "IT'S DON'T WE'RE THEY'VE I'M WE'LL HE'D",
    "rock 'n' roll 'quoted' ''double'' 'sup 'tis o'clock",
    "café naïve résumé façade jalapeño Ångström",
    "cafe\u0301 nai\u0308ve A\u030a",  # decomposed: NFC composes
    "q\u0307\u0323 a\u0328\u0301 e\u0301\u0327 \u1100\u1161\u11a8",  # reordering, Hangul jamo
    "東京の夜景、美しい風景。",
    "한국어 텍스트",
    "Привет мир ΣΟΦΙΑ ΟΔΥΣΣΕΥΣ Ελληνικά",
    "emoji 🐱‍👤 🚀✨ 👍🏽 🇯🇵 ❤️",
    "numbers 1234567890 3.14159 1,000,000 ２０２４ ①②③ Ⅻ ٣",
    "punctuation!!! ??? ... --- *** (parentheses) [brackets] {braces} <angle> @#$%^&*_+=|\\/~`",
    "mojibake cafÃ© â€™quotedâ€™ ﬁ",  # ftfy would repair these; the reference does not
    "HTML entities &amp; &lt;tag&gt; &quot;quoted&quot; &#39;apos&#39; &nbsp; &amp;amp;",
    "<|startoftext|>a<|endoftext|>b <|STARTOFTEXT|> <|EndOfText|> <|endoftext <|startoftext|>",
    "A<|endoftext|>B<|endoftext|><|endoftext|>",
    "a majestic lion standing on a rocky cliff at sunset, golden hour lighting, dramatic clouds, "
    "highly detailed fur, photorealistic, 8k resolution, cinematic composition, depth of field, "
    "bokeh background, award winning wildlife photography, national geographic style, sharp focus, "
    "vibrant colors, epic atmosphere, masterpiece, trending on artstation, octane render",
    "a" * 300,
    "supercalifragilisticexpialidocious pneumonoultramicroscopicsilicovolcanoconiosis "
    "antidisestablishmentarianism",
    "!" * 40 + " " + "?!" * 20,
    "hello\u00a0world\u3000full\u2003em\u0085nel\u2028line\u000bvt\u000cff\u001cfs",
    "İstanbul ǅemal ẞtraße ﬁnal ligature",
    "'ſ 's 'S \u2019s",
    "zero\u200bwidth\u200djoiner\ufeffbom\u00adsoft",
    "\u2126 \u212b \u212a \u2000",  # singletons: Ω, Å, K, en quad
    "mixed中文English日本語123abc",
    "مرحبا بالعالم שלום עולם สวัสดี नमस्ते",
    "a,b.c;d:e x--y 1st 2nd 3rd 21st 12a34b",
    "tab\x01ctrl\x7fdel\x1besc",
    "lowres, bad anatomy, bad hands, text, error, missing fingers, extra digit, fewer digits, "
    "cropped, worst quality, low quality, normal quality, jpeg artifacts, signature, watermark, "
    "username, blurry",
    "(masterpiece:1.2), best quality, [[detailed]], {{{epic}}}, <lora:foo:0.8>",
    "𐐜𐐯𐑅𐐨𐑉𐐯𐐻 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝟙𝟚𝟛",
    "a " * 75,  # exactly 75 tokens: no truncation
    "a " * 76,  # one too many
    "🚀" * 40,  # truncation inside a multi-token character
    "x\u0301\u0301\u0301\u0301\u0316\u0316 \u0344 \u0F73 \u1E9B\u0323",
    "ＡＢＣ ｆｕｌｌｗｉｄｔｈ ｶﾀｶﾅ",
    "the quick brown fox jumps over the lazy dog " * 3,
]

# ill-formed UTF-8 (decoded by the reference with errors="replace")
BYTES = [
    b"caf\xe9 \xff\xfe ok \xf0\x9f\x98 end",
    b"\xed\xa0\x80 surrogate \xc0\xaf overlong \xe2\x82 cut \xf4\x90\x80\x80 big",
    b"\x80\x80\x80 lone continuations \xc3",
]

REPEATS = [
    ("a", 60000),  # one 60000-letter word
    ("ab ", 21845),
    ("\U0001F680", 16384),  # exactly 65536 bytes
    ("\u0301", 30000),  # 60000 bytes of a combining mark
]


def _bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def write_tokenizer_folder(folder):
    """SD 1.x's tokenizer/ folder (vocab.json, merges.txt, configs), built from
    open_clip's copy of CLIP's BPE merges the way OpenAI's vocabulary is."""
    import open_clip
    os.makedirs(folder, exist_ok=True)
    gz = os.path.join(os.path.dirname(open_clip.__file__), "bpe_simple_vocab_16e6.txt.gz")
    lines = gzip.open(gz).read().decode("utf-8").split("\n")
    merges = lines[1:49152 - 256 - 2 + 1]
    chars = _bytes_to_unicode()
    vocab = chars + [c + "</w>" for c in chars] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    assert len(set(vocab)) == len(vocab) == 49408
    with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump({t: i for i, t in enumerate(vocab)}, f, ensure_ascii=False)
    with open(os.path.join(folder, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")

    def added(content):
        return {"__type": "AddedToken", "content": content, "lstrip": False, "normalized": True,
                "rstrip": False, "single_word": False}

    special = {"bos_token": added("<|startoftext|>"), "eos_token": added("<|endoftext|>"),
               "pad_token": "<|endoftext|>", "unk_token": added("<|endoftext|>")}
    config = dict(special, add_prefix_space=False, do_lower_case=True, errors="replace",
                  model_max_length=CONTEXT, name_or_path="openai/clip-vit-large-patch14",
                  special_tokens_map_file="./special_tokens_map.json",
                  tokenizer_class="CLIPTokenizer")
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(folder, "special_tokens_map.json"), "w") as f:
        json.dump(special, f, indent=2)


def _encode(tok, texts):
    enc = tok(texts, padding="max_length", max_length=CONTEXT, truncation=True)
    return enc["input_ids"], [sum(m) for m in enc["attention_mask"]]


def make(outdir):
    import ftfy
    import open_clip
    import tokenizers
    import transformers
    from transformers import CLIPTokenizer, CLIPTokenizerFast

    with tempfile.TemporaryDirectory() as folder:
        write_tokenizer_folder(folder)
        tok = CLIPTokenizer.from_pretrained(folder)
        fast = CLIPTokenizerFast.from_pretrained(folder)
    assert tok.model_max_length == CONTEXT and tok.pad_token_id == 49407
    oc = open_clip.SimpleTokenizer()

    entries = [{"text": p} for p in PROMPTS]
    entries += [{"hex": b.hex(), "text": b.decode("utf-8", errors="replace")} for b in BYTES]
    entries += [{"repeat": [u, k], "text": u * k} for u, k in REPEATS]
    texts = [e["text"] for e in entries]
    ids, lens = _encode(tok, texts)
    ids_fast, _ = _encode(fast, texts)
    assert ids == ids_fast, "CLIPTokenizer and CLIPTokenizerFast disagree"
    # open_clip pads with 0, transformers with <|endoftext|>: compare up to the padding
    same_oc = [oc(t, context_length=CONTEXT)[0].tolist()[:n] == i[:n] for t, i, n in zip(texts, ids, lens)]

    cases = []
    for e, i, n, same in zip(entries, ids, lens, same_oc):
        assert len(i) == CONTEXT and i[n - 1] == 49407 and all(x == 49407 for x in i[n:])
        c = dict(e)
        if "repeat" in c:
            del c["text"]
        c.update(ids=i, n=n, same_as_open_clip=same)
        cases.append(c)

    blocks = []
    cps = [c for c in range(1, 0x110000) if not 0xD800 <= c < 0xE000]
    for start in range(0, 0x110000, BLOCK):
        chunk = [c for c in cps if start <= c < start + BLOCK]
        h = 0xcbf29ce484222325
        if chunk:
            got, _ = _encode(tok, ["x" + chr(c) + "!" for c in chunk])
            for row in got:
                for b in struct.pack("<%di" % CONTEXT, *row):
                    h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
        blocks.append("%016x" % h)

    out = {
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "ftfy": ftfy.__version__,
        "open_clip": open_clip.__version__,
        "note": "transformers CLIPTokenizer (== CLIPTokenizerFast in 5.x) on SD 1.4's tokenizer "
                "folder rebuilt from open_clip's bpe_simple_vocab_16e6.txt.gz",
        "cases": cases,
        "codepoints": {"prefix": "x", "suffix": "!", "block": BLOCK, "hash": "fnv1a64", "blocks": blocks},
    }
    path = os.path.join(outdir, "tokens.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    differ = [c.get("text", c.get("hex", c.get("repeat")))[:40] for c in cases if not c["same_as_open_clip"]]
    print(f"{path}: {len(cases)} cases, {len(blocks)} code point blocks; "
          f"{len(differ)} differ from OpenAI CLIP's tokenizer: {differ}")
