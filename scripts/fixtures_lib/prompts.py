"""prompts_ref.json: A1111's prompt syntax, for tests/test_prompt.c.

The reference is AUTOMATIC1111/stable-diffusion-webui (no Python package
to install), rewritten here from its rules; the functions below follow

  modules/prompt_parser.py     parse_prompt_attention (re_attention,
                               re_break, 1.1 and 1 / 1.1, brackets left open
                               closed at the end, equal weights merged)
  modules/extra_networks.py    parse_prompt (re_extra_net, tags cut out by
                               re.sub, args split on ":")
  extensions-builtin/Lora/extra_networks_lora.py   a LoRA's weight is
                               float(args[1]) when there is one, else 1.0

in A1111 1.x with the weight regex that allows spaces around the number.
They use Python's re with str patterns, so \\s, \\d, \\w and \\b are Unicode.

Output (JSON object):
  python, unicodedata: versions
  cases: [{text (or repeat: [unit, count]: text = unit * count, not stored),
           runs: [[text, weight]] from parse_prompt_attention(text), or
                 null if it raises (A1111 fails the prompt),
           stripped: the prompt with the tags cut out,
           tags: [{kind, args, weight, weight_ok}],
           tag_runs: parse_prompt_attention(stripped) (null if it raises)}]
  Weights are repr() strings ("1.1", "inf", "nan") so that they survive
  JSON exactly.
"""
import json
import os
import re
import sys
import unicodedata

# modules/prompt_parser.py: the tokens, in the order of the alternatives
RE_ATTENTION = re.compile(r"""
\\\(|\\\)|\\\[|\\]|\\\\|\\|
\(|\[|
:\s*([+-]?[.\d]+)\s*\)|
\)|]|
[^\\()\[\]:]+|
:
""", re.X)
RE_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)
# modules/extra_networks.py
RE_EXTRA_NET = re.compile(r"<(\w+):([^>]+)>")


def attention(text):
    """parse_prompt_attention: [[text, weight]]; raises ValueError as A1111
    does when a matched weight is not a float."""
    res, rounds, squares = [], [], []

    def mul(start, m):
        for r in res[start:]:
            r[1] *= m

    for m in RE_ATTENTION.finditer(text):
        tok, w = m.group(0), m.group(1)
        if tok.startswith("\\"):
            res.append([tok[1:], 1.0])
        elif tok == "(":
            rounds.append(len(res))
        elif tok == "[":
            squares.append(len(res))
        elif w is not None and rounds:
            mul(rounds.pop(), float(w))
        elif tok == ")" and rounds:
            mul(rounds.pop(), 1.1)
        elif tok == "]" and squares:
            mul(squares.pop(), 1 / 1.1)
        else:
            for i, part in enumerate(RE_BREAK.split(tok)):
                if i:
                    res.append(["BREAK", -1])
                res.append([part, 1.0])
    for pos in rounds:
        mul(pos, 1.1)
    for pos in squares:
        mul(pos, 1 / 1.1)
    if not res:
        res = [["", 1.0]]
    out = [res[0]]
    for r in res[1:]:
        if out[-1][1] == r[1]:
            out[-1][0] += r[0]
        else:
            out.append(r)
    return out


def extra_networks(text):
    """parse_prompt: (text with the tags cut out, [(kind, args)])"""
    tags = []

    def found(m):
        tags.append((m.group(1), m.group(2).split(":")))
        return ""

    return RE_EXTRA_NET.sub(found, text), tags


def lora_weight(args):
    if len(args) < 2:
        return 1.0, None
    try:
        return float(args[1]), True
    except ValueError:
        return 1.0, False


def runs_or_none(text):
    try:
        return [[t, repr(float(w))] for t, w in attention(text)]
    except ValueError:
        return None


