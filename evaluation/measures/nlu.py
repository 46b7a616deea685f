"""NLU (Table 1): ARC-Easy, HellaSwag, PIQA and SIQA through lm-eval 0.4.13, offline, over
the files in `data/embedded/nlu/`, with the `<CALL>` logit masked (-inf) before the
log-likelihoods (the lm-eval model `lacy`, `evaluation/measures/lm_eval_model.py`); accuracy and
normalized accuracy as the harness reports them.

The task YAMLs are generated at run time from lm-eval's own (`lm_eval/tasks/...`): every
field is kept (prompts, choices, targets, metrics, `process_docs`) except the data lines:
`dataset_path: json` with absolute `data_files` (lm-eval resolves relative ones against the
working directory), and only the splits the repo ships (zero-shot needs no train split).
`datasets` reads the .jsonl.xz files directly. Tasks keep the harness's names.
Contexts are scored as the harness does (no document-separator token before them).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import yaml

from evaluation import checkpoint
from evaluation.checkpoint import LoadedCheckpoint, load_checkpoint, load_hf_tokenizer
from pipelines.corpus import EMBEDDED_DIR
from pipelines.files import code_fingerprint, file_sha256, fingerprint

NLU_DIR = EMBEDDED_DIR / "nlu"
# task -> (stock YAML under lm_eval/tasks, {split: data file under NLU_DIR})
NLU_TASKS: dict[str, tuple[str, dict[str, str]]] = {
    "arc_easy": ("arc/arc_easy.yaml", {"test": "arc_easy/ARC-Easy-test.jsonl.xz"}),
    "hellaswag": ("hellaswag/hellaswag.yaml", {"validation": "hellaswag/hellaswag_validation.jsonl.xz"}),
    "piqa": ("piqa/piqa.yaml", {"validation": "piqa/piqa_validation.jsonl.xz"}),
    "social_iqa": ("siqa/siqa.yaml", {"validation": "social_iqa/social_i_qa_validation.jsonl.xz"}),
}
SPLIT_KEYS = {"train": "training_split", "validation": "validation_split", "test": "test_split"}
METRICS = ("acc", "acc_norm")
LM_EVAL_MODEL_FILE = Path(__file__).with_name("lm_eval_model.py")  # code of the results, imported only when NLU runs


class _FunctionRef(str):
    """A `!function module.name` tag of an lm-eval YAML, kept as written."""


class _Loader(yaml.SafeLoader):
    pass


class _Dumper(yaml.SafeDumper):
    pass


_Loader.add_constructor("!function", lambda loader, node: _FunctionRef(loader.construct_scalar(node)))
_Dumper.add_representer(_FunctionRef, lambda dumper, ref: dumper.represent_scalar("!function", str(ref)))


def _lm_eval_tasks_dir() -> Path:
    import lm_eval.tasks

    return Path(lm_eval.tasks.__file__).parent


def task_config(task: str, data_dir: str | Path = NLU_DIR, cache_dir: str | Path | None = None) -> dict:
    """lm-eval's YAML for `task` with its data lines pointed at local files (and the
    `datasets` cache at `cache_dir`, default: the user's Hugging Face cache)."""
    stock, files = NLU_TASKS[task]
    config = yaml.load((_lm_eval_tasks_dir() / stock).read_text(), Loader=_Loader)
    data_files = {}
    for split, name in files.items():
        path = Path(data_dir).resolve() / name
        if not path.exists():
            raise FileNotFoundError(f"{path}: missing data file of NLU task {task}")
        data_files[split] = str(path)
    config.pop("tag", None)  # the harness's groups are not defined here
    kwargs = {"data_files": data_files} | ({"cache_dir": str(cache_dir)} if cache_dir else {})
    config.update(dataset_path="json", dataset_name=None, dataset_kwargs=kwargs)
    for split, key in SPLIT_KEYS.items():
        config[key] = split if split in files else None
    return config


def write_task_yamls(out_dir: str | Path, tasks: Sequence[str] = tuple(NLU_TASKS), data_dir: str | Path = NLU_DIR,
                     cache_dir: str | Path | None = None) -> Path:
    """One folder per task holding its YAML (and the Python files its `!function`s name)."""
    out_dir = Path(out_dir)
    for task in tasks:
        task_dir = out_dir / task
        task_dir.mkdir(parents=True, exist_ok=True)
        config = task_config(task, data_dir, cache_dir)
        (task_dir / f"{task}.yaml").write_text(yaml.dump(config, Dumper=_Dumper, sort_keys=False))
        stock_dir = (_lm_eval_tasks_dir() / NLU_TASKS[task][0]).parent
        for value in config.values():
            if isinstance(value, _FunctionRef):
                module = value.rsplit(".", 1)[0]
                shutil.copyfile(stock_dir / f"{module}.py", task_dir / f"{module}.py")
    return out_dir


def evaluate_nlu(
    model: str | Path | LoadedCheckpoint,
    tasks: Sequence[str] = tuple(NLU_TASKS),
    limit: int | None = None,
    batch_size: int = 8,
    data_dir: str | Path = NLU_DIR,
    cache_dir: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Zero-shot accuracy and normalized accuracy of a checkpoint on the NLU tasks, `<CALL>`
    masked. `limit`: the first N documents of each task (CPU); None = all."""
    for key in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"):
        os.environ[key] = "1"
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from evaluation.measures import lm_eval_model  # imports lm-eval's HF model: only when NLU runs

    unknown = set(tasks) - set(NLU_TASKS)
    if unknown:
        raise ValueError(f"unknown NLU tasks {sorted(unknown)}; known: {sorted(NLU_TASKS)}")
    ckpt = model if isinstance(model, LoadedCheckpoint) else load_checkpoint(model)
    lm = lm_eval_model.LacyLM(pretrained=ckpt.model, tokenizer=load_hf_tokenizer(ckpt.path),
                              call_token_id=ckpt.call_id, batch_size=batch_size, device=str(ckpt.model.device))
    with tempfile.TemporaryDirectory(prefix="lacy-nlu-") as tmp:
        write_task_yamls(tmp, tasks, data_dir, cache_dir)
        log(f"NLU: {', '.join(tasks)} (limit {limit})")
        out = simple_evaluate(model=lm, tasks=list(tasks), num_fewshot=0, limit=limit, log_samples=False,
                              task_manager=TaskManager(include_path=tmp, include_defaults=False), verbosity="WARNING")
    results = {}
    for task in tasks:
        raw = out["results"][task]
        results[task] = {"samples": int(out["n-samples"][task]["effective"])}
        for metric in METRICS:
            if f"{metric},none" in raw:
                results[task][metric] = float(raw[f"{metric},none"])
                results[task][f"{metric}_stderr"] = float(raw[f"{metric}_stderr,none"])
    data_sha = {task: {split: file_sha256(Path(data_dir) / name) for split, name in NLU_TASKS[task][1].items()}
                for task in tasks}
    result = {
        "tasks": results,
        "limit": limit,
        "lm_eval_version": out.get("lm_eval_version") or _lm_eval_version(),
        "checkpoint": ckpt.identity(),
        "data_sha256": data_sha,
        "code_fingerprint": code_fingerprint(sys.modules[__name__], checkpoint, lm_eval_model),
    }
    result["fingerprint"] = fingerprint(result["checkpoint"]["fingerprint"], data_sha, limit, result["code_fingerprint"])
    return result


def _lm_eval_version() -> str:
    import lm_eval

    return lm_eval.__version__
