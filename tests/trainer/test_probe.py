"""The mechanism probe: its packing and overlap by hand, the probe file's checks, and in
training: probe.jsonl's lines, the same weights with and without a probe, exact on resume."""

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from safetensors.torch import load_file

from pipelines.classes import CLASS_NAMES
from pipelines.shards import write_table
from trainer.data import DataError, Documents, load_documents
from trainer.masks import PROBE, TRAINING, mask_generator
from trainer.probe import NO_KIND, PROBE_FILE, PROBE_SCHEMA, ProbeDocs, overlap, probe_batch, read_probe, write_probe
from trainer.toy_data import synthetic_docs
from trainer.train import TrainConfig, train

EOS = 2


def test_overlap_by_hand():
    previous = torch.tensor([1, 1, 0, 0, 1, 0]).bool()
    current = torch.tensor([1, 0, 1, 0, 1, 1]).bool()
    # both: 0, 4 (2); previous: 3; either: 0, 1, 2, 4, 5 (5)
    assert overlap(previous, current) == {"recalled": 2 / 3, "jaccard": 2 / 5}
    assert overlap(None, current) == {"recalled": None, "jaccard": None}  # the first probe
    none = torch.zeros(6, dtype=torch.bool)
    assert overlap(none, current) == {"recalled": None, "jaccard": 0.0}
    assert overlap(none, none) == {"recalled": None, "jaccard": None}
    assert overlap(current, current) == {"recalled": 1.0, "jaccard": 1.0}


def test_probe_batch_packs_as_the_loader_and_repeats_the_stream_to_fill_the_last_micro_batch():
    ids = np.array([10, 11, 12, 20, 21], dtype=np.int32)  # document 0: 10 11 12, document 1: 20 21
    docs = Documents(ids=ids, token_class=np.array([2, 1, 0, 0, 2], np.int8), offsets=np.array([0, 3, 5]),
                     judge_call=None, ref_loss=None, tokenizer={"eos_id": EOS})
    probe = ProbeDocs(docs=[1, 0], kinds=[np.array([1, 2], np.int8), np.array([0, 1, 0], np.int8)], names=("a", "b", "c"))
    batch = probe_batch(probe, docs, seq_len=4, micro_batch_size=2)
    # stream E 20 21 E 10 11 12 (7 tokens, 6 targets): 2 rows of 4 targets, one micro-batch of 2
    # rows; row 1 reads positions 4..8, and 7, 8 start the stream over (E, 20)
    (mb,) = batch.micro_batches
    assert mb.inputs.tolist() == [[EOS, 20, 21, EOS], [10, 11, 12, EOS]]
    assert mb.targets.tolist() == [[20, 21, EOS, 10], [11, 12, EOS, 20]]
    assert mb.labels.eos.tolist() == [False, False, True, False, False, False, True, False]
    assert mb.labels.fact.tolist() == [False, True, False, True, False, False, False, False]
    # kinds per target: 20 -> 1, 21 -> 2, E, 10 -> 0 | 11 -> 1, 12 -> 0, then the repeat: none
    assert batch.kind.tolist() == [1, 2, NO_KIND, 0, 1, 0, NO_KIND, NO_KIND]


def test_the_probe_stream_never_draws_trainings_numbers():
    seeds = lambda stream: {mask_generator(s, t, i, stream).initial_seed()  # noqa: E731
                            for s in range(3) for t in range(30) for i in range(8)}
    training, probe = seeds(TRAINING), seeds(PROBE)
    assert len(training) == len(probe) == 3 * 30 * 8 and not training & probe


def train_docs(tokenizer_path: Path) -> list[tuple]:
    return [d for d in synthetic_docs(tokenizer_path) if d[1] == "train"]


@pytest.fixture
def probe_file(tmp_path, tokenizer_path) -> Path:
    """Three train documents, the kind of each token its spaCy class (grammatical, other, fact)."""
    path = tmp_path / "probe.parquet"
    docs = train_docs(tokenizer_path)[:3]
    write_probe(path, [d[0] for d in docs], [d[3] for d in docs], list(CLASS_NAMES))
    return path


