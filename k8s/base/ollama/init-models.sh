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
#                            A file path may contain spaces: a new entry starts only where a space
#                            is followed by `name=`. Next to a GGUF, an optional `x.Modelfile` adds
#                            TEMPLATE, SYSTEM and PARAMETER lines (its FROM instruction is
#                            ignored), and an optional `x.gguf.sha256` (sha256sum's output) is
#                            checked before the file is used.
#   MODEL_REGISTRY           `off` (or false, no, 0) refuses every registry source (air-gapped
#                            clusters): the script then never calls `ollama pull`. `on` (true,
#                            yes, 1, or unset) allows it; any other value stops the pod.
#   MODEL_DOWNLOAD_DIR       where URL downloads are staged (default: on the model volume, since
#                            a GGUF can be larger than the container's scratch space). The stock
#                            ollama image has no curl or wget: the model-downloads component adds
#                            an init container that downloads into this directory first.
#
# A model already on the volume is kept as is: no network is needed to restart. A model no source
# can provide stops the pod with one line naming the model, what was tried and what to do.
set -eu
# Nothing below is ever expanded as a file pattern.
set -f

MODEL_SOURCES=${MODEL_SOURCES:-}
MODEL_REGISTRY=${MODEL_REGISTRY:-on}
MODEL_DOWNLOAD_DIR=${MODEL_DOWNLOAD_DIR:-/root/.ollama/downloads}

# printf, not echo: dash's echo would turn a backslash in a path into an escape.
fail() {
  printf 'init-models: %s\n' "$1" >&2
  exit 1
}

lower() { printf '%s' "$1" | tr '[:upper:]' '[:lower:]'; }

# A source as it may be printed: no user or password (up to the last "@", in case a password has
# an unescaped "/", "?" or "#"), no query, no fragment (tokens ride there).
redact() { printf '%s' "$1" | sed -e 's|^\([A-Za-z][A-Za-z0-9+.-]*://\).*@|\1|' -e 's/[?#].*$//'; }

# A yes/no setting is read the way operators write it; a typo must not quietly mean "on".
case "$(lower "$MODEL_REGISTRY")" in
  on | true | yes | 1) registry=on ;;
  off | false | no | 0) registry=off ;;
  *) fail "MODEL_REGISTRY=\"$MODEL_REGISTRY\" is neither on nor off; to fix: set it to off (or false, no, 0) or on (or true, yes, 1) in confluence-bot-config" ;;
esac

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

# MODEL_SOURCES, one entry per line. Entries are separated by white space, but a file path may
# hold spaces, so a new entry starts only where the white space is followed by `name=`.
printf '%s\n' "$MODEL_SOURCES" |
  sed -e 's|[[:space:]]\{1,\}\([A-Za-z0-9][A-Za-z0-9._:/-]*=\)|\n\1|g' \
    -e 's|^[[:space:]]*||' -e 's|[[:space:]]*$||' >"$work/sources"

# The source configured for a model, `registry` when MODEL_SOURCES does not name it.
source_of() {
  found=registry
  while IFS= read -r entry; do
    case "$entry" in
      "$1="*) found=${entry#"$1="} ;;
    esac
  done <"$work/sources"
  printf '%s\n' "$found"
}

# $1 lower-cased if it is a sha256 (64 hex digits, either case), nothing otherwise.
digest() {
  sum=$(lower "$1")
  case "$sum" in
    *[!0-9a-f]*) return 0 ;;
  esac
  if [ "${#sum}" -eq 64 ]; then printf '%s\n' "$sum"; fi
}

# The sha256 of file $1, read from stdin so that no file name can change sha256sum's output.
sha256_of() { sha256sum <"$1" | cut -d ' ' -f 1; }

# Copies Modelfile $1 without its FROM instruction. Text inside a """ block (a TEMPLATE, SYSTEM
# or LICENSE over several lines) is copied as it is, even a line of it that begins with "from".
without_from() {
  quoted=no
  while IFS= read -r line || [ -n "$line" ]; do
    if [ "$quoted" = no ]; then
      case "${line#"${line%%[![:space:]]*}"}" in
        [Ff][Rr][Oo][Mm] | [Ff][Rr][Oo][Mm][[:space:]]*) continue ;;
      esac
    fi
    printf '%s\n' "$line"
    rest=$line
    while :; do
      case "$rest" in
        *'"""'*) ;;
        *) break ;;
      esac
      rest=${rest#*'"""'}
      if [ "$quoted" = no ]; then quoted=yes; else quoted=no; fi
    done
  done <"$1"
}

# Creates model $1 from the GGUF at $2, with the optional Modelfile sidecar next to it.
create_from() {
  modelfile="$work/Modelfile"
  printf 'FROM %s\n' "$2" >"$modelfile"
  sidecar="${2%.gguf}.Modelfile"
  if [ -f "$sidecar" ]; then without_from "$sidecar" >>"$modelfile"; fi
  ollama create "$1" -f "$modelfile"
}

