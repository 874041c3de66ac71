#!/usr/bin/env bash
# Headroom's tiny-decoder generation (JMH DecoderBenchmark) against PyTorch's (tools/tiny/bench_decode.py,
# Debian's python3-torch) on the same weights, the same shapes and thread count, in one run; prints one table.
#
#   bench/decoder-vs-pytorch.sh                      # batches 1, 8, 32; prompt 128, generate 128; 2 threads
#   THREADS=1 bench/decoder-vs-pytorch.sh            # another thread count for both
#   bench/decoder-vs-pytorch.sh -wi 1 -w 1 -i 1 -r 1 # extra arguments go to JMH (here: a short smoke run)
#
# Needs bench/target/benchmarks.jar (see bench/README.md: mvn install -DskipTests, then
# mvn -f bench/pom.xml package) and /usr/bin/python3 with torch and numpy. Run it on a quiet machine:
# both sides share the same cores with anything else that runs.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
jar="$root/bench/target/benchmarks.jar"
threads="${THREADS:-2}"
batches="${BATCHES:-1,8,32}"
prompt="${PROMPT:-128}"
generate="${GENERATE:-128}"
repeats="${REPEATS:-5}"
java="${JAVA_HOME:+$JAVA_HOME/bin/}java"
if [ ! -f "$jar" ]; then
  echo "decoder-vs-pytorch: $jar is missing; build it as bench/README.md says" >&2
  exit 2
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "== Headroom (JMH DecoderBenchmark, $threads threads)" >&2
"$java" -jar "$jar" DecoderBenchmark -p batch="$batches" -p prompt="$prompt" -p generate="$generate" -p threads="$threads" \
  -rf csv -rff "$work/headroom.csv" "$@" >&2

echo "== PyTorch (tools/tiny/bench_decode.py, $threads threads, median of $repeats after a warm-up run)" >&2
OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 "$root/tools/tiny/bench_decode.py" --threads "$threads" --batches "$batches" \
  --prompt "$prompt" --generate "$generate" --repeats "$repeats" > "$work/torch.csv"

/usr/bin/python3 - "$work/headroom.csv" "$work/torch.csv" "$prompt" "$generate" "$threads" <<'PY'
import csv, sys
headroom_csv, torch_csv, prompt, generate, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
ms = {}  # (benchmark, batch) -> (mean ms, error ms)
with open(headroom_csv, newline="") as f:
    for r in csv.DictReader(f):
        name = r["Benchmark"].rsplit(".", 1)[-1]
        ms[(name, int(r["Param: batch"]))] = (float(r["Score"]), float(r["Score Error (99.9%)"] or "nan"))
torch = {int(r["batch"]): r for r in csv.DictReader(open(torch_csv))}
print(f"tiny decoder, prompt {prompt} tokens, {generate} generated per sequence (the first from the prefill), {threads} threads")
print("| batch | Headroom prompt tok/s | PyTorch prompt tok/s | ratio | Headroom generated tok/s | PyTorch generated tok/s | ratio |")
print("|---:|---:|---:|---:|---:|---:|---:|")
for b in sorted(torch):
    hp = b * prompt / (ms[("prefill", b)][0] / 1e3)
    hg = b * (generate - 1) / (ms[("decode", b)][0] / 1e3)
    tp, tg = float(torch[b]["prompt_tokens_per_s"]), float(torch[b]["generated_tokens_per_s"])
    print(f"| {b} | {hp:,.0f} | {tp:,.0f} | {hp / tp:.2f} | {hg:,.0f} | {tg:,.0f} | {hg / tg:.2f} |")
print("(Headroom: JMH mean time per prefill step and per run of decode steps; PyTorch: median of its runs. "
      "Ratio = Headroom / PyTorch.)")
PY
