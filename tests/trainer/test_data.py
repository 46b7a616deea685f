"""The packed loader (layout, labels aligned to targets, determinism, ranks, resume), the
checks `load_documents` makes on its inputs, and its cache of memory-mapped flat arrays."""

import fcntl
import json
import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pytest

import trainer.data as trainer_data
from pipelines.shards import ShardError, list_array, write_table
from trainer.data import CACHE, DataError, Documents, PackedLoader, find_documents, load_documents
from trainer.masks import Needs
from trainer.toy_data import synthetic_docs, write_dataset, write_labels

EOS = 2
# three documents; token id -> (class, judge, reference loss)
DOCS = [[10, 11, 12], [20, 21], [30]]
CLASS = {10: 2, 11: 1, 12: 0, 20: 0, 21: 2, 30: 1}


def small_docs() -> Documents:
    ids = np.array([t for d in DOCS for t in d], dtype=np.int32)
    return Documents(
        ids=ids,
        token_class=np.array([CLASS[t] for t in ids], dtype=np.int8),
        offsets=np.array([0, 3, 5, 6]),
        judge_call=(ids % 2).astype(np.int8),
        ref_loss=ids.astype(np.float32) / 10,
        tokenizer={"eos_id": EOS, "vocab_size": 40, "call_token_id": 39},
    )


