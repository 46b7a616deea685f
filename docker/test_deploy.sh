#!/bin/bash
# `make test-deploy`: the docker/ deployment end to end on this host. Installs what is missing
# (Debian's docker.io, docker-compose, debootstrap), starts dockerd if none answers, builds a
# Debian base image locally when the public registry is out of reach, builds the images, brings
# the compose deployment up under its own project name, volumes, network and port, materializes
# raw_corpus through token_shards through the webserver's GraphQL API (each run in its own
# container), checks the runs in Postgres and the artifacts on the volume, and tears it all down
# (the images stay, as a build cache). Needs root (apt-get, dockerd).
set -euo pipefail
cd "$(dirname "$0")/.."

project=${LACY_TEST_PROJECT:-lacytest}
export COMPOSE_PROJECT_NAME=$project
export LACY_IMAGE=lacy-dagster:$project
export LACY_NETWORK=${project}_net
export LACY_ARTIFACTS_VOLUME=${project}_artifacts LACY_LOGS_VOLUME=${project}_logs LACY_POSTGRES_VOLUME=${project}_postgres
export LACY_WEBSERVER_PORT=${LACY_WEBSERVER_PORT:-13000}
export LACY_BASE_IMAGE=${LACY_BASE_IMAGE:-lacy-base:bookworm}
export LACY_POSTGRES_IMAGE=${LACY_POSTGRES_IMAGE:-lacy-postgres:$project}
export DOCKER_BUILDKIT=0 COMPOSE_DOCKER_CLI_BUILD=1  # the Docker CLI's classic builder, host network
steps=(raw_corpus,tokenizer spacy_word_labels token_shards)
say() { echo "test-deploy: $*"; }

