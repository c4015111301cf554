#!/usr/bin/env python3
"""Markdown report of bench/scaleout.sh from its JSON-lines files.

usage: scaleout_report.py part1.jsonl gc.jsonl counts.jsonl verify.jsonl mixed.jsonl
       BLOBS REFERENCED LAYERS SIZE ORPHANS REVIEW_DELAY3
"""
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report import load  # noqa: E402


part1, gcs, counts, verifies, mixed = (load(p) for p in sys.argv[1:6])
blobs, ref, layers, size, orphans, delay3 = sys.argv[6:12]
med = statistics.median


def m(rows, key):
    v = [r[key] for r in rows]
    return med(v) if v else float("nan")


print("### 1. Manifest GET by tag (and tags/list), PostgreSQL vs SQLite\n")
print("The manifest cache answers GET by tag in both flavours, and (in this tree) tags/list is cached per repository "
      "generation too; there is no config switch to turn the caches off, so the uncached figure is a push of 4 KiB blobs "
      "(POST + PUT, one metadata transaction; on PostgreSQL it runs `pg_notify`).\n")
print("Wharf CPU = the wharf process (utime + stime); DB CPU = the whole PostgreSQL server "
      "(postmaster, reaped children and live backends), per 1,000 successful requests. "
      "SQLite runs inside the wharf process, so its cost is in the Wharf CPU column.\n")
print("| Scenario | Metric | SQLite | PostgreSQL | PG / SQLite | Target | Met |")
print("|---|---|--:|--:|--:|---|---|")
for sc, name in (("manifest-get", "manifest GET by tag, 16 clients"), ("tags-list", "tags/list (cached too), 16 clients"),
                 ("push-small", "push 4 KiB blobs (uncached write path), 16 clients")):
    sq = [r for r in part1 if r["scenario"] == sc and r["flavour"] == "sqlite"]
    pg = [r for r in part1 if r["scenario"] == sc and r["flavour"] == "pg"]
    if not sq or not pg:
        continue
    a, b = m(sq, "ops_per_sec"), m(pg, "ops_per_sec")
    tgt = "≥ 70 %" if sc == "manifest-get" else "—"
    met = ("yes" if b / a >= 0.7 else "no") if sc == "manifest-get" else ""
    unit = "pushes/s" if sc == "push-small" else "req/s"
    print(f"| {name} | {unit} | {a:.0f} | {b:.0f} | {100 * b / a:.0f} % | {tgt} | {met} |")
    a, b = m(sq, "server_cpu_ms_per_1k_ops"), m(pg, "server_cpu_ms_per_1k_ops")
    print(f"| {name} | Wharf CPU ms / 1k req | {a:.1f} | {b:.1f} | {b / a:.2f}× | — | |")
    dbk = [1000 * r["db_cpu_ms"] / max(1, r["ops"]) for r in pg]  # ops: successful ones
    tot = [r["server_cpu_ms_per_1k_ops"] + d for r, d in zip(pg, dbk)]
    print(f"| {name} | DB CPU ms / 1k req | (in Wharf) | {med(dbk):.1f} | — | — | |")
    print(f"| {name} | Wharf + DB CPU ms / 1k req | {a:.1f} | {med(tot):.1f} | {med(tot) / a:.2f}× | — | |")
    print(f"| {name} | p50 / p99 ms | {m(sq, 'p50_ms'):.2f} / {m(sq, 'p99_ms'):.2f} | {m(pg, 'p50_ms'):.2f} / {m(pg, 'p99_ms'):.2f} | | | |")
    print(f"| {name} | errors (all runs) | {sum(r['errors'] for r in sq)} | {sum(r['errors'] for r in pg)} | | | |")
print("\n<details><summary>Every run</summary>\n")
print("| Flavour | Scenario | Ops | Errors | req/s | p50 ms | p99 ms | Wharf CPU ms / 1k | DB CPU ms (run) | load tool CPU ms |")
print("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|")
for r in part1:
    print(f"| {r['flavour']} | {r['scenario']} | {r['ops']} | {r['errors']} | {r['ops_per_sec']:.0f} | {r['p50_ms']:.2f} | "
          f"{r['p99_ms']:.2f} | {r['server_cpu_ms_per_1k_ops']:.1f} | {r['db_cpu_ms']} | {r['client_cpu_ms']:.0f} |")
print("\n</details>\n")

