#!/bin/sh
# The per-row cost of the varchar(n) guard (core.pg_casts.length_guards): a 1,000,000-row source read by binary COPY, plain and guarded.
P="psql -h 127.0.0.1 -U postgres -X -d typmod_src"
echo "start $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)"
$P -q -c "DROP TABLE IF EXISTS b; CREATE TABLE b AS SELECT i AS id, md5(i::text) AS name, md5((-i)::text) AS city FROM generate_series(1, 1000000) i" -c "VACUUM ANALYZE b"
for rep in 1 2 3 4; do
$P -c '\timing on' -c "COPY (SELECT q.* FROM b q) TO '/dev/null' (FORMAT binary)" | grep Time | sed "s/^/plain rep $rep: /"
$P -c '\timing on' -c "COPY (SELECT q.\"id\", CASE WHEN char_length(q.\"name\") > 40 THEN left(q.\"name\", -1) || '~' ELSE q.\"name\" END AS \"name\", CASE WHEN char_length(q.\"city\") > 40 THEN left(q.\"city\", -1) || '~' ELSE q.\"city\" END AS \"city\" FROM b q) TO '/dev/null' (FORMAT binary)" | grep Time | sed "s/^/guarded rep $rep: /"
done
$P -q -c "DROP TABLE b"
echo "end $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)"