def stream(loader, sequences):
    out = []
    for g in range(sequences):
        mb = loader.micro_batch(g // (loader.g * loader.b), (g // loader.b) % loader.g)
        row = mb.inputs[g % loader.b].tolist()
        out += row
    return out


def test_packing_layout_by_hand():
    loader = PackedLoader(small_docs(), seq_len=3, micro_batch_size=1, micro_batches_per_step=1, seed=0)
    order = np.random.default_rng([0, 0]).permutation(3)  # the documented epoch order
    epoch0 = [t for k in order for t in [EOS, *DOCS[k]]]  # EOS before every document: 9 tokens
    assert stream(loader, 3) == epoch0
    mb = loader.micro_batch(0, 0)
    assert mb.inputs.tolist() == [epoch0[0:3]] and mb.targets.tolist() == [epoch0[1:4]]


def test_labels_are_aligned_to_targets():
    loader = PackedLoader(small_docs(), seq_len=4, micro_batch_size=2, micro_batches_per_step=2, seed=3)
    for step in range(6):  # crosses several epochs (9 tokens each)
        for k in range(2):
            mb = loader.micro_batch(step, k)
            targets = mb.targets.reshape(-1).tolist()
            cls = [CLASS.get(t, 0) for t in targets]  # EOS targets: grammatical
            assert mb.labels.fact.tolist() == [c == 2 for c in cls]
            assert mb.labels.other.tolist() == [c == 1 for c in cls]
            assert mb.labels.eos.tolist() == [t == EOS for t in targets]
            assert mb.labels.judge_call.tolist() == [t != EOS and t % 2 == 1 for t in targets]
            ref = mb.labels.ref_loss.tolist()
            for t, r in zip(targets, ref):
                assert (np.isnan(r) if t == EOS else r == pytest.approx(t / 10))
            assert mb.inputs[:, 1:].tolist() == mb.targets[:, :-1].tolist()


def test_every_epoch_holds_every_document_once_in_a_new_order():
    loader = PackedLoader(small_docs(), seq_len=9, micro_batch_size=1, micro_batches_per_step=1, seed=1)
    epochs = [stream_epoch for stream_epoch in (stream(loader, 40)[i * 9 : (i + 1) * 9] for i in range(40))]
    orders = set()
    for tokens in epochs:
        docs = [tuple(d) for d in np.split(np.array(tokens), np.flatnonzero(np.array(tokens) == EOS))[1:]]
        assert sorted(d[1:] for d in docs) == sorted(tuple(d) for d in DOCS)
        orders.add(tuple(d[1] for d in docs))
    assert len(orders) > 1


def test_deterministic_for_a_seed():
    a = PackedLoader(small_docs(), 4, 2, 1, seed=7)
    b = PackedLoader(small_docs(), 4, 2, 1, seed=7)
    c = PackedLoader(small_docs(), 4, 2, 1, seed=8)
    same = all(a.micro_batch(s, 0).inputs.tolist() == b.micro_batch(s, 0).inputs.tolist() for s in range(10))
    differ = any(a.micro_batch(s, 0).inputs.tolist() != c.micro_batch(s, 0).inputs.tolist() for s in range(10))
    assert same and differ


def test_ranks_split_a_step_as_accumulation_does():
    one = PackedLoader(small_docs(), 4, 1, 4, seed=0)  # 1 process, 4 micro-batches accumulated
    two = [PackedLoader(small_docs(), 4, 1, 4, seed=0, rank=r, world_size=2) for r in range(2)]
    for _ in range(3):
        _, whole = one.next_step()
        parts = [mb for loader in two for mb in loader.next_step()[1]]
        assert [(m.index, m.inputs.tolist()) for m in whole] == [(m.index, m.inputs.tolist()) for m in parts]


def test_resume_at_the_exact_position():
    a = PackedLoader(small_docs(), 4, 2, 2, seed=0)
    for _ in range(5):
        a.next_step()
    b = PackedLoader(small_docs(), 4, 2, 2, seed=0)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    (sa, ma), (sb, mb) = a.next_step(), b.next_step()
    assert sa == sb == 5 and [m.inputs.tolist() for m in ma] == [m.inputs.tolist() for m in mb]
    c = PackedLoader(small_docs(), 4, 2, 2, seed=1)
    with pytest.raises(DataError, match="seed"):
        c.load_state_dict(a.state_dict())


# ---------------------------------------------------------------- load_documents


def test_loads_the_train_split_with_labels(dataset, judge_dir, ref_dir, tokenizer_path):
    docs = load_documents([dataset], "train", judge_dirs=[judge_dir], ref_loss_dirs=[ref_dir],
                          needs=Needs(facts=True, judge=True, ref_loss=True), method="test")
    train = [d for d in synthetic_docs(tokenizer_path) if d[1] == "train"]
    assert docs.num_docs == len(train)
    assert len(docs.ids) == len(docs.token_class) == len(docs.judge_call) == len(docs.ref_loss) == sum(len(d[2]) for d in train)
    assert sorted(map(tuple, np.split(docs.ids, docs.offsets[1:-1]))) == sorted(tuple(d[2]) for d in train)
    assert not np.isnan(docs.ref_loss).any()
    valid = load_documents([dataset], "validation")
    assert valid.num_docs == len(synthetic_docs(tokenizer_path)) - len(train)


def test_find_documents_gives_their_place_in_the_loaded_split(dataset, tokenizer_path):
    docs = load_documents([dataset], "train")
    all_docs = synthetic_docs(tokenizer_path)
    train = {d[0]: d[2] for d in all_docs if d[1] == "train"}
    validation = [d[0] for d in all_docs if d[1] == "validation"]
    found = find_documents(docs, "train", [*train, *validation, "nowhere"])
    assert sorted(found) == sorted(train) and sorted(found.values()) == list(range(docs.num_docs))
    for doc_id, ids in train.items():
        i = found[doc_id]
        assert docs.ids[docs.offsets[i]:docs.offsets[i + 1]].tolist() == ids.tolist()


def test_judge_labels_follow_their_documents(dataset, judge_dir, tokenizer_path):
    import pyarrow.parquet as pq

    docs = load_documents([dataset], "train", judge_dirs=[judge_dir], needs=Needs(judge=True))
    # shard 0 first, its train rows in order: compare the first document's labels with the file
    row = [i for i, s in enumerate(pq.read_table(dataset / "shard-0000.parquet")["split"].to_pylist()) if s == "train"][0]
    expected = pq.read_table(judge_dir / "shard-0000.parquet")["judge_call"][row].as_py()
    assert docs.judge_call[: docs.offsets[1]].tolist() == expected


def test_mismatched_lengths_name_file_and_document(tmp_path, tokenizer_path):
    docs = synthetic_docs(tokenizer_path, n=4)
    bad = docs[1]
    docs[1] = (bad[0], bad[1], bad[2], bad[3][:-1])
    write_dataset(tmp_path, tokenizer_path, docs, shards=1)
    with pytest.raises(ShardError, match=rf"shard-0000.parquet: row 1 \(doc_id {bad[0]}\)"):
        load_documents([tmp_path])


def test_judge_from_other_token_shards_is_refused(tmp_path, dataset, tokenizer_path):
    values = {d[0]: np.zeros(len(d[2]), np.int8) for d in synthetic_docs(tokenizer_path)}
    write_labels(tmp_path / "judge", dataset, "judge_call", values, token_shards_fingerprint="0123456789abcdef")
    with pytest.raises(DataError, match=r"judge/manifest.json: judge labels made from token shards with fingerprint 0123456789abcdef"):
        load_documents([dataset], judge_dirs=[tmp_path / "judge"], needs=Needs(judge=True))


def test_judge_of_wrong_length_names_the_label_file(tmp_path, dataset, tokenizer_path):
    values = {d[0]: np.zeros(len(d[2]) + (d[0].endswith("002")), np.int8) for d in synthetic_docs(tokenizer_path)}
    write_labels(tmp_path / "judge", dataset, "judge_call", values)
    with pytest.raises(ShardError, match=r"judge/shard-0000.parquet: row 1 \(doc_id d0-002\): judge_call has"):
        load_documents([dataset], judge_dirs=[tmp_path / "judge"], needs=Needs(judge=True))


def test_changed_shard_is_refused(tmp_path, tokenizer_path):
    write_dataset(tmp_path, tokenizer_path, synthetic_docs(tokenizer_path, n=4), shards=1)
    table = pa.table({"doc_id": ["x"], "split": ["train"], "input_ids": list_array([np.array([5], np.int32)], pa.int32()),
                      "token_class": list_array([np.array([2], np.int8)], pa.int8())})
    write_table(tmp_path / "shard-0000.parquet", table)
    with pytest.raises(ShardError, match="sha256 mismatch"):
        load_documents([tmp_path])


def test_missing_labels_for_a_method_that_needs_them(dataset):
    with pytest.raises(DataError, match="needs LLM-judge labels"):
        load_documents([dataset], needs=Needs(judge=True), method="llm_judge")
    with pytest.raises(DataError, match="needs reference losses"):
        load_documents([dataset], needs=Needs(ref_loss=True), method="rho1")


def test_reference_losses_missing_for_train_documents(tmp_path, dataset, tokenizer_path):
    values = {d[0]: None for d in synthetic_docs(tokenizer_path)}
    write_labels(tmp_path / "ref", dataset, "ref_loss", values)
    with pytest.raises(DataError, match="reference losses missing"):
        load_documents([dataset], ref_loss_dirs=[tmp_path / "ref"], needs=Needs(ref_loss=True))


def test_unlabeled_data_is_refused_by_fact_methods(dataset, unlabeled_dataset):
    both = load_documents([dataset, unlabeled_dataset])  # the reference model's data
    assert (both.token_class == -1).any() and len(both.sources) == 2
    with pytest.raises(DataError, match=r"unlabeled\d*/shard-0000.parquet: doc_id x7-000 has no fact labels.*'lacy' needs"):
        load_documents([dataset, unlabeled_dataset], needs=Needs(facts=True), method="lacy")


# ---------------------------------------------------------------- the cache of flat arrays


def in_memory(docs: Documents) -> Documents:
    copy = lambda a: None if a is None else np.array(a)  # noqa: E731
    return Documents(copy(docs.ids), copy(docs.token_class), copy(docs.offsets), copy(docs.judge_call), copy(docs.ref_loss),
                     docs.tokenizer, docs.sources)


def batch_bytes(mb) -> list[bytes]:
    labels = mb.labels
    return [t.numpy().tobytes() for t in (mb.inputs, mb.targets, labels.fact, labels.other, labels.judge_call, labels.ref_loss)]


def test_memory_mapped_documents_give_the_same_micro_batches_as_in_memory_arrays(dataset, judge_dir, ref_dir):
    docs = load_documents([dataset], judge_dirs=[judge_dir], ref_loss_dirs=[ref_dir], needs=Needs(judge=True, ref_loss=True))
    assert all(isinstance(a, np.memmap) for a in (docs.ids, docs.token_class, docs.offsets, docs.judge_call, docs.ref_loss))
    for rank in range(2):  # 30 steps of 128 tokens: several epochs
        mapped, held = (PackedLoader(d, 16, 2, 4, seed=5, rank=rank, world_size=2) for d in (docs, in_memory(docs)))
        for _ in range(30):
            (sa, a), (sb, b) = mapped.next_step(), held.next_step()
            assert sa == sb and [batch_bytes(m) for m in a] == [batch_bytes(m) for m in b]


def test_the_cache_is_built_once_and_reused(tmp_path, tokenizer_path, monkeypatch):
    write_dataset(tmp_path, tokenizer_path, synthetic_docs(tokenizer_path, n=12))
    built = []
    build = trainer_data._build_cache
    monkeypatch.setattr(trainer_data, "_build_cache", lambda cache, *a: built.append(cache) or build(cache, *a))
    with ThreadPoolExecutor(4) as pool:  # ranks starting together: one builds, the others wait for it
        loaded = list(pool.map(lambda _: load_documents([tmp_path]), range(4)))
    assert len(built) == 1 and all(np.array_equal(d.ids, loaded[0].ids) for d in loaded)
    assert load_documents([tmp_path]).num_docs == loaded[0].num_docs and len(built) == 1
    stale = built[0].parent / f".tmp-999-{built[0].name}"  # what a killed build leaves
    stale.mkdir()
    shutil.rmtree(built[0])
    load_documents([tmp_path])
    assert len(built) == 2 and not stale.exists()


def test_cache_arrays_of_the_wrong_size_are_refused(tmp_path, tokenizer_path):
    write_dataset(tmp_path, tokenizer_path, synthetic_docs(tokenizer_path, n=12))
    tokens = len(load_documents([tmp_path]).ids)
    (cache,) = [p for p in (tmp_path / CACHE).iterdir() if p.is_dir()]
    np.save(cache / "token_class.npy", np.zeros(tokens - 1, np.int8))
    with pytest.raises(DataError, match=rf"{cache}/token_class.npy: int8 x {tokens - 1}, expected int8 x {tokens} "):
        load_documents([tmp_path])


def test_a_shard_that_disagrees_with_the_manifests_token_count_is_refused(tmp_path, tokenizer_path):
    write_dataset(tmp_path, tokenizer_path, synthetic_docs(tokenizer_path, n=12))
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["shards"][1]["tokens_per_split"]["train"] += 1
    manifest["tokens_per_split"]["train"] += 1
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    n = manifest["shards"][1]["tokens_per_split"]["train"]
    with pytest.raises(ShardError, match=rf"shard-0001.parquet: {n - 1} train tokens, {tmp_path}/manifest.json says {n}"):
        load_documents([tmp_path])
    assert not [p for p in (tmp_path / CACHE).iterdir() if p.is_dir()]  # nothing that looks finished


def caches(cache_dir) -> list[str]:
    return sorted(p.name for p in cache_dir.iterdir() if p.is_dir())


def test_the_cache_goes_to_cache_dir_and_an_unwritable_one_is_named(tmp_path, tokenizer_path):
    data = tmp_path / "data"
    write_dataset(data, tokenizer_path, synthetic_docs(tokenizer_path, n=12))
    docs = load_documents([data], cache_dir=tmp_path / "elsewhere")
    assert not (data / CACHE).exists() and len(caches(tmp_path / "elsewhere")) == 1
    assert docs.num_docs == load_documents([data]).num_docs  # the default: cache/ beside the shards
    (tmp_path / "a-file").write_text("")  # running as root, a read-only folder would still be written: a file stands in
    with pytest.raises(DataError, match=rf"{tmp_path}/a-file/cache: cannot write the data cache here \(Not a directory\); "
                                        r"give a writable folder with --cache-dir"):
        load_documents([data], cache_dir=tmp_path / "a-file" / "cache")


def test_caches_no_load_can_read_again_are_deleted_and_the_others_kept(tmp_path, tokenizer_path, judge_dir, dataset):
    data, cache_dir = tmp_path / "data", tmp_path / "cache"
    write_dataset(data, tokenizer_path, synthetic_docs(tokenizer_path, n=12))
    load_documents([data], cache_dir=cache_dir)
    load_documents([data], "validation", cache_dir=cache_dir)
    load_documents([dataset], judge_dirs=[judge_dir], needs=Needs(judge=True), cache_dir=cache_dir)
    live = caches(cache_dir)
    assert len(live) == 3  # another split and other inputs are other caches, and kept
    old_code = cache_dir / "train-0123456789abcdef"  # a cache from before meta.json recorded its code
    old_code.mkdir()
    (old_code / "ids.npy").write_bytes(b"")
    busy = cache_dir / "train-fedcba9876543210"  # one another process holds: left for a later load
    busy.mkdir()
    with open(cache_dir / f"{busy.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        load_documents([data], cache_dir=cache_dir)
        assert caches(cache_dir) == sorted([*live, busy.name])
    write_dataset(data, tokenizer_path, synthetic_docs(tokenizer_path, n=12, seed=1))  # the shards change: their caches die
    load_documents([data], cache_dir=cache_dir)
    after = caches(cache_dir)
    assert len(after) == 2 and set(after) - set(live) and not {busy.name} & set(after)
    judge_cache = [n for n in live if n in after]  # the other dataset's cache, still readable
    assert len(judge_cache) == 1 and load_documents([dataset], judge_dirs=[judge_dir], needs=Needs(judge=True),
                                                    cache_dir=cache_dir).num_docs
    assert caches(cache_dir) == after
