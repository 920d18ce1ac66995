"""``probsae corpus build offline-en [--out DIR]``: build an offline English corpus from Debian
packages (see probsae.data.corpora.offline_en and docs/DATA.md)."""

from __future__ import annotations

NAME = "corpus"
HELP = ("Build an offline natural-language corpus from Debian packages (apt-get download): "
        "'probsae corpus build offline-en', then use it with --corpus offline-en.")


def add_arguments(p) -> None:
    p.add_argument("action", choices=["build", "info"], help="build: download, clean, dedupe, write; "
                   "info: print the manifest of a built corpus after checking its sha256")
    p.add_argument("name", choices=["offline-en"], help="which corpus")
    p.add_argument("--out", default=None, help="output folder (default: $PROBSAE_CORPORA/NAME or ./corpora/NAME, "
                   "where --corpus NAME looks)")
    p.add_argument("--debs", default=None, help="folder with the sources' .deb files (missing ones are "
                   "downloaded into it with apt-get download; default OUT/debs)")
    p.add_argument("--no-token-count", action="store_true", help="skip counting MiniLM tokens in the manifest")


def _minilm_counter():
    from transformers import AutoTokenizer

    from ..data.models import minilm_path

    tok = AutoTokenizer.from_pretrained(str(minilm_path()))

    def count(docs: list[str]) -> list[int]:
        out: list[int] = []
        for i in range(0, len(docs), 256):
            enc = tok(docs[i:i + 256], add_special_tokens=False, verbose=False)["input_ids"]
            out += [len(ids) for ids in enc]
        return out

    return count


def interrupted(args) -> str:
    """What Ctrl-C leaves behind (cli.main prints it)."""
    return ("the .deb files downloaded so far are kept (--debs, default OUT/debs) and not downloaded again: "
            "run the same command again to finish the corpus")


def run(args) -> int:
    import json

    from .. import progress
    from ..data.corpora import corpus_dir
    from ..data.corpora import offline_en

    out = args.out or str(corpus_dir(args.name))
    if args.action == "info":
        print(json.dumps(offline_en.verify(out), indent=2))
        return 0
    counter = None if args.no_token_count else _minilm_counter()
    m = offline_en.build(out, args.debs, count_tokens=counter,
                         tokenizer_name=None if counter is None else "all-MiniLM-L6-v2 (no special tokens)",
                         log=lambda s: progress.say(s, prefix="corpus"))
    tok = f", {m['tokens']:,} MiniLM tokens" if m["tokens"] is not None else ""
    print(f"{out}: {m['documents']:,} documents, {m['characters']:,} characters{tok}; "
          f"use it with --corpus {args.name}" + ("" if args.out is None else f" (set PROBSAE_CORPORA={out.rsplit('/', 1)[0] if '/' in out else '.'})"))
    return 0
