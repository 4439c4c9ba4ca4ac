#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (default 60 s each), starting from the seed corpus
# in fuzz/corpus/<target>. New inputs that widen coverage are written to a scratch corpus, not
# to the repository: copy a finding (fuzz/artifacts/<target>/crash-*) into fuzz/corpus/<target>
# once fixed, and the replay tests (lb-core/tests/fuzz_corpus.rs, lb-proxy/tests/fuzz_corpus.rs,
# lb-observe/tests/it/fuzz_corpus.rs) keep it as a regression test on stable.
#
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
# Usage: fuzz/run.sh [seconds-per-target] [target...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(config_parse header_sanitise request_head response_head chunked admin_answer proxy_header route discovered_backends grpc_fields traceparent h2_settings h2_resets)
fi
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
for target in "${targets[@]}"; do
    mkdir -p "$scratch/$target"
    echo "== $target: ${seconds}s"
    cargo +nightly fuzz run "$target" "$scratch/$target" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=2048
done
