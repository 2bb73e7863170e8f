"""Inject one of the monitor tests' faults into a copy of a synthetic world (benchmarks, not a test).

Usage: python benches/monitor-faults.py WORLD COPY half|country|skips
  half     half of the rows of the activity partition S - 2 dropped
  country  GB's ms_played and streams halved in the last seven days
  skips    android's skips doubled in the last seven days
The copy hard-links every file it does not rewrite. Needs pyarrow (.bench/venv-models).
Then: retain features / score / monitor --as-of S --input COPY --output <a copy of the night>.
"""
import sys, os, shutil, glob, datetime
import pyarrow.parquet as pq, pyarrow as pa, pyarrow.compute as pc
src, dst, kind = sys.argv[1], sys.argv[2], sys.argv[3]
S = datetime.date.fromisoformat(os.environ.get("AS_OF", "2026-11-20"))
if os.path.exists(dst): shutil.rmtree(dst)
os.system(f"cp -al {src} {dst}")
week = [S - datetime.timedelta(days=k) for k in range(7)]
def plain(t):
    return t.cast(pa.schema([pa.field(f.name, pa.string() if f.type == pa.string_view() else f.type) for f in t.schema]))
def rewrite(day, f):
    d = f"{dst}/activity/dt={day}"
    files = glob.glob(d + "/*.parquet")
    t = pa.concat_tables([plain(pq.read_table(x)) for x in files])
    out = f(t)
    for x in files: os.remove(x)
    pq.write_table(out, d + "/part-0000.parquet")
if kind == "half":
    rewrite(week[2], lambda t: t.take(pa.array(range(0, t.num_rows, 2))))
elif kind == "country":
    users = plain(pq.read_table(f"{src}/users/users.parquet"))
    gb = pc.filter(users["user_id"], pc.equal(users["country"], "GB"))
    def f(t):
        m = pc.is_in(t["user_id"], value_set=gb)
        for c in ["ms_played", "streams"]:
            i = t.schema.get_field_index(c)
            t = t.set_column(i, c, pc.if_else(m, pc.cast(pc.divide(t[c], 2), t[c].type), t[c]))
        return t
    for d in week: rewrite(d, f)
elif kind == "skips":
    def f(t):
        m = pc.equal(t["platform"], "android")
        i = t.schema.get_field_index("skips")
        return t.set_column(i, "skips", pc.if_else(m, pc.cast(pc.multiply(t["skips"], 2), t["skips"].type), t["skips"]))
    for d in week: rewrite(d, f)
