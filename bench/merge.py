#!/usr/bin/env python3
"""Writes bench/run.sh's results into BENCHMARKS.md: the header between the `generated` markers, each
run's tables between that run's own markers (`1000 pods on rnacos`; added at the end when missing), and
the cost-growth tables between theirs, so running one scale or server again replaces only its parts.
Text outside the markers (analysis, targets) is kept.

The cost-growth section keeps each run's figures as a JSON comment (`<!-- cost {...} -->`) beside the
tables made from them: a later invocation replaces the rows of the scales and servers it ran and keeps
the others, each row naming the command and commit that measured it.

  bench/merge.py BENCHMARKS.md HEADER.md --costs C.json... --command CMD --commit REV -- [KEY FRAGMENT.md]...
  bench/merge.py --print-costs --costs C.json... --command CMD --commit REV
"""
import json
import pathlib
import re
import sys

GROWTH = ("<!-- bench/run.sh: cost growth start -->", "<!-- bench/run.sh: cost growth end -->")
SERVERS = {"rnacos": "rnacos 0.8.8", "nacos-2.5.1": "Alibaba Nacos 2.5.1"}


def replace(text, start, end, body):
    if start not in text or end not in text:
        text = text.rstrip("\n") + f"\n\n{start}\n{end}\n"
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body.rstrip()}\n{end}{tail}"


def fnum(v, fmt="{:.0f}"):
    return "-" if v is None else fmt.format(v)


def fms(v):
    if v is None:
        return "-"
    return f"{v:.0f} ms" if v < 1000 else f"{v / 1000:.2f} s"


def growth(costs):
    """The cost-growth tables from the runs' figures, rnacos first, then by scale."""
    order = {s: i for i, s in enumerate(SERVERS)}
    costs = sorted(costs, key=lambda c: (order.get(c["server"], 9), c["pods"]))
    runs = []
    for c in costs:
        key = (c["run"], c["command"], c["commit"], c.get("load_passes", "?"))
        if key not in runs:
            runs.append(key)
    ref = lambda c: f"[{runs.index((c['run'], c['command'], c['commit'], c.get('load_passes', '?'))) + 1}]"
    out = []
    out.append("| server | pods (instances) | full pass, wall mean / max | per 1,000 instances | listings per pass "
               "(services) | Nacos requests per pass | operator CPU per pass | server CPU per pass | API server "
               "requests per pass: the operator's / all | operator RSS synced / peak | server RSS synced / peak | run |")
    out.append("| --- " * 12 + "|")
    for c in costs:
        per_k = c["pass_ms_mean"] / c["instances"] * 1000
        # The harness times the first pass to end after its annotation of the binding; a pass that
        # listed fewer services than there are was not the full pass it asked for.
        partial = " (**not full passes**)" if c["listings_per_pass"] < c["services"] else ""
        out.append(
            f"| {SERVERS.get(c['server'], c['server'])} | {c['pods']:,} ({c['instances']:,}) "
            f"| {fms(c['pass_ms_mean'])} / {fms(c['pass_ms_max'])}{partial} | {per_k:.1f} ms "
            f"| {c['listings_per_pass']:.0f} ({c['services']:,}) | {c['nacos_requests_per_pass']:.0f} "
            f"| {c['operator_cpu_per_pass']:.2f} s | {c['server_cpu_per_pass']:.2f} s "
            f"| {c['api_per_pass']:.1f} / {c['api_all_per_pass']:.0f} "
            f"| {c['rss_synced_mib']:.1f} / {c['rss_peak_mib']:.1f} MiB "
            f"| {c['server_rss_synced_mib']:.0f} / {c['server_peak_mib']:.0f} MiB | {ref(c)} |")
    out.append("")
    out.append("| server | pods | single deletions: p99; Nacos requests per deletion, by operation | mass deletion: "
               "pods, last offline; Nacos requests per removed instance, by operation | idle CPU, operator / server "
               "| wrongful | run |")
    out.append("| --- " * 7 + "|")
    def late(c, key):
        n = c.get(key) or 0
        return f" (**{n:,} not offline in time**)" if n else ""

    for c in costs:
        out.append(
            f"| {SERVERS.get(c['server'], c['server'])} | {c['pods']:,} "
            f"| {fms(c['single_p99_ms'])}{late(c, 'single_missing')}; {c['single_requests_per_deletion']:.1f} "
            f"({c['single_by_operation']}) "
            f"| {c['mass']:,}, {fms(c['mass_last_ms'])}{late(c, 'mass_missing')}; {c['mass_by_operation']} "
            f"| {c['idle_cpu_per_min']:.3f} / {c['server_idle_cpu_per_min']:.3f} CPU s/min | {c['wrongful']} | {ref(c)} |")
    out.append("")
    for i, (run, command, commit, load) in enumerate(runs):
        out.append(f"[{i + 1}] `{command}`, operator commit {commit}, run {run} UTC; load average (1/5/15 min) "
                   f"{load} in the idle phase, before the forced passes.  ")
    out.append("")
    for c in costs:
        out.append(f"<!-- cost {json.dumps(c, sort_keys=True)} -->")
    return "\n".join(out)


def read_costs(paths, command, commit):
    costs = []
    for p in paths:
        path = pathlib.Path(p)
        if path.exists():
            c = json.loads(path.read_text())
            c["command"], c["commit"] = command, commit
            costs.append(c)
    return costs


def take(args, flag, many=False):
    if flag not in args:
        return [] if many else None
    i = args.index(flag)
    if not many:
        v = args[i + 1]
        del args[i:i + 2]
        return v
    j = i + 1
    while j < len(args) and not args[j].startswith("--"):
        j += 1
    v = args[i + 1:j]
    del args[i:j]
    return v


def main():
    args = sys.argv[1:]
    pairs = []
    if "--" in args:
        i = args.index("--")
        args, pairs = args[:i], args[i + 1:]
    printing = "--print-costs" in args
    if printing:
        args.remove("--print-costs")
    paths = take(args, "--costs", many=True)
    command, commit = take(args, "--command"), take(args, "--commit")
    new = read_costs(paths, command, commit)
    if printing:
        print(growth(new))
        return
    target, header = pathlib.Path(args[0]), args[1]
    text = target.read_text() if target.exists() else "# Benchmarks\n"
    text = replace(text, "<!-- bench/run.sh: generated start -->", "<!-- bench/run.sh: generated end -->",
                   pathlib.Path(header).read_text())
    for key, frag in zip(pairs[::2], pairs[1::2]):
        text = replace(text, f"<!-- bench/run.sh: {key} start -->", f"<!-- bench/run.sh: {key} end -->",
                       pathlib.Path(frag).read_text())
    if new:
        kept = []
        if GROWTH[0] in text:
            section = text.split(GROWTH[0], 1)[1].split(GROWTH[1], 1)[0]
            kept = [json.loads(m) for m in re.findall(r"<!-- cost (\{.*\}) -->", section)]
        ran = {(c["pods"], c["server"]) for c in new}
        costs = [c for c in kept if (c["pods"], c["server"]) not in ran] + new
        text = replace(text, GROWTH[0], GROWTH[1], growth(costs))
    target.write_text(text)


if __name__ == "__main__":
    main()
