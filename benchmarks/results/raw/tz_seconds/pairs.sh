#!/bin/sh
# before (/tmp/tzs_base = main a632c77) and after (tz_seconds ee389e8), alternated, each under bq
R=/work/wt/tz_seconds/benchmarks/results/raw/tz_seconds
for i in 1 2; do
  for side in before after; do
    if [ $side = before ]; then d=/tmp/tzs_base; else d=/work/wt/tz_seconds; fi
    cd $d
    PYTHONPATH=$d /work/notes/bin/bq sh -c "echo start $(date -u +%H:%M:%S) load \$(cut -d' ' -f1-3 /proc/loadavg); /work/main/.venv/bin/python benchmarks/writer.py --only crate --repeat 3 --out $R/${side}_$i.json; echo end \$(date -u +%H:%M:%S) load \$(cut -d' ' -f1-3 /proc/loadavg)" > $R/${side}_$i.txt 2>&1
  done
done
