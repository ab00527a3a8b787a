#!/usr/bin/env python3
"""Writes bench/run.sh's results into BENCHMARKS.md: the header between the `generated` markers, and
each scale's tables between that scale's own markers (added at the end when missing), so running one
scale again replaces only its section. Text outside the markers (analysis, targets) is kept.

  bench/merge.py BENCHMARKS.md HEADER.md [PODS FRAGMENT.md]...
"""
import pathlib
import sys


def replace(text, start, end, body):
    if start not in text or end not in text:
        text = text.rstrip("\n") + f"\n\n{start}\n{end}\n"
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body.rstrip()}\n{end}{tail}"


def main():
    target, header, pairs = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
    text = target.read_text() if target.exists() else "# Benchmarks\n"
    text = replace(text, "<!-- bench/run.sh: generated start -->", "<!-- bench/run.sh: generated end -->",
                   pathlib.Path(header).read_text())
    for pods, frag in zip(pairs[::2], pairs[1::2]):
        text = replace(text, f"<!-- bench/run.sh: {pods} pods start -->", f"<!-- bench/run.sh: {pods} pods end -->",
                       pathlib.Path(frag).read_text())
    target.write_text(text)


if __name__ == "__main__":
    main()