# Downloads $2 (an http(s) URL) to a file, checks it against sha256 $3 when one is given, and
# prints the file's path. A file the `fetch-models` init container left (the model-downloads
# component) is used as it is: that container checked its GGUF header and sha256 while writing it,
# and names it only once it is whole. Downloads here go through a `.part` file for the same reason.
download() {
  url=$2
  sum=$3
  mkdir -p "$MODEL_DOWNLOAD_DIR"
  target="$MODEL_DOWNLOAD_DIR/$(printf '%s' "$1" | tr -c 'A-Za-z0-9._-' '_').gguf"
  if [ -f "$target" ]; then
    echo "init-models: $1 was downloaded by fetch-models" >&2
    printf '%s\n' "$target"
    return 0
  fi
  if command -v curl >/dev/null 2>&1; then
    curl -fsSL --retry 3 -o "$target.part" "$url" || {
      rm -f "$target.part"
      return 1
    }
  elif command -v wget >/dev/null 2>&1; then
    wget -q -O "$target.part" "$url" || {
      rm -f "$target.part"
      return 1
    }
  else
    echo "no curl or wget in this image" >"$work/why"
    echo "add the model-downloads component to your overlay, which downloads it first (k8s/README.md, Where the models come from), or use a file: source in MODEL_SOURCES (confluence-bot-config)" >"$work/fix"
    return 1
  fi
  if [ -n "$sum" ]; then
    actual=$(sha256_of "$target.part")
    if [ "$actual" != "$sum" ]; then
      rm -f "$target.part"
      echo "sha256 $actual, expected $sum" >"$work/why"
      return 1
    fi
  fi
  mv "$target.part" "$target"
  printf '%s\n' "$target"
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
      if [ "$registry" = off ]; then
        fail "model $model is not on the volume; tried: registry (refused: MODEL_REGISTRY=$MODEL_REGISTRY); to fix: set $model=file:/models/<file>.gguf in MODEL_SOURCES (confluence-bot-config) and copy the GGUF to the models-import volume (k8s/README.md, Air-gapped cluster)"
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
      if [ -f "$path.sha256" ]; then
        read -r written _ <"$path.sha256" || true
        expected=$(digest "${written:-}")
        if [ -z "$expected" ]; then
          fail "model $model: $path.sha256 holds no sha256 (64 hex digits); to fix: write it with \`sha256sum ${path##*/} > ${path##*/}.sha256\` next to the GGUF, or remove it"
        fi
        echo "init-models: checking $path against $path.sha256"
        actual=$(sha256_of "$path")
        if [ "$actual" != "$expected" ]; then
          fail "model $model is not on the volume; tried: $source (sha256 $actual, expected $expected from $path.sha256); to fix: copy the GGUF again (the copy is damaged or incomplete; k8s/README.md, Air-gapped cluster)"
        fi
      fi
      echo "init-models: creating $model from $path"
      create_from "$model" "$path" || fail "model $model: ollama create from $path failed (is it a GGUF file?); to fix: replace the file or its Modelfile sidecar"
      ;;
    [Hh][Tt][Tt][Pp]://* | [Hh][Tt][Tt][Pp][Ss]://*)
      url=${source%%#*}
      shown=$(redact "$url")
      sum=
      if [ "$url" != "$source" ]; then
        fragment=${source#*#}
        if [ "$(lower "${fragment%%=*}")" != sha256 ] || [ "$fragment" = "${fragment%%=*}" ]; then
          fail "model $model has \"#$fragment\" after its URL in MODEL_SOURCES; to fix: end the URL with #sha256=HEX (the GGUF's sha256sum) or nothing"
        fi
        sum=$(digest "${fragment#*=}")
        if [ -z "$sum" ]; then
          fail "model $model has a malformed sha256 \"${fragment#*=}\" in MODEL_SOURCES (64 hex digits expected); to fix: put the GGUF's sha256sum after #sha256= in its entry (confluence-bot-config)"
        fi
      fi
      echo "init-models: $model comes from $shown"
      if ! file=$(download "$model" "$url" "$sum"); then
        why="download failed"
        if [ -f "$work/why" ]; then why=$(cat "$work/why"); fi
        fix="check that the URL is served inside the cluster and its sha256, or use a file: source in MODEL_SOURCES (confluence-bot-config)"
        if [ -f "$work/fix" ]; then fix=$(cat "$work/fix"); fi
        fail "model $model is not on the volume; tried: $shown ($why); to fix: $fix"
      fi
      echo "init-models: creating $model from the download"
      created=0
      create_from "$model" "$file" || created=$?
      rm -f "$file"
      if [ "$created" -ne 0 ]; then
        fail "model $model: ollama create from $shown failed (is it a GGUF file?); to fix: serve a GGUF at that URL"
      fi
      ;;
    *)
      fail "model $model has an unknown source \"$(redact "$source")\" in MODEL_SOURCES; to fix: use registry, file:/path.gguf or an http(s) URL"
      ;;
  esac
done
echo "init-models: all models are on the volume"
