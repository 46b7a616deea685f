"""Peak resident memory of `raw_corpus` (`pipelines.corpus.write_corpus`) against the size
of its corpus, in one run.

    PYTHONPATH=. python bench/corpus_memory.py [--spill-kib 256]

Writes two JSONL corpora, 1x and 20x the embedded dwiki sample (834 articles, 0.94M
characters; copy c of an article ends in "(copy c)", so every copy is a new document), and
for each runs `write_corpus` into the embedded preset's 4 shards in a fresh process, whose
peak resident set (VmHWM) it reads. The spill buffer (`SPILL_BYTES`, 64 MiB of text by
default) is set to `--spill-kib`, below the 1x corpus, so that both corpora fill it: what
remains to grow with the corpus is then one shard's doc_ids (for deduplication).

The last line: `rss_20x_vs_1x=<ratio>`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from peak_memory import child_peak_mib, vm_hwm_kib

SCALES = (1, 20)
SHARDS = 4


def write_jsonl(path: Path, scale: int) -> tuple[int, int]:
    """`scale` copies of the embedded dwiki articles; returns documents and characters."""
    from pipelines.corpus import LMLM_FILES, _read_lmlm

    texts = [r.text for r in _read_lmlm(LMLM_FILES)]
    docs = chars = 0
    with path.open("w") as f:
        for c in range(scale):
            for text in texts:
                text = f"{text}\n\n(copy {c})"
                f.write(json.dumps({"text": text}) + "\n")
                docs, chars = docs + 1, chars + len(text)
    return docs, chars


def child(source: str, out: str, spill_kib: int) -> None:
    from pipelines import corpus

    corpus.SPILL_BYTES = spill_kib << 10
    corpus.write_corpus(corpus.CorpusConfig(sources=(source,)), out, SHARDS)
    print(vm_hwm_kib())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--spill-kib", type=int, default=256, help="the spill buffer, in KiB of text")
    p.add_argument("--child", nargs=3, metavar=("SOURCE", "OUT", "SPILL_KIB"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        return child(a.child[0], a.child[1], int(a.child[2]))
    peaks = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for scale in SCALES:
            source = tmp / f"{scale}x.jsonl"
            docs, chars = write_jsonl(source, scale)
            peaks[scale] = child_peak_mib(__file__, "--child", str(source), str(tmp / f"{scale}x"), str(a.spill_kib))
            print(f"{scale:2d}x: {docs} documents, {chars / 2**20:.1f} MiB of text: peak RSS of write_corpus "
                  f"({SHARDS} shards, {a.spill_kib} KiB spill buffer) {peaks[scale]:.1f} MiB")
    print(f"rss_20x_vs_1x={peaks[SCALES[1]] / peaks[SCALES[0]]:.3f}")


if __name__ == "__main__":
    main()
