set -e
D=postgresql://postgres@127.0.0.1:5432/bfx_bench
for i in 1 2; do
 for side in before after; do
  if [ $side = before ]; then cd /work/main; else cd /work/wt/bench_fix; fi
  psql -h 127.0.0.1 -U postgres -qc "DROP TABLE IF EXISTS bench_records; DROP TABLE IF EXISTS async_etl_bench_ledger" bfx_bench
  PYTHONPATH=$PWD /work/main/.venv/bin/python -m async_etl bench --sink $D --table bench_records --log-format json --json-out - 2>/dev/null > /tmp/bfx_${side}_$i.json
  echo "$side $i $(/work/main/.venv/bin/python -c "import json;d=json.load(open('/tmp/bfx_${side}_$i.json'));print(d['rows_per_s'],d['records'],d['ok'])")"
 done
done
