"""The `lacy` command (console script `lacy = evaluation.cli:main`).

Subcommands:
  lacy generate --model DIR --partner DIR [--no-call] ... "Tell me a bio of Ralph Earl. Ralph Earl is"
  lacy label ...   (from `pipelines/cli.py`, when that module exists)

A module that contributes subcommands defines `add_parser(subparsers) -> argparse.ArgumentParser`
(it adds its subparser and returns it) and `run(args) -> int`; list it in `COMMAND_MODULES`.
Modules are imported only when they exist, so the dispatcher works before they are written.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
from pathlib import Path

from pipelines.files import exit_status

COMMAND_MODULES = ("evaluation.cli", "pipelines.cli")  # `lacy label` is registered by pipelines.cli


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "generate", help="generate with the cascade of A.5 (partner tokens marked)",
        description="Greedy cascade generation: the small model writes, and whenever it emits <CALL> the "
                    "partner's top token is appended. Partner tokens are shown gray on a terminal, [[...]] otherwise.")
    p.add_argument("prompts", nargs="+", help='e.g. "Tell me a bio of Ralph Earl. Ralph Earl is"')
    p.add_argument("--model", required=True, type=Path, help="small-model checkpoint directory")
    p.add_argument("--partner", type=Path,
                   help="partner: any local Hugging Face causal LM directory (with --backend openai: the served model's name)")
    p.add_argument("--backend", choices=("transformers", "vllm", "openai"), default="transformers", help="partner backend")
    p.add_argument("--base-url", help="--backend openai: the server's OpenAI-compatible endpoint, ending in /v1")
    p.add_argument("--no-call", action="store_true", help="disable calls (<CALL> logit at -inf); no partner needed")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--call-mode", default="budgeted",
                   help="budgeted: call at --call-budget of the steps of all prompts, where the <CALL> logit is "
                        "relatively high; native: call where <CALL> is the argmax")
    p.add_argument("--call-budget", type=float, default=0.22, help="the realized call rate of the budgeted mode")
    p.add_argument("--repetition-penalty", type=float, default=1.2)
    p.add_argument("--rag-article", type=Path, help="text file with the entity's article: use A.5's RAG prompt")
    p.add_argument("--rag-name", help="the person's name for the RAG prompt")
    p.add_argument("--device", default="cpu")
    p.add_argument("--color", action=argparse.BooleanOptionalAction, default=None,
                   help="gray partner tokens (default: when stdout is a terminal)")
    p.add_argument("--json", action="store_true", help="print each generation's record as JSON")
    return p


def run(args: argparse.Namespace) -> int:
    from evaluation.backends.config import BackendConfig, load_backend
    from evaluation.cascade.generate import CascadeConfig, generate, rag_prefix, render
    from evaluation.checkpoint import load_checkpoint

    if not args.no_call and args.partner is None:
        raise SystemExit("lacy generate: --partner DIR is required unless --no-call")
    if args.rag_article and not args.rag_name:
        raise SystemExit("lacy generate: --rag-article needs --rag-name")
    config = CascadeConfig(max_new_tokens=args.max_new_tokens, repetition_penalty=args.repetition_penalty,
                           call_mode=args.call_mode, call_budget=args.call_budget, calls=not args.no_call)
    small = load_checkpoint(args.model, device=args.device)
    partner = None
    if not args.no_call:
        if args.backend == "openai" and not args.base_url:
            raise SystemExit("lacy generate: --backend openai needs --base-url")
        # float32 on the transformers engine: the partner's exact top-2
        partner = load_backend(BackendConfig(args.backend, str(args.partner), base_url=args.base_url, device=args.device,
                                             dtype="float32", repetition_penalty=args.repetition_penalty))
    prefixes = None
    if args.rag_article:
        prefixes = [rag_prefix(args.rag_name, args.rag_article.read_text())] * len(args.prompts)
    for gen in generate(small, args.prompts, partner, config, partner_prefixes=prefixes):
        if args.json:
            print(json.dumps(gen.to_dict()))
            continue
        print(render(gen, color=args.color))
        processed = gen.partner_tokens_processed
        per_call = f", partner tokens read per call: mean {gen.mean_partner_tokens_per_call:.1f}" if processed else ""
        print(f"\n-- call rate {gen.call_rate:.3f} ({gen.calls} calls in {gen.steps} steps), "
              f"{sum(gen.from_partner)}/{len(gen.from_partner)} tokens from the partner{per_call}, "
              f"second choices {gen.second_choice_calls}, multi-token {gen.multi_token_calls}, "
              f"rejected {gen.rejected_calls}, declined {gen.declined_calls}, stop: {gen.stop}\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lacy", description="LaCy: train, label, evaluate and generate.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        if importlib.util.find_spec(name) is None:
            continue
        module = importlib.import_module(name)
        module.add_parser(subparsers).set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return exit_status(f"lacy {args.command}", lambda: args.run(args))


if __name__ == "__main__":
    sys.exit(main())
