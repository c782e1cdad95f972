#!/usr/bin/env bash
# Sends a burst of requests to the model server's /predict endpoint through a
# gateway, counts the responses by status code and shows one rate-limited
# (429) response in full.
#
# Usage: examples/burst.sh [N]
#   N         number of requests (default 150)
# Environment:
#   PROXY     gateway base URL (default http://127.0.0.1:8000)
#   PARALLEL  requests in flight at once (default 20)
set -euo pipefail

count=${1:-150}
proxy=${PROXY:-http://127.0.0.1:8000}
parallel=${PARALLEL:-20}
url="${proxy%/}/ml-model/predict"
body='{"features": [5.1, 3.5, 1.4, 0.2]}'

for pair in "N:$count" "PARALLEL:$parallel"; do
    name=${pair%%:*}
    value=${pair#*:}
    if ! [[ $value =~ ^[1-9][0-9]*$ ]]; then
        echo "error: $name must be a positive integer, got '$value'" >&2
        exit 2
    fi
done
if ! command -v curl >/dev/null 2>&1; then
    echo "error: curl not found; install curl first" >&2
    exit 2
fi

workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT

echo "Sending $count requests to $url, $parallel at a time"
# Each request writes its own header and body files, so parallel requests
# never share an output file.
seq 1 "$count" | xargs -P "$parallel" -I{} \
    curl --silent --show-error --max-time 10 \
        --request POST \
        --header 'Content-Type: application/json' \
        --data "$body" \
        --dump-header "$workdir/{}.headers" \
        --output "$workdir/{}.body" \
        "$url" 2>"$workdir/curl-errors.txt" || true

# The status code is the second field of the last status line in each header
# file. A request with no header file got no response.
declare -A by_status=()
no_response=0
limited_example=""
for i in $(seq 1 "$count"); do
    headers="$workdir/$i.headers"
    status=""
    if [[ -s $headers ]]; then
        status=$(tr -d '\r' <"$headers" | awk '/^HTTP\// { code = $2 } END { print code }')
    fi
    if [[ -z $status ]]; then
        no_response=$((no_response + 1))
        continue
    fi
    by_status[$status]=$(( ${by_status[$status]:-0} + 1 ))
    if [[ $status == 429 && -z $limited_example ]]; then
        limited_example=$i
    fi
done

echo
echo "200 OK:                ${by_status[200]:-0}"
echo "429 Too Many Requests: ${by_status[429]:-0}"
for status in $(printf '%s\n' "${!by_status[@]}" | sort -n); do
    if [[ $status != 200 && $status != 429 ]]; then
        echo "$status:                   ${by_status[$status]}"
    fi
done
if ((no_response > 0)); then
    echo "no response:           $no_response"
    echo "curl errors (up to 3 distinct):"
    sort -u "$workdir/curl-errors.txt" | head -n 3 | sed 's/^/  /'
fi

if ((no_response == count)); then
    echo
    echo "error: no request got a response from $url; is the gateway running?" >&2
    exit 1
fi

echo
if [[ -n $limited_example ]]; then
    echo "One limited response (request $limited_example):"
    tr -d '\r' <"$workdir/$limited_example.headers"
    cat "$workdir/$limited_example.body"
    echo
else
    echo "No request was rate limited (no 429 response)."
fi
