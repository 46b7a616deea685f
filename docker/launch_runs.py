"""Materialize assets through a Dagster webserver's GraphQL API, as the UI's Materialize button does.

Each argument is one step: comma-separated asset keys launched together; a partitioned step gets
one run per partition. A step's runs go to the run queue at once (the daemon's run launcher starts
them) and the next step starts when all have succeeded. Prints one line per run: run id, status,
and the container DockerRunLauncher started it in. Standard library only: it runs anywhere.

    python docker/launch_runs.py --url http://127.0.0.1:3000 raw_corpus,tokenizer spacy_word_labels token_shards
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request

ASSET_JOB = "__ASSET_JOB"
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}
CONTAINER_TAG = "docker/container_id"  # dagster_docker.DockerRunLauncher tags each run with it

PARTITIONS = """
query Partitions($keys: [AssetKeyInput!]) {
  assetNodes(assetKeys: $keys) { assetKey { path } isPartitioned partitionKeys }
}"""

LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on Error { message }
  }
}"""

RUN = """
query Run($runId: ID!) {
  runOrError(runId: $runId) { __typename ... on Run { status tags { key value } } ... on Error { message } }
}"""


def graphql(url: str, query: str, variables: dict) -> dict:
    request = urllib.request.Request(
        f"{url}/graphql", data=json.dumps({"query": query, "variables": variables}).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            body = json.load(response)
    except urllib.error.HTTPError as error:  # the webserver answers GraphQL errors with status 500
        body = json.load(error)
    if body.get("errors"):
        raise RuntimeError(f"{url}/graphql: {body['errors']}")
    return body["data"]


def asset_nodes(url: str, assets: list[str], wait_s: float) -> list[dict]:
    """The assets' nodes, waiting up to wait_s for the webserver and its code location to load them."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            nodes = graphql(url, PARTITIONS, {"keys": [{"path": [a]} for a in assets]})["assetNodes"]
            missing = set(assets) - {"/".join(n["assetKey"]["path"]) for n in nodes}
        except OSError as error:  # the webserver is not listening yet
            missing = f"{url} unreachable ({error})"
        if not missing:
            return nodes
        if time.monotonic() > deadline:
            raise SystemExit(f"{url}: after {wait_s:.0f} s, still missing {missing}")
        time.sleep(3)


def partition_keys(nodes: list[dict]) -> list[str | None]:
    """A step's partitions (its assets must share them), or [None] when it is unpartitioned."""
    keys = {tuple(n["partitionKeys"]) if n["isPartitioned"] else (None,) for n in nodes}
    if len(keys) != 1:
        raise SystemExit(f"{[n['assetKey']['path'] for n in nodes]}: the assets of one step must share their partitions")
    return list(keys.pop())


def launch(url: str, location: str, assets: list[str], partition: str | None) -> str:
    tags = [{"key": "dagster/partition", "value": partition}] if partition else []
    params = {
        "selector": {
            "repositoryLocationName": location,
            "repositoryName": "__repository__",
            "pipelineName": ASSET_JOB,
            "assetSelection": [{"path": [a]} for a in assets],
        },
        "mode": "default",
        "runConfigData": {},
        "executionMetadata": {"tags": tags},
    }
    result = graphql(url, LAUNCH, {"params": params})["launchRun"]
    if result["__typename"] != "LaunchRunSuccess":
        raise SystemExit(f"launching {assets} (partition {partition}): {result}")
    return result["run"]["runId"]


def wait(url: str, run_id: str, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            run = graphql(url, RUN, {"runId": run_id})["runOrError"]
        except (OSError, RuntimeError) as error:  # a restarting webserver or database: ask again
            print(f"run {run_id}: status unavailable ({str(error)[:200]}), retrying", file=sys.stderr)
            time.sleep(10)
            continue
        if run["__typename"] != "Run":
            raise SystemExit(f"run {run_id}: {run}")
        if run["status"] in TERMINAL:
            return run
        time.sleep(3)
    raise SystemExit(f"run {run_id}: not finished after {timeout_s:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("steps", nargs="+", help="comma-separated asset keys, one step per argument")
    parser.add_argument("--url", default="http://127.0.0.1:3000")
    parser.add_argument("--location", default="lacy", help="code location name (docker/workspace.yaml)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per run")
    parser.add_argument("--wait", type=float, default=0, help="seconds to wait for the webserver to serve the assets")
    args = parser.parse_args()
    for step in args.steps:
        assets = step.split(",")
        keys = partition_keys(asset_nodes(args.url, assets, args.wait))
        run_ids = [launch(args.url, args.location, assets, p) for p in keys]
        for run_id in run_ids:
            run = wait(args.url, run_id, args.timeout)
            container = {t["key"]: t["value"] for t in run["tags"]}.get(CONTAINER_TAG, "none")
            print(f"{step} run {run_id} {run['status']} container {container[:12]}", flush=True)
            if run["status"] != "SUCCESS":
                sys.exit(f"{step}: run {run_id} ended {run['status']}; its logs are in the webserver at {args.url}/runs/{run_id}")


if __name__ == "__main__":
    main()
