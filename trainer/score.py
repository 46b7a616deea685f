"""Per-token losses of a model over a token dataset: the `reference_losses` that Rho-1 and
spaCy + Refloss rank on (Table 5).

Output, mirroring the token shards row for row: `<out>/shard-XXXX.parquet` with `doc_id` and
`ref_loss` list<float32> aligned to `input_ids` (null for documents of other splits), and
`manifest.json` with the token shards' fingerprint (`token_shards_fingerprint`, checked by
the trainer's loader) and the model's identity.

The loss of token j is -log p_CALL(x_j | context), the text-vocabulary loss the trainer's
masks rank on (for a baseline-objective reference model p(<CALL>) is ~0, so it equals the
plain cross-entropy). Context: each document is scored on its own, after an EOS, as the
trainer packs it (`EOS d1 EOS d2 ...`): the first token is predicted from EOS alone.
Documents longer than the model's context T are scored in windows of T tokens that advance
by T/2; each window keeps the losses of its last T/2 positions (the first window all of
them), so every token is predicted from at least T/2 tokens of its document (or all before
it).

Under `torchrun` the shards are split over the processes (shard k on rank k mod world size,
on its own GPU); rank 0 gathers their statistics and writes the manifest. The output is the
same whatever the number of processes.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
import torch.distributed as dist

from pipelines.files import clean_stale_tmp, exit_status, file_sha256, fingerprint, portable_path, read_json, write_json
from pipelines.shards import MANIFEST, TOKEN_SCHEMA, list_array, read_manifest, read_table, write_table
from trainer.checkpoint import INFO_FILE, WEIGHTS_FILE
from trainer.checkpoint_io import load_model
from trainer.data import REF_LOSS_SCHEMA
from trainer.objective import logit_stats
from trainer.train import setup_distributed

Log = Callable[[str], None]
PROG = "python -m trainer.score"


def windows(n: int, context: int) -> list[tuple[int, int, int]]:
    """(start, end, keep_from) over a document's n targets: inputs [start, end) of
    `EOS + doc`, losses kept for targets [keep_from, end)."""
    stride = max(1, context // 2)
    out, covered, start = [], 0, 0
    while covered < n:
        end = min(start + context, n)
        out.append((start, end, covered))
        covered = end
        start = covered + stride - context
    return out


@torch.no_grad()
def score_documents(model, docs: list[np.ndarray], eos_id: int, call_token_id: int, batch_size: int = 16,
                    device: torch.device | str = "cpu") -> list[np.ndarray]:
    """Per-token losses of each document (list of int arrays), aligned to its tokens."""
    T = model.cfg.context
    jobs = [(d, s, e, k) for d, ids in enumerate(docs) for s, e, k in windows(len(ids), T)]
    out = [np.empty(len(ids), dtype=np.float32) for ids in docs]
    for i in range(0, len(jobs), batch_size):
        chunk = jobs[i : i + batch_size]
        width = max(e - s for _, s, e, _ in chunk)
        inputs = np.full((len(chunk), width), eos_id, dtype=np.int64)
        targets = np.full((len(chunk), width), eos_id, dtype=np.int64)
        for row, (d, s, e, _) in enumerate(chunk):
            seq = np.concatenate([[eos_id], docs[d]])  # input j predicts doc token j
            inputs[row, : e - s] = seq[s:e]
            targets[row, : e - s] = docs[d][s:e]
        logits = model(torch.from_numpy(inputs).to(device))
        loss = logit_stats(logits.reshape(-1, logits.shape[-1]), torch.from_numpy(targets).to(device).reshape(-1),
                           call_token_id).token_loss.reshape(len(chunk), width).cpu().numpy()
        for row, (d, s, e, k) in enumerate(chunk):
            out[d][k:e] = loss[row, k - s : e - s]
    return out


def score_dataset(
    checkpoint: str | Path,
    data_dir: str | Path,
    out_dir: str | Path,
    splits: tuple[str, ...] = ("train",),
    batch_size: int = 16,
    device: str | None = None,
    log: Log = print,
    root: str | Path | None = None,
) -> dict:
    """Score every document of `splits` in `data_dir` with the model in `checkpoint`; write
    `out_dir` (shards + manifest; the checkpoint recorded relative to the storage `root`
    when under it). Returns the manifest. Under torchrun, each process scores its share of
    the shards (module docstring)."""
    checkpoint, data_dir, out_dir = Path(checkpoint), Path(data_dir), Path(out_dir)
    d = setup_distributed()
    device = torch.device(device) if device else d.device
    if device.type == "cpu":
        torch.set_flush_denormal(True)
    t0 = time.perf_counter()
    if d.main:
        clean_stale_tmp(out_dir)
    if d.world_size > 1:
        dist.barrier()  # no rank writes before the stale files are gone
    data = read_manifest(data_dir)
    tok = data["tokenizer"]
    model = load_model(checkpoint, device).eval()
    if model.cfg.vocab_size != tok["vocab_size"]:
        raise ValueError(f"{checkpoint}: model vocabulary {model.cfg.vocab_size} != {data_dir}'s tokenizer {tok['vocab_size']}")
    info = read_json(checkpoint / INFO_FILE) if (checkpoint / INFO_FILE).exists() else {}
    identity = {"checkpoint": portable_path(checkpoint, root), "weights_sha256": file_sha256(checkpoint / WEIGHTS_FILE),
                "method": info.get("method"), "step": info.get("step"), "run_fingerprint": info.get("run_fingerprint")}
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    shards = []
    for entry in data["shards"][d.rank :: d.world_size]:
        path = data_dir / entry["file"]
        table = read_table(path, TOKEN_SCHEMA, ["doc_id", "split", "input_ids"])
        rows = [i for i, s in enumerate(table.column("split").to_pylist()) if s in splits]
        docs = [table.column("input_ids")[i].values.to_numpy() for i in rows]
        with autocast:
            losses = score_documents(model, docs, tok["eos_id"], tok["call_token_id"], batch_size, device)
        per_row: list[np.ndarray | None] = [None] * table.num_rows
        for i, loss in zip(rows, losses):
            per_row[i] = loss
        column = list_array([x if x is not None else np.zeros(0, np.float32) for x in per_row], pa.float32())
        column = pa.ListArray.from_arrays(column.offsets, column.values, mask=pa.array([x is None for x in per_row]))
        tokens = int(sum(len(x) for x in losses))
        shard_loss = float(sum(x.sum(dtype=np.float64) for x in losses))
        stats = {"file": entry["file"], "docs": table.num_rows, "scored_docs": len(rows), "tokens": tokens,
                 "mean_loss": shard_loss / max(tokens, 1)}
        stats["sha256"] = write_table(out_dir / entry["file"], pa.table([table.column("doc_id"), column], schema=REF_LOSS_SCHEMA), stats)
        shards.append(stats)
        log(f"scored {entry['file']}: {len(rows)} documents, {tokens} tokens, mean loss {stats['mean_loss']:.3f}")
    if d.world_size > 1:
        gathered = [None] * d.world_size
        dist.all_gather_object(gathered, shards)
        shards = [s for rank_shards in gathered for s in rank_shards]
    order = {entry["file"]: i for i, entry in enumerate(data["shards"])}
    shards.sort(key=lambda s: order[s["file"]])
    total_tokens = sum(s["tokens"] for s in shards)
    total_loss = sum(s["mean_loss"] * s["tokens"] for s in shards)
    manifest = {
        "fingerprint": fingerprint(data["fingerprint"], {k: v for k, v in identity.items() if k != "checkpoint"}, splits,
                                   model.cfg.context),  # where the checkpoint lies is no part of what was scored
        "token_shards_fingerprint": data["fingerprint"],
        "model": identity,
        "splits": list(splits),
        "context": model.cfg.context,
        "window_stride": max(1, model.cfg.context // 2),
        "loss": "-log p_CALL(x_j | EOS + preceding tokens of the document), nats",
        "shards": shards,
        "tokens": total_tokens,
        "mean_loss": total_loss / max(total_tokens, 1),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    if d.main:
        write_json(out_dir / MANIFEST, manifest)
    return manifest


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=PROG, description="Per-token losses of a model over a token dataset.")
    p.add_argument("--checkpoint", required=True, help="checkpoint folder (step-XXXXXXXX)")
    p.add_argument("--data", required=True, help="token dataset directory")
    p.add_argument("--out", required=True, help="output directory (reference_losses)")
    p.add_argument("--split", action="append", default=None, help="splits to score (default: train)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--root", default=None, help="storage root: the manifest records the checkpoint relative to it")
    a = p.parse_args(argv)
    a.split = tuple(a.split or ("train",))
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    try:
        return exit_status(PROG, lambda: run(a))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def run(a: argparse.Namespace) -> int:
    m = score_dataset(a.checkpoint, a.data, a.out, a.split, a.batch_size, root=a.root)
    print(f"{m['tokens']} tokens scored, mean loss {m['mean_loss']:.4f} -> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
