SET max_parallel_workers_per_gather = 0;
\timing on
\echo join alone
SELECT count(*) FROM a JOIN b USING (id);
\echo by = (before)
SELECT count(*) FROM a JOIN b USING (id) WHERE ROW(a.n, a.e, a.c) IS DISTINCT FROM ROW(b.n, b.e, b.c);
\echo COLLATE "C" (after)
SELECT count(*) FROM a JOIN b USING (id) WHERE ROW(a.n COLLATE "C", a.e COLLATE "C", a.c COLLATE "C") IS DISTINCT FROM ROW(b.n COLLATE "C", b.e COLLATE "C", b.c COLLATE "C");
\echo by = (before)
SELECT count(*) FROM a JOIN b USING (id) WHERE ROW(a.n, a.e, a.c) IS DISTINCT FROM ROW(b.n, b.e, b.c);
\echo COLLATE "C" (after)
SELECT count(*) FROM a JOIN b USING (id) WHERE ROW(a.n COLLATE "C", a.e COLLATE "C", a.c COLLATE "C") IS DISTINCT FROM ROW(b.n COLLATE "C", b.e COLLATE "C", b.c COLLATE "C");
\echo by = (before)
SELECT count(*) FROM a JOIN b USING (id) WHERE ROW(a.n, a.e, a.c) IS DISTINCT FROM ROW(b.n, b.e, b.c);
\echo COLLATE "C" (after)
SELECT count(*) FROM a JOIN b USING (id) WHERE ROW(a.n COLLATE "C", a.e COLLATE "C", a.c COLLATE "C") IS DISTINCT FROM ROW(b.n COLLATE "C", b.e COLLATE "C", b.c COLLATE "C");
\echo bpchar by ::text (before)
SELECT count(*) FROM a JOIN b USING (id) WHERE ROW(a.p::text) IS DISTINCT FROM ROW(b.p::text);
\echo bpchar (COLLATE "C", octet_length) (after)
SELECT count(*) FROM a JOIN b USING (id) WHERE ROW(a.p COLLATE "C", octet_length(a.p)) IS DISTINCT FROM ROW(b.p COLLATE "C", octet_length(b.p));
\echo bpchar by ::text (before)
SELECT count(*) FROM a JOIN b USING (id) WHERE ROW(a.p::text) IS DISTINCT FROM ROW(b.p::text);
\echo bpchar (COLLATE "C", octet_length) (after)
SELECT count(*) FROM a JOIN b USING (id) WHERE ROW(a.p COLLATE "C", octet_length(a.p)) IS DISTINCT FROM ROW(b.p COLLATE "C", octet_length(b.p));