def test_read_probe_checks_the_file_against_the_training_documents(tmp_path, dataset, tokenizer_path, probe_file):
    docs = load_documents([dataset], "train")
    probe = read_probe(probe_file, docs)
    assert probe.names == CLASS_NAMES and [len(k) for k in probe.kinds] == [len(d[2]) for d in train_docs(tokenizer_path)[:3]]
    doc = train_docs(tokenizer_path)[0]
    validation = next(d for d in synthetic_docs(tokenizer_path) if d[1] == "validation")

    def fails(doc_ids, kinds, names=CLASS_NAMES, metadata=True):
        path = tmp_path / "bad.parquet"
        if metadata:
            write_probe(path, doc_ids, kinds, list(names))
        else:
            write_table(path, pa.table([pa.array(doc_ids), pa.array([k.tolist() for k in kinds], pa.list_(pa.int8()))],
                                       schema=PROBE_SCHEMA))
        with pytest.raises(DataError) as e:
            read_probe(path, docs)
        return str(e.value)

    assert fails(["nowhere"], [doc[3]]) == f"{tmp_path}/bad.parquet: row 0 (doc_id nowhere): not a document of the train split of the training data"
    assert "row 0 (doc_id " + validation[0] in fails([validation[0]], [validation[3]])
    assert fails([doc[0]], [doc[3][:-1]]) == (
        f"{tmp_path}/bad.parquet: row 0 (doc_id {doc[0]}): kind has {len(doc[3]) - 1} codes, the document {len(doc[3])} tokens")
    assert fails([doc[0], doc[0]], [doc[3], doc[3]]) == f"{tmp_path}/bad.parquet: row 1 (doc_id {doc[0]}): repeats row 0"
    assert "kind codes must lie in [0, 3)" in fails([doc[0]], [np.full(len(doc[3]), 3, np.int8)])
    assert "file metadata must name the kinds" in fails([doc[0]], [doc[3]], metadata=False)
    assert "file metadata must name the kinds" in fails([doc[0]], [doc[3]], names=["a", "a", "b"])
    assert fails([], []) == f"{tmp_path}/bad.parquet: no documents"
    with pytest.raises(DataError, match="probe file missing"):
        read_probe(tmp_path / "none.parquet", docs)


def probe_lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / PROBE_FILE).read_text().splitlines()]


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(path / "model.safetensors")


@pytest.mark.parametrize("method", ["spacy", "lacy"])
def test_a_probe_changes_nothing_in_training_and_logs_sane_shares(tmp_path, dataset, probe_file, method):
    def run(out, probe, steps=6):
        cfg = TrainConfig(method=method, data=(str(dataset),), out=str(tmp_path / out), preset="smoke", max_steps=steps,
                          save_every=3, probe=probe)
        return train(cfg, log=lambda _: None)

    plain, probed = weights(run("plain", None)), weights(run("probed", str(probe_file)))
    assert plain.keys() == probed.keys() and all(torch.equal(plain[k], probed[k]) for k in plain)
    assert not (tmp_path / "plain" / PROBE_FILE).exists()
    lines = probe_lines(tmp_path / "probed")
    assert [line["step"] for line in lines] == [1, 2, 3, 4, 5, 6]
    for line in lines:
        assert set(line["rule"]) == set(line["decoded"]) == set(CLASS_NAMES)
        assert all(0 <= v <= 1 for v in (*line["rule"].values(), *line["decoded"].values()))
        # the rule of spacy and lacy calls fact tokens only, and there are enough for 15%
        assert line["rule"]["grammatical"] == line["rule"]["other"] == 0 and line["rule"]["fact"] > 0
        assert line["seconds"] > 0
    assert lines[0]["rule_overlap"] == lines[0]["decoded_overlap"] == {"recalled": None, "jaccard": None}
    assert all(0 <= line["rule_overlap"]["jaccard"] <= 1 and 0 <= line["rule_overlap"]["recalled"] <= 1 for line in lines[1:])
    # resumed from step 3 (killed after its checkpoint): the same lines, overlaps included
    shutil.rmtree(tmp_path / "probed" / "step-00000006")
    run("probed", str(probe_file))
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(probe_lines(tmp_path / "probed")) == strip(lines)
