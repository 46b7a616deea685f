"""Reference losses: windows, alignment with input_ids, agreement with a direct forward pass,
and use by rho1 / spacy_refloss through the fingerprint check."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from pipelines.tokenizer import Tokenizer
from trainer.checkpoint import latest_checkpoint
from trainer.checkpoint_io import load_model
from trainer.objective import logit_stats
from trainer.score import score_dataset, windows
from trainer.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[2]


def test_windows_by_hand():
    assert windows(3, 4) == [(0, 3, 0)]
    # context 4, stride 2: each later window keeps its last 2 targets
    assert windows(10, 4) == [(0, 4, 0), (2, 6, 4), (4, 8, 6), (6, 10, 8)]
    assert windows(9, 4) == [(0, 4, 0), (2, 6, 4), (4, 8, 6), (6, 9, 8)]


@pytest.fixture(scope="module")
def scored(tmp_path_factory, dataset):
    root = tmp_path_factory.mktemp("score")
    train(TrainConfig(method="reference", data=(str(dataset),), out=str(root / "reference"), preset="smoke", max_steps=2),
          log=lambda _: None)
    ckpt = latest_checkpoint(root / "reference").path
    manifest = score_dataset(ckpt, dataset, root / "reference_losses", batch_size=5, log=lambda _: None)
    return ckpt, root / "reference_losses", manifest


def direct_losses(model, ids, eos):
    seq = torch.tensor([[eos, *ids[:-1]]])
    logits = model(seq)[0]
    return logit_stats(logits, torch.tensor(ids), logits.shape[-1] - 1).token_loss.numpy()


def test_losses_align_with_input_ids_and_match_a_forward_pass(scored, dataset, tokenizer_path):
    ckpt, out, manifest = scored
    data = json.loads((dataset / "manifest.json").read_text())
    assert manifest["token_shards_fingerprint"] == data["fingerprint"] and manifest["model"]["step"] == 2
    model = load_model(ckpt).eval()
    eos = Tokenizer(tokenizer_path).eos_id
    T = model.cfg.context
    checked_long = 0
    for entry in data["shards"]:
        tokens = pq.read_table(dataset / entry["file"])
        ref = pq.read_table(out / entry["file"])
        assert ref["doc_id"].to_pylist() == tokens["doc_id"].to_pylist()
        for ids, split, loss in zip(tokens["input_ids"].to_pylist(), tokens["split"].to_pylist(), ref["ref_loss"].to_pylist()):
            if split != "train":
                assert loss is None
                continue
            assert len(loss) == len(ids)
            with torch.no_grad():
                if len(ids) <= T:  # one window: the document after EOS
                    np.testing.assert_allclose(loss, direct_losses(model, ids, eos), rtol=1e-5, atol=1e-5)
                else:  # every window's kept losses equal a forward pass over that window
                    for s, e, k in windows(len(ids), T):
                        seq = [eos, *ids][s:e]
                        logits = model(torch.tensor([seq]))[0]
                        want = logit_stats(logits, torch.tensor(ids[s:e]), logits.shape[-1] - 1).token_loss.numpy()
                        np.testing.assert_allclose(loss[k:e], want[k - s :], rtol=1e-5, atol=1e-5)
                    checked_long += 1
    assert checked_long > 0  # the synthetic documents include some longer than the context


@pytest.mark.parametrize("method", ["rho1", "spacy_refloss"])
def test_methods_train_on_scored_losses(scored, dataset, tmp_path, method):
    _, out, _ = scored
    final = train(TrainConfig(method=method, data=(str(dataset),), out=str(tmp_path), preset="smoke", max_steps=1,
                              ref_losses=(str(out),)), log=lambda _: None)
    info = json.loads((final / "lacy.json").read_text())
    assert info["data"][0]["ref_losses"]["path"] == str(out)


def test_torchrun_ranks_split_the_shards_and_write_what_one_process_writes(scored, dataset, tmp_path):
    ckpt, one_dir, one = scored
    assert len(one["shards"]) >= 2  # both ranks have work
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "trainer.score", "--checkpoint", str(ckpt), "--data", str(dataset),
                           "--out", str(tmp_path / "two"), "--batch-size", "5"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    two = json.loads((tmp_path / "two" / "manifest.json").read_text())
    assert {k: v for k, v in two.items() if k != "seconds"} == {k: v for k, v in one.items() if k != "seconds"}
    for entry in one["shards"]:
        assert (tmp_path / "two" / entry["file"]).read_bytes() == (one_dir / entry["file"]).read_bytes()
