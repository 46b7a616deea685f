"""Checkpoints load in Hugging Face exactly, the tokenizer keeps <CALL>, and only complete
checkpoints are found."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from pipelines.tokenizer import CALL_TOKEN, FAST_FILE, Tokenizer
from trainer.checkpoint import latest_checkpoint, list_checkpoints, run_checkpoints
from trainer.checkpoint_io import load_model, load_trainer_state, save_checkpoint
from trainer.model import GPT, model_config
from trainer.train import TrainConfig, train


@pytest.fixture(scope="module")
def run(tmp_path_factory, dataset):
    out = tmp_path_factory.mktemp("runs") / "lacy"
    train(TrainConfig(method="lacy", data=(str(dataset),), out=str(out), preset="smoke", max_steps=3, save_every=2), log=lambda _: None)
    return out


def test_hf_model_gives_the_same_logits(run):
    from transformers import AutoModelForCausalLM

    ckpt = latest_checkpoint(run)
    ours = load_model(ckpt.path).eval()
    hf = AutoModelForCausalLM.from_pretrained(ckpt.path).eval()
    assert type(hf).__name__ == "GPT2LMHeadModel"
    x = torch.randint(0, ours.cfg.vocab_size, (2, ours.cfg.context), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(hf(x).logits, ours(x), rtol=0, atol=1e-5)
    assert torch.equal(hf.lm_head.weight, hf.transformer.wte.weight)  # tied, as trained


def test_hf_tokenizer_has_call_at_the_last_id(run, tokenizer_path):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(latest_checkpoint(run).path)
    sp = Tokenizer(tokenizer_path)
    assert hf.convert_tokens_to_ids(CALL_TOKEN) == sp.call_id == sp.vocab_size - 1 == len(hf) - 1
    assert CALL_TOKEN in hf.all_special_tokens
    assert (latest_checkpoint(run).path / FAST_FILE).exists()
    for text in ("Marie Curie was born in 1867 in Warsaw.", " Niels Bohr  studied\tphysics\n"):
        ids = sp.encode(text).tolist()
        assert hf(text, add_special_tokens=False)["input_ids"] == ids and hf.decode(ids) == text
    assert hf.decode([sp.call_id]) == CALL_TOKEN


def test_lacy_json_and_trainer_state(run, dataset):
    ckpt = latest_checkpoint(run)
    info = json.loads((ckpt.path / "lacy.json").read_text())
    assert info["method"] == "lacy" and info["preset"] == "smoke" and info["step"] == 3
    assert info["tokens_seen"] == 3 * 4 * 32 and info["call_token_id"] == info["model"]["vocab_size"] - 1
    assert info["data"][0]["fingerprint"] == json.loads((dataset / "manifest.json").read_text())["fingerprint"]
    state = load_trainer_state(ckpt.path)  # torch.load(weights_only=True)
    assert state["step"] == 3 and state["loader"]["step"] == 3 and len(state["rng"]) == 1
    assert "state" in state["optimizer"]


def test_only_complete_checkpoints_are_found(run, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(run, root / "a" / "lacy")
    partial = root / "a" / "lacy" / ".tmp-123-step-00000009"
    shutil.copytree(run / "step-00000003", partial)  # killed mid-rename: never counted
    (root / "a" / "lacy" / "step-00000007").mkdir()  # no lacy.json: not a checkpoint
    assert [c.step for c in run_checkpoints(root / "a" / "lacy")] == [2, 3]
    assert latest_checkpoint(root / "a" / "lacy").step == 3
    assert latest_checkpoint(tmp_path / "nothing") is None
    found = list_checkpoints(root)
    assert [(c.run_dir.name, c.step, c.info["method"]) for c in found] == [("lacy", 2, "lacy"), ("lacy", 3, "lacy")]


def test_save_is_atomic_and_round_trips(tmp_path, tokenizer_path):
    torch.manual_seed(0)
    model = GPT(model_config("smoke", Tokenizer(tokenizer_path).vocab_size))
    info = {"method": "baseline", "eos_id": 2, "bos_id": 1}
    path = save_checkpoint(tmp_path, 5, model, tokenizer_path, info)
    assert path.name == "step-00000005" and not list(tmp_path.glob(".tmp-*"))
    again = load_model(path)
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), name
    weights = load_file(path / "model.safetensors")
    assert "lm_head.weight" not in weights and weights["transformer.h.0.attn.c_attn.weight"].shape == (32, 96)
