"""The lm-eval model `lacy`: `<CALL>` masked in scoring and in generation, and the `lm_eval`
command line finds it (through the .pth line `make install` puts into the virtualenv)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM
from transformers import AutoModelForCausalLM

from evaluation.checkpoint import load_checkpoint, load_hf_tokenizer, write_random_checkpoint
from evaluation.measures.lm_eval_model import LacyLM
from evaluation.measures.nlu import write_task_yamls

REPO = Path(__file__).parents[2]
PTH = REPO / "evaluation" / "lm_eval_model.pth"


def in_process_lm(checkpoint_dir: Path, batch_size: int = 4) -> LacyLM:
    ckpt = load_checkpoint(checkpoint_dir)
    return LacyLM(pretrained=ckpt.model, tokenizer=load_hf_tokenizer(checkpoint_dir), call_token_id=ckpt.call_id,
                  batch_size=batch_size, device="cpu")


def test_call_logit_is_masked(random_checkpoint):
    ckpt = load_checkpoint(random_checkpoint)
    lm = in_process_lm(random_checkpoint)
    inps = torch.tensor([[5, 17, 42, 99]])
    masked = lm._model_call(inps)
    plain = ckpt.model(inps).logits
    assert torch.isneginf(masked[..., ckpt.call_id]).all()
    assert torch.equal(masked[..., :ckpt.call_id], plain[..., :ckpt.call_id])


def test_a_checkpoint_directory_brings_its_call_id(random_checkpoint):
    lm = LacyLM(pretrained=str(random_checkpoint), device="cpu")
    assert lm.call_token_id == load_checkpoint(random_checkpoint).call_id
    with pytest.raises(ValueError, match="lacy.json"):
        LacyLM(pretrained=str(random_checkpoint), call_token_id=lm.call_token_id - 1, device="cpu")
    with pytest.raises(ValueError, match="call_token_id"):
        LacyLM(pretrained=lm.model, tokenizer=lm.tokenizer, device="cpu")


def test_loglikelihood_is_normalized_over_the_tokens_other_than_call(random_checkpoint):
    """log p_{\\CALL}(continuation | context) = sum of log-softmax over the logits without <CALL>."""
    lm = in_process_lm(random_checkpoint)
    context, continuation = "Ralph Earl was an American", " painter"
    (loglik, _), = lm.loglikelihood([Instance("loglikelihood", {}, (context, continuation), 0)])
    tok = lm.tokenizer
    ctx = tok(context, add_special_tokens=False).input_ids
    whole = tok(context + continuation, add_special_tokens=False).input_ids
    cont = whole[len(ctx):]
    assert whole[:len(ctx)] == ctx and cont
    with torch.no_grad():
        logits = lm.model(torch.tensor([whole])).logits[0, len(ctx) - 1:-1]
    by_hand = torch.log_softmax(logits[:, :lm.call_token_id], dim=-1)[torch.arange(len(cont)), cont].sum()
    unmasked = torch.log_softmax(logits, dim=-1)[torch.arange(len(cont)), cont].sum()
    assert loglik == pytest.approx(float(by_hand), abs=1e-5)
    assert loglik != pytest.approx(float(unmasked), abs=1e-5)  # the mask changes the normalization


@pytest.fixture(scope="module")
def call_loving_checkpoint(random_checkpoint, tokenizer_path, tmp_path_factory) -> Path:
    """A checkpoint whose `<CALL>` logit is the largest at every position: the final layer
    norm outputs the constant vector u, and <CALL>'s output embedding is 100 u."""
    model = AutoModelForCausalLM.from_pretrained(random_checkpoint)
    call_id = load_checkpoint(random_checkpoint).call_id
    torch.manual_seed(3)
    u = torch.randn(model.config.n_embd)
    with torch.no_grad():
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.copy_(u)
        model.lm_head.weight[call_id] = 100 * u
    return write_random_checkpoint(tmp_path_factory.mktemp("ckpt") / "calls", tokenizer_path, model=model)


def test_generation_never_emits_call(call_loving_checkpoint):
    lm = in_process_lm(call_loving_checkpoint)
    plain = HFLM(pretrained=lm.model, tokenizer=lm.tokenizer, device="cpu")
    call_id, new = lm.call_token_id, 6
    context = torch.tensor([lm.tokenizer("Ralph Earl was", add_special_tokens=False).input_ids])
    unmasked = plain._model_generate(context, context.shape[1] + new, stop=[])[0, context.shape[1]:]
    assert unmasked.tolist() == [call_id] * new  # <CALL> is the argmax without the mask
    # with it, greedy decoding takes the best other token; the logits are the same at every
    # position here, so that is one token, repeated
    best_other = int((lm.model.lm_head.weight[:call_id] @ lm.model.transformer.ln_f.bias).argmax())
    masked = lm._model_generate(context, context.shape[1] + new, stop=[])[0, context.shape[1]:]
    assert masked.tolist() == [best_other] * new
    (text,) = lm.generate_until([Instance("generate_until", {}, ("Ralph Earl was", {"until": ["\n\n"], "max_gen_toks": new}), 0)])
    assert text == lm.tokenizer.decode([best_other] * new)


def _samples(path: Path) -> dict[int, list]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return {row["doc_id"]: row["filtered_resps"] for row in rows}


@pytest.mark.slow  # a fresh interpreter importing lm-eval, torch and transformers: 0.5-2 min here
def test_lm_eval_command_line_finds_lacy_and_scores_as_in_process(random_checkpoint, tmp_path):
    """`lm_eval --model lacy --model_args pretrained=DIR` as a user types it, offline on a
    local task; the interpreter starts with the .pth line as the virtualenv's site-packages
    would hold it (a sitecustomize that adds a site dir holding a copy of it)."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    tasks = write_task_yamls(tmp_path / "tasks", ["arc_easy"], cache_dir=tmp_path / "hf-datasets")
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    (site_dir / PTH.name).write_text(PTH.read_text())
    (site_dir / "sitecustomize.py").write_text(f"import site\nsite.addsitedir({str(site_dir)!r})\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site_dir), str(REPO)]), "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [str(Path(sys.executable).with_name("lm_eval")), "--model", "lacy",
               "--model_args", f"pretrained={random_checkpoint}", "--tasks", "arc_easy", "--include_path", str(tasks),
               "--limit", "4", "--batch_size", "4", "--device", "cpu", "--output_path", str(tmp_path / "out"),
               "--log_samples"]
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (samples_file,) = (tmp_path / "out").rglob("samples_arc_easy_*.jsonl")
    from_cli = _samples(samples_file)

    out = simple_evaluate(model=in_process_lm(random_checkpoint), tasks=["arc_easy"], limit=4, log_samples=True,
                          task_manager=TaskManager(include_path=str(tasks), include_defaults=False), verbosity="WARNING")
    in_process = {s["doc_id"]: s["filtered_resps"] for s in out["samples"]["arc_easy"]}
    assert len(from_cli) == 4 and from_cli.keys() == in_process.keys()
    for doc_id, responses in in_process.items():
        assert [float(ll) for ll, _ in from_cli[doc_id]] == [float(ll) for ll, _ in responses]
