#!/usr/bin/env bash
# Threads vs async on this machine: the three scenarios of benchmarks/RESULTS.md ("Threads vs
# async").  Each run is a fresh `async-etl bench` process; compare starts the CrateDB stand-in
# itself for the network scenario.  Needs PostgreSQL on 127.0.0.1:5432 (trust auth).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=benchmarks/threads_vs_async
createdb -h 127.0.0.1 -U postgres aetl_bench 2>/dev/null || true
# loopback: gzip would only add CPU to both modes; this scenario is about requests in flight
async-etl compare --scenario network --concurrency 1,16,64,256 --duration 6 --batch-size 100 \
    --latency-ms 20 --gzip-threshold 0 --out "$OUT/network"
async-etl compare --scenario database --sink postgresql://postgres@127.0.0.1:5432/aetl_bench \
    --concurrency 1,4,16 --duration 6 --batch-size 5000 --out "$OUT/database"
async-etl compare --scenario cpu --concurrency 4 --generators 2 --payload-bytes 2000 \
    --duration 6 --out "$OUT/cpu"
rm -rf "$OUT"/*/runs "$OUT"/*/results.json  # keep the tables and the PNGs
