#!/bin/sh
# Puts the chat and embedding models named in the ConfigMap onto the Ollama model volume before
# the server takes traffic, so the first question does not wait for a multi-GB download.
#
# Settings (environment, from the `confluence-bot-config` ConfigMap):
#   CHAT_MODEL, EMBED_MODEL  the models the api and worker use.
#   MODEL_SOURCES            where a missing model comes from, one `name=source` entry per model,
#                            separated by spaces or newlines. A source is one of
#                              registry                      `ollama pull` (the default)
#                              file:/models/x.gguf           a GGUF on a volume the operator fills
#                              https://host/x.gguf[#sha256=HEX]   a GGUF served inside the cluster
#                            Next to a GGUF, an optional `x.Modelfile` adds TEMPLATE, SYSTEM and
#                            PARAMETER lines (its FROM lines are ignored).
#   MODEL_REGISTRY           `off` refuses every registry source (air-gapped clusters): the script
#                            then never calls `ollama pull`.
#   MODEL_DOWNLOAD_DIR       where URL downloads are staged (default: on the model volume, since
#                            a GGUF can be larger than the container's scratch space).
#
# A model already on the volume is kept as is: no network is needed to restart. A model no source
# can provide stops the pod with one line naming the model, what was tried and what to do.
set -eu
# MODEL_SOURCES is split on whitespace below, never expanded as a file pattern.
set -f

MODEL_SOURCES=${MODEL_SOURCES:-}
MODEL_REGISTRY=${MODEL_REGISTRY:-on}
MODEL_DOWNLOAD_DIR=${MODEL_DOWNLOAD_DIR:-/root/.ollama/downloads}

work=$(mktemp -d)
server=
cleanup() {
  if [ -n "$server" ]; then
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  rm -rf "$work"
}
# Stop the temporary server and drop temp files however the script ends.
trap cleanup EXIT
trap 'exit 1' INT TERM

fail() {
  echo "init-models: $1" >&2
  exit 1
}

# The source configured for a model, `registry` when MODEL_SOURCES does not name it.
source_of() {
  found=registry
  for entry in $MODEL_SOURCES; do
    case "$entry" in
      "$1="*) found=${entry#"$1="} ;;
    esac
  done
  echo "$found"
}

# Creates model $1 from the GGUF at $2, with the optional Modelfile sidecar next to it.
create_from() {
  modelfile="$work/Modelfile"
  echo "FROM $2" >"$modelfile"
  sidecar="${2%.gguf}.Modelfile"
  if [ -f "$sidecar" ]; then
    grep -v -i '^[[:space:]]*FROM[[:space:]]' "$sidecar" >>"$modelfile" || true
  fi
  ollama create "$1" -f "$modelfile"
}

# Downloads $2 (an http(s) URL, optionally ending in #sha256=HEX) to a file and prints its path.
download() {
  url=${2%%#*}
  sum=
  case "$2" in
    *"#sha256="*) sum=${2##*#sha256=} ;;
  esac
  mkdir -p "$MODEL_DOWNLOAD_DIR"
  target="$MODEL_DOWNLOAD_DIR/$(printf '%s' "$1" | tr -c 'A-Za-z0-9._-' '_').gguf"
  if command -v curl >/dev/null 2>&1; then
    curl -fsSL --retry 3 -o "$target" "$url" || {
      rm -f "$target"
      return 1
    }
  elif command -v wget >/dev/null 2>&1; then
    wget -q -O "$target" "$url" || {
      rm -f "$target"
      return 1
    }
  else
    echo "no curl or wget in this image" >"$work/why"
    echo "give the init container an image built FROM ollama/ollama with curl added (k8s/README.md, Where the models come from), or use a file: source in MODEL_SOURCES (confluence-bot-config)" >"$work/fix"
    return 1
  fi
  if [ -n "$sum" ]; then
    actual=$(sha256sum "$target" | cut -d ' ' -f 1)
    if [ "$actual" != "$sum" ]; then
      rm -f "$target"
      echo "sha256 $actual, expected $sum" >"$work/why"
      return 1
    fi
  fi
  echo "$target"
}

ollama serve &
server=$!
tries=0
until ollama list >/dev/null 2>&1; do
  tries=$((tries + 1))
  if [ "$tries" -gt 60 ]; then fail "the temporary ollama server did not start within 60 s"; fi
  sleep 1
done

for model in "$CHAT_MODEL" "$EMBED_MODEL"; do
  if ollama show "$model" >/dev/null 2>&1; then
    echo "init-models: $model is on the volume"
    continue
  fi
  source=$(source_of "$model")
  rm -f "$work/why" "$work/fix"
  case "$source" in
    registry)
      if [ "$MODEL_REGISTRY" = off ]; then
        fail "model $model is not on the volume; tried: registry (refused: MODEL_REGISTRY=off); to fix: set $model=file:/models/<file>.gguf in MODEL_SOURCES (confluence-bot-config) and copy the GGUF to the models-import volume (k8s/README.md, Air-gapped cluster)"
      fi
      echo "init-models: pulling $model from the registry"
      ollama pull "$model" ||
        fail "model $model is not on the volume; tried: registry (ollama pull failed: is the registry reachable?); to fix: allow egress to the registry, or give $model a file: or http(s) source in MODEL_SOURCES (confluence-bot-config)"
      ;;
    file:*)
      path=${source#file:}
      if [ ! -f "$path" ]; then
        fail "model $model is not on the volume; tried: $source (no such file); to fix: copy the GGUF to $path (k8s/README.md, Air-gapped cluster) or change its entry in MODEL_SOURCES (confluence-bot-config)"
      fi
      echo "init-models: creating $model from $path"
      create_from "$model" "$path" || fail "model $model: ollama create from $path failed (is it a GGUF file?); to fix: replace the file or its Modelfile sidecar"
      ;;
    http://* | https://*)
      echo "init-models: downloading $model from ${source%%#*}"
      if ! file=$(download "$model" "$source"); then
        why="download failed"
        if [ -f "$work/why" ]; then why=$(cat "$work/why"); fi
        fix="check that the URL is served inside the cluster and its sha256, or use a file: source in MODEL_SOURCES (confluence-bot-config)"
        if [ -f "$work/fix" ]; then fix=$(cat "$work/fix"); fi
        fail "model $model is not on the volume; tried: ${source%%#*} ($why); to fix: $fix"
      fi
      echo "init-models: creating $model from the download"
      created=0
      create_from "$model" "$file" || created=$?
      rm -f "$file"
      if [ "$created" -ne 0 ]; then
        fail "model $model: ollama create from ${source%%#*} failed (is it a GGUF file?); to fix: serve a GGUF at that URL"
      fi
      ;;
    *)
      fail "model $model has an unknown source \"$source\" in MODEL_SOURCES; to fix: use registry, file:/path.gguf or an http(s) URL"
      ;;
  esac
done
echo "init-models: all models are on the volume"