nman = int(ref) // int(layers)
print(f"### 2. One GC pass: {int(blobs):,} blobs of {size} B, {int(ref):,} referenced by {nman} tagged manifests × {layers} layers\n")
popl = sys.argv[12] if len(sys.argv) > 12 else ""
if popl and os.path.exists(popl):
    print("Building the state (`load gc-populate`, 16 concurrent clients):\n")
    for l in open(popl):
        print("- " + l.strip().replace("pg populate:", "PostgreSQL:").replace("sqlite populate:", "SQLite:"))
    print()
print("`wharf gc` (one pass, `WHARF_GC_REVIEW_DELAY=1s`, run 2 s after the last upload) in its own process "
      "against the running server's database and blob directory. Blob rows counted in the database, files in "
      "`<data>/blobs/blobs`; the shared config blob and the `load setup` image (5 blobs) are referenced too.\n")
print("| Flavour | dry-run: would delete | pass: blobs deleted | storage objects deleted | pass wall time | gc process CPU | PostgreSQL CPU | blob rows before → after | unreferenced rows before → after | blob files before → after | manifests + referenced blobs pulled after | orphans answering 404 |")
print("|---|--:|--:|--:|--:|--:|--:|---|---|---|---|--:|")
notes = []
for f in ("pg", "sqlite"):
    g = {r["label"]: r for r in gcs if r["flavour"] == f}
    if "part2" not in g:
        continue
    c = {r["label"]: r for r in counts if r["flavour"] == f}
    v = next((r for r in verifies if r["flavour"] == f and r["label"] == "part2"), {})
    p, d = g["part2"], g.get("dry-run", {})
    objs = p["summary"].split("; ")[-1].split(" storage")[0] if "storage objects" in p["summary"] else "?"
    b, a = c.get("before-gc", {}), c.get("after-gc", {})
    name = {"pg": "PostgreSQL", "sqlite": "SQLite"}[f]
    dbcpu = f"{p['db_cpu_ms'] / 1000:.2f} s" if f == "pg" else "—"
    print(f"| {name} | {d.get('blobs_deleted', '?')} ({d.get('wall_ms', 0) / 1000:.2f} s) | {p['blobs_deleted']} | {objs} | "
          f"**{p['wall_ms'] / 1000:.2f} s** | {p['gc_cpu_ms'] / 1000:.2f} s | {dbcpu} | "
          f"{b.get('blob_rows')} → {a.get('blob_rows')} | {b.get('unreferenced_rows')} → {a.get('unreferenced_rows')} | "
          f"{b.get('blob_files')} → {a.get('blob_files')} | {v.get('manifests_ok')} manifests, {v.get('referenced_blobs_ok')} blobs "
          f"({v.get('manifest_errors', '?')} + {v.get('referenced_blob_errors', '?')} errors) | {v.get('orphans_404')} / {v.get('orphans_404', 0) + v.get('orphans_present', 0)} |")
    if d and d.get("blobs_deleted") != p["blobs_deleted"]:
        notes.append(f"**{name}: `wharf gc --dry-run` listed {d.get('blobs_deleted')} blobs, the pass deleted {p['blobs_deleted']}** "
              f"(the dry run stops after the first candidate batch, gc.Options.Batch = 500).")
    if p["rc"] != 0:
        notes.append(f"**{name}: wharf gc exited {p['rc']}** — {p['summary']}")
print()
for n in notes:
    print(n + "\n")
for f in ("pg", "sqlite"):
    for r in gcs:
        if r["flavour"] == f and r["label"] in ("dry-run", "part2", "second-pass"):
            print(f"- {f} {r['label']}: `{r['summary']}` (wall {r['wall_ms']} ms, exit {r['rc']})")
print()

print(f"### 3. Pushes and pulls during GC\n")
print(f"`load gc-mixed`, 16 clients for the run length: 4 of 5 ops are pulls (GET a random tagged manifest of part 2, "
      f"then GET one of its 1 KiB layers, digests checked), 1 of 5 a push (a 1 KiB blob by monolithic POST — every "
      f"other one a re-upload of an orphan GC may be deleting at that moment — then a tagged manifest referencing it). "
      f"Before each phase {int(orphans):,} fresh orphan blobs are pushed and left to pass the review delay ({delay3}); "
      f"in the GC phase `wharf gc` passes run back to back in another process for the run length. "
      f"p99 is the median of the rounds' p99.\n")