PROMPTS = [
    # plain text
    "a photo of an astronaut riding a horse on mars",
    "", "   ", "\t\n ", "word",
    # brackets
    "an (important) word", "a [less] word", "((double))", "[[double]]",
    "(((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
    "a ((b) c) [d [e]] f", "([mixed])", "[(mixed)]", "(unnecessary)(parens)",
    "((a)(b))", "()", "[]", "(())", "a () b [] c",
    # explicit weights
    "(a:1.3)", "(a:0)", "(a:-1)", "(a:-0.5) b", "(a:+2)", "(a:.5)", "(a:5.)", "(a:1.)",
    "(a:1.23456789012345678)", "(a: 1.5)", "(a :1.5)", "(a:1.5 )", "(a : 1.5 )",
    "(a:\t2\n)", "(a:1e3)", "(a:1.5x)", "(a:1,5)", "((a:2):3)", "(a:2) (b:2)",
    "(a:0) BREAK (b:0)", "(a BREAK b:0)", "(a:0)(b:-0)", "[a:1.5]", "(a:1.2.3)", "(a:.)",
    "(a:..5)", "x:1.5) y", "(a:1.5", "(a:１.５)", "(a:٢)", "(a:9999999999999999999999999999)",
    "(a:0.1)(b:0.1)", "([a:2])", "(a:-)",
    # escapes
    "\\(literal\\]", "\\(a\\) \\[b\\] \\\\ c", "a \\ b", "a\\b", "\\", "\\\\", "\\\\(x)",
    "(\\(x\\))", "[a]\\[b]", "[a]\\x[b]", "end\\",
    # unbalanced
    "(unbalanced", "[unbalanced", "((a", "[[a", "(a [b", "[a (b", "a)", "a]", ")(", "][",
    "(a]", "[a)", "a ) b ] c", "(a))", "[a]]",
    # colons
    "a:b", "a : b", ":", "::", "(a:b)", "[a:b:10]", "[a|b]", "a AND b",
    # BREAK
    "BREAK", "a BREAK b", "BREAK a", "a BREAK", "a BREAK BREAK b", "a BREAKBREAK b",
    "BREAKFAST", "a break b", "a Break b", "a\nBREAK\nb", "a,BREAK,b", "a_BREAK b",
    "a BREAK_ b", "aBREAK b", "caféBREAK b", "a BREAKé b", "a\u3000BREAK\u3000b", "(a BREAK b)",
    "[BREAK]", "a (BREAK) b", "BRE\\AK", "(BRE\\AK:-1)", "a BREAK\\(b", "1BREAK", "BREAK1",
    "a  BREAK  b", "\x1cBREAK\x1f",
    # tags
    "a <lora:foo:0.8> b", "<lora:foo>", "<lora:foo:1>", "<lora:foo:0.5:0.7>",
    "<lora:a:1><lora:b:0.5>", "(x <lora:a:2> y)", "<lora:>", "<lora:x:abc>", "<lora::1>",
    "<lora:x: 0.5 >", "<lora:x:1e-1>", "<lora:x:inf>", "<lora:x:NaN>", "<lora:x:1_0>",
    "<lora:x:1__0>", "<lora:x:-.5>", "<hypernet:h:1> <lyco:l:0.3>", "<LoRA:Up:2>",
    "<lora:a<lora:b:1>", "<lora x:1>", "<:x>", "<lora:x", "<lora:multi\nline:1>",
    "<ロラ:名前:0.5>", "<lora:名前:１.５>", "<lora:x:unet=0.5:te=1>", "<lora:x:(1)>",
    "<lora:x:0.5>BREAK<lora:y:1>", "a<lora:x:1>BREAK b", "<lora:x:1>(a)",
    "\\<lora:x:1\\>", "<lora:a>b>",
    # non-ASCII
    "café (naïve) [résumé]", "東京の(夜景:1.2)、美しい風景。", "emoji 🐱‍👤 (🚀:1.5) ✨",
    "Привет (мир) BREAK ΣΟΦΙΑ",
]
REPEATS = [
    ("a photo of a cat, ", 60),
    ("(", 300), ("[", 300), (")", 300), ("(a", 200), ("((a)", 100),
    ("(a:1.1)", 100), ("x BREAK ", 50), ("<lora:n:0.1>", 40), ("(" * 7500 + "a", 1),
]


def case(text):
    stripped, tags = extra_networks(text)
    tj = []
    for kind, args in tags:
        w, ok = lora_weight(args)
        tj.append({"kind": kind, "args": args, "weight": repr(w),
                   "weight_ok": ok})
    return {"runs": runs_or_none(text), "stripped": stripped, "tags": tj,
            "tag_runs": runs_or_none(stripped)}


def make(out):
    cases = []
    for t in PROMPTS:
        c = {"text": t}
        c.update(case(t))
        cases.append(c)
    for unit, count in REPEATS:
        c = {"repeat": [unit, count]}
        c.update(case(unit * count))
        cases.append(c)
    doc = {"python": sys.version.split()[0], "unicodedata": unicodedata.unidata_version,
           "cases": cases}
    path = os.path.join(out, "prompts_ref.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=0)
        f.write("\n")
    print(f"{path}: {len(cases)} prompts")


if __name__ == "__main__":
    make(sys.argv[1] if len(sys.argv) > 1 else ".")
