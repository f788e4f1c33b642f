#!/bin/sh
# usage: pairs.sh FIRST LAST  -- pairs FIRST..LAST, before then after, each --only pg,pg_no_ts --repeat 7
PY=/work/main/.venv/bin/python
for i in $(seq $1 $2); do
  for side in before after; do
    db=pg-intake_b; [ $side = after ] && db=pg-intake_a
    echo "pair $i $side start $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)" >> /tmp/pgi/raw/pairs.log
    (cd /tmp/pgi/$side && PYTHONPATH=. $PY benchmarks/writer.py --dsn postgresql://postgres@127.0.0.1:5432/$db \
        --only pg,pg_no_ts --repeat 7 --out /tmp/pgi/raw/pg_${side}_$i.json > /tmp/pgi/raw/pg_${side}_$i.log 2>&1)
  done
done
echo "end $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)" >> /tmp/pgi/raw/pairs.log
