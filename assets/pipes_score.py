"""The process Dagster launches to score the reference losses: `torchrun ... -m
assets.pipes_score <python -m trainer.score flags>`. Each rank scores its share of the shards;
rank 0 reports its log lines and the manifest's totals back through Dagster Pipes."""

from assets.pipes_train import rank_zero_pipes
from trainer.score import parse_args, score_dataset


def main() -> None:
    a = parse_args()
    with rank_zero_pipes() as pipes:
        log = pipes.log.info if pipes is not None else lambda _msg: None
        manifest = score_dataset(a.checkpoint, a.data, a.out, a.split, a.batch_size, log=log, root=a.root)
        if pipes is not None:
            pipes.report_asset_materialization(
                metadata={
                    "tokens": {"raw_value": int(manifest["tokens"]), "type": "int"},
                    "mean_loss": {"raw_value": round(manifest["mean_loss"], 4), "type": "float"},
                    "fingerprint": {"raw_value": manifest["fingerprint"], "type": "text"},
                    "seconds": {"raw_value": float(manifest["seconds"]), "type": "float"},
                }
            )


if __name__ == "__main__":
    main()