ensure_packages() {
    local missing=()
    command -v dockerd >/dev/null || missing+=(docker.io)
    command -v docker-compose >/dev/null || docker compose version >/dev/null 2>&1 || missing+=(docker-compose)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    if ((${#missing[@]})); then
        say "installing ${missing[*]}"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

compose() {
    if docker compose version >/dev/null 2>&1; then docker compose -f docker/docker-compose.yml "$@"
    else docker-compose -f docker/docker-compose.yml "$@"; fi
}

started_dockerd=""
start_dockerd() {
    docker info >/dev/null 2>&1 && return
    say "starting dockerd (log: /tmp/lacy-test-deploy-dockerd.log)"
    dockerd >/tmp/lacy-test-deploy-dockerd.log 2>&1 &
    started_dockerd=$!
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && return; sleep 1; done
    say "dockerd did not answer within 60 s"; exit 1
}

# The Dockerfiles default to public base images; where those cannot be pulled, the Debian release
# this host runs, from the apt mirror it already uses, is bootstrapped and imported instead.
ensure_base_image() {
    docker image inspect "$LACY_BASE_IMAGE" >/dev/null 2>&1 && return
    docker pull -q "$LACY_BASE_IMAGE" >/dev/null 2>&1 && return
    local suite mirror rootfs
    suite=$(. /etc/os-release && echo "$VERSION_CODENAME")
    mirror=$(awk '/^URIs:/ {print $2; exit} /^deb / {print $2; exit}' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null || true)
    rootfs=$(mktemp -d /tmp/lacy-rootfs.XXXXXX)
    say "building $LACY_BASE_IMAGE: debootstrap $suite from ${mirror:=http://deb.debian.org/debian}"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates "$suite" "$rootfs" "$mirror" >/dev/null
    tar -C "$rootfs" -c . | docker import - "$LACY_BASE_IMAGE" >/dev/null
    rm -rf "$rootfs"
}

ensure_wheelhouse() {
    local stamp  # beside the wheelhouse, not in it: the image layer that copies it stays cached
    stamp=docker/.wheelhouse-$(cat requirements.lock docker/requirements-deploy.txt docker/wheelhouse.sh | sha256sum | cut -c1-12)
    [ -e "$stamp" ] && return
    say "filling docker/wheelhouse"
    docker/wheelhouse.sh
    rm -f docker/.wheelhouse-* && touch "$stamp"
}

teardown() {
    local rc=$?
    if ((rc)) && docker info >/dev/null 2>&1; then
        say "failed (exit $rc); the services' last log lines:"
        compose logs --tail 30 2>&1 | tail -n 120 || true
        for c in $(docker ps -aq --filter "label=lacy.deployment=$project"); do docker logs --tail 30 "$c" 2>&1 || true; done
    fi
    say "tearing down"
    # run containers first: they hold the volumes that `down -v` removes
    docker ps -aq --filter "label=lacy.deployment=$project" | xargs -r docker rm -f >/dev/null
    compose down -v --remove-orphans >/dev/null 2>&1 || true
    docker volume rm -f "$LACY_ARTIFACTS_VOLUME" "$LACY_LOGS_VOLUME" "$LACY_POSTGRES_VOLUME" >/dev/null 2>&1 || true
    if [ -n "$started_dockerd" ]; then kill "$started_dockerd" && wait "$started_dockerd" || true; fi
    exit $rc
}

ensure_packages
start_dockerd
trap teardown EXIT
compose down -v --remove-orphans >/dev/null 2>&1 || true  # what an interrupted earlier test left
ensure_base_image
ensure_wheelhouse

say "building images"
docker image inspect "$LACY_POSTGRES_IMAGE" >/dev/null 2>&1 || docker pull -q "$LACY_POSTGRES_IMAGE" >/dev/null 2>&1 \
    || docker build -q --network host --build-arg BASE_IMAGE="$LACY_BASE_IMAGE" -f docker/postgres.Dockerfile -t "$LACY_POSTGRES_IMAGE" . >/dev/null
compose build -q code-location

say "starting the deployment (project $project, webserver on port $LACY_WEBSERVER_PORT)"
compose up -d
url=http://127.0.0.1:$LACY_WEBSERVER_PORT
python3 docker/launch_runs.py --url "$url" --wait 600 "${steps[@]}" | tee /tmp/lacy-test-deploy-runs.txt
runs=$(grep -c ' SUCCESS ' /tmp/lacy-test-deploy-runs.txt)

say "checking Postgres"
sql() { compose exec -T postgres sh -c 'psql -U "$POSTGRES_USER" -d "$POSTGRES_DB" -tA' <<<"$1"; }
succeeded=$(sql "select count(*) from runs where status = 'SUCCESS'")
containers=$(sql "select count(distinct value) from run_tags where key = 'docker/container_id'")
materialized=$(sql "select string_agg(distinct asset_key, ' ' order by asset_key) from event_logs where dagster_event_type = 'ASSET_MATERIALIZATION'")
say "Postgres: $succeeded successful runs, in $containers containers; materialized $materialized"
[ "$succeeded" = "$runs" ] && [ "$containers" = "$runs" ] || { say "expected $runs runs, each in its own container"; exit 1; }
for step in "${steps[@]}"; do
    for asset in ${step//,/ }; do
        grep -q "\"$asset\"" <<<"$materialized" || { say "no materialization of $asset in Postgres"; exit 1; }
    done
done

say "checking the artifact volume $LACY_ARTIFACTS_VOLUME"
docker run --rm -v "$LACY_ARTIFACTS_VOLUME:/opt/lacy/artifacts:ro" "$LACY_IMAGE" python -c '
import json, pathlib
root = pathlib.Path("/opt/lacy/artifacts")
for name in ("corpus", "tokenizer", "spacy_word_labels", "token_shards"):
    files = [p for p in (root / name).rglob("*") if p.is_file()]
    assert files, f"{root / name}: empty"
    print(f"{root / name}: {len(files)} files, {sum(p.stat().st_size for p in files)} bytes")
manifest = json.loads((root / "token_shards" / "manifest.json").read_text())
print("token_shards manifest:", {k: v for k, v in manifest.items() if isinstance(v, (int, str))})
'
say "OK: $runs runs through the webserver, daemon and DockerRunLauncher; recorded in Postgres; artifacts on the volume"
