"""Peak resident memory of a training rank against the size of its corpus, in one run.

    PYTHONPATH=. python bench/loader_memory.py

Writes two synthetic token datasets, 1x and 20x the embedded corpus' train split (about 270k
tokens; document lengths log-normal around the embedded median of 254 tokens, 10% of the
documents validation, random ids and classes, 4 shards as the embedded preset), each with
reference losses. For each it trains `spacy_refloss` (the method with the most per-token
arrays: ids, classes and reference losses) for a few steps of the `smoke` preset in a fresh
process and reads that process's peak resident set (VmHWM; not ru_maxrss, which keeps the
parent's peak across fork and exec), twice: cold (the rank builds
the split's cache of flat arrays from the shards) and warm (the cache is there, as for every
rank but the first and every resumed run). It then prints, from the dtypes, the per-token
data a rank would hold in memory without the cache and what stays resident with it (per
document), at the paper's scale (3B tokens, 6.1M documents).

The last line: `rss_20x_vs_1x=<worse of the cold and warm ratios>`.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from peak_memory import child_peak_mib, vm_hwm_kib

EMBEDDED_TRAIN_TOKENS = 270_000  # trainer.presets: the embedded corpus' train split
MEDIAN_DOC_TOKENS = 254
SHARDS = 4
SCALES = (1, 20)
STEPS = 3
METHOD = "spacy_refloss"
PAPER_TOKENS, PAPER_DOCS = 3_000_000_000, 6_100_000
# Per token held in memory without the cache: uint16 id, int8 class, float32 reference loss.
BYTES_PER_TOKEN = 2 + 1 + 4
# Per document, what a rank holds with the cache (`PackedLoader._epoch`): the document order
# and stream starts (int64 each) of at most two epochs at once, the offsets it reads whole
# at each epoch's start and their difference, a temporary.
BYTES_PER_DOC = 2 * (8 + 8) + 8 + 8


def write_corpus(out: Path, tokenizer: Path, scale: int, seed: int = 0) -> tuple[Path, Path, int, int]:
    """Token shards and reference losses of `scale` x the embedded train split; returns their
    directories, and the train split's documents and tokens."""
    from trainer.toy_data import write_dataset, write_labels

    rng = np.random.default_rng(seed)
    docs, train_tokens, i = [], 0, 0
    while train_tokens < scale * EMBEDDED_TRAIN_TOKENS:
        n = int(np.clip(rng.lognormal(np.log(MEDIAN_DOC_TOKENS), 0.8), 20, 8000))
        split = "validation" if i % 10 == 9 else "train"
        ids = rng.integers(3, 320, size=n, dtype=np.int32)  # text ids of the synthetic tokenizer
        docs.append((f"d{i:07d}", split, ids, rng.choice(3, size=n, p=[0.31, 0.31, 0.38]).astype(np.int8)))
        train_tokens += n if split == "train" else 0
        i += 1
    data, ref = out / "token_shards", out / "reference_losses"
    write_dataset(data, tokenizer, docs, shards=SHARDS)
    losses = {d[0]: (rng.random(len(d[2]), dtype=np.float32) * 8 if d[1] == "train" else None) for d in docs}
    write_labels(ref, data, "ref_loss", losses)
    return data, ref, sum(d[1] == "train" for d in docs), train_tokens


def rank(data: str, ref: str, out: str) -> None:
    from trainer.train import TrainConfig, train

    train(TrainConfig(method=METHOD, data=(data,), ref_losses=(ref,), out=out, preset="smoke", max_steps=STEPS),
          log=lambda _: None)
    print(vm_hwm_kib())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rank", nargs=3, metavar=("DATA", "REF_LOSSES", "OUT"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.rank:
        return rank(*a.rank)
    from trainer.toy_data import synthetic_tokenizer

    peaks = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tokenizer = synthetic_tokenizer(tmp / "tokenizer")
        for scale in SCALES:
            data, ref, docs, tokens = write_corpus(tmp / f"{scale}x", tokenizer, scale)
            cold, warm = (child_peak_mib(__file__, "--rank", str(data), str(ref), str(tmp / f"{scale}x" / run)) for run in ("cold", "warm"))
            peaks[scale] = cold, warm
            print(f"{scale:2d}x: {docs} train documents, {tokens / 1e6:.2f}M tokens ({tokens * BYTES_PER_TOKEN / 2**20:.1f} MiB "
                  f"of per-token arrays): peak RSS of a {METHOD} rank ({STEPS} smoke steps) {cold:.1f} MiB cold, {warm:.1f} MiB warm")
    ratios = [peaks[SCALES[1]][i] / peaks[SCALES[0]][i] for i in range(2)]
    print(f"20x vs 1x: cold {ratios[0]:.3f}, warm {ratios[1]:.3f}")
    print(f"paper scale ({PAPER_TOKENS / 1e9:.0f}B tokens, {PAPER_DOCS / 1e6:.1f}M documents), data per rank: "
          f"{PAPER_TOKENS * BYTES_PER_TOKEN / 1e9:.1f} GB of per-token arrays in memory without the cache, "
          f"{PAPER_DOCS * BYTES_PER_DOC / 1e9:.2f} GB resident with it (the per-token arrays mapped: page cache, shared by a node's ranks)")
    print(f"rss_20x_vs_1x={max(ratios):.3f}")


if __name__ == "__main__":
    main()