print("| Flavour | Phase | ops/s | pull p50 / p99 ms | push p50 / p99 ms | all ops p99 ms | errors | GC passes / blobs deleted |")
print("|---|---|--:|--:|--:|--:|--:|--:|")
notes = []
for f in ("pg", "sqlite"):
    rows = [r for r in mixed if r["flavour"] == f]
    if not rows:
        continue
    loops = [r for r in gcs if r["flavour"] == f and r["label"].startswith("loop-")]
    res = {}
    for ph in ("nogc", "gc"):
        rr = [r for r in rows if r["label"] == ph]
        res[ph] = rr
        killed = [r for r in loops if r["rc"] != 0]
        gcinfo = f"{len(loops)} / {sum(r['blobs_deleted'] for r in loops)}" if ph == "gc" else "—"
        if ph == "gc" and killed:
            gcinfo += f" ({len(killed)} did not finish: exit {', '.join(str(r['rc']) for r in killed)})"
        print(f"| {dict(pg='PostgreSQL', sqlite='SQLite')[f]} | {'with GC' if ph == 'gc' else 'without GC'} | {m(rr, 'ops_per_sec'):.0f} | "
              f"{m(rr, 'pull_p50_ms'):.2f} / {m(rr, 'pull_p99_ms'):.2f} | {m(rr, 'push_p50_ms'):.2f} / {m(rr, 'push_p99_ms'):.2f} | "
              f"{m(rr, 'p99_ms'):.2f} | {sum(r['errors'] for r in rr)} | {gcinfo} |")
    g, n = res["gc"], res["nogc"]
    if g and n:
        ratio = m(g, "p99_ms") / m(n, "p99_ms")
        errs = sum(r["errors"] for r in rows)
        print(f"| | **p99 with / without GC** | | {m(g, 'pull_p99_ms') / m(n, 'pull_p99_ms'):.2f}× | **{m(g, 'push_p99_ms') / m(n, 'push_p99_ms'):.2f}×** | "
              f"**{ratio:.2f}×** (target ≤ 2×: {'met' if ratio <= 2 else 'missed'}) | **{errs}** (target 0: {'met' if errs == 0 else 'missed'}) | |")
    v = next((r for r in verifies if r["flavour"] == f and r["label"] == "part3"), None)
    if v:
        notes.append(f"{dict(pg='PostgreSQL', sqlite='SQLite')[f]} afterwards (one more GC pass, then every pull checked): "
              f"{v['manifests_ok']} tagged manifests of part 2 and {v['pushed_manifests_ok']} manifests pushed by the mixed load pull with all "
              f"their blobs ({v['manifest_errors'] + v['pushed_manifest_errors']} errors{', e.g. ' + '; '.join(v.get('examples', [])[:3]) if v.get('examples') else ''}).")
print()
for n in notes:
    print(n + "\n")
first_errs = [f"{r['flavour']} {r['label']} round {r['round']}: {r['first_error']}" for r in mixed if r.get("first_error")]
if first_errs:
    print("First errors: " + " · ".join(first_errs[:6]) + "\n")
loops = [r for r in gcs if r["label"].startswith("loop-")]
if loops:
    print("<details><summary>GC passes during the load</summary>\n")
    print("| Flavour | Pass | wall ms | gc CPU ms | PostgreSQL CPU ms | blobs deleted | exit | summary |")
    print("|---|---|--:|--:|--:|--:|--:|---|")
    for r in gcs:
        if r["label"].startswith("loop-") or r["label"] == "final":
            print(f"| {r['flavour']} | {r['label']} | {r['wall_ms']} | {r['gc_cpu_ms']} | {r['db_cpu_ms'] if r['flavour'] == 'pg' else '—'} | "
                  f"{r['blobs_deleted']} | {r['rc']} | {r['summary']} |")
    print("\n</details>\n")
    print("<details><summary>Every mixed run</summary>\n")
    print("| Flavour | Round | Phase | ops | errors | ops/s | pull p50/p99/max ms | push p50/p99/max ms | orphan re-uploads |")
    print("|---|--:|---|--:|--:|--:|---|---|--:|")
    for r in mixed:
        print(f"| {r['flavour']} | {r['round']} | {r['label']} | {r['ops']} | {r['errors']} | {r['ops_per_sec']:.0f} | "
              f"{r['pull_p50_ms']:.2f} / {r['pull_p99_ms']:.2f} / {r['pull_max_ms']:.0f} | {r['push_p50_ms']:.2f} / {r['push_p99_ms']:.2f} / {r['push_max_ms']:.0f} | {r['orphans_reuploaded']} |")
    print("\n</details>")
