#!/usr/bin/env python3
"""Prints the traces a receiver wrote (receiver.py's ``--spans`` file) as
trees: each span with its start (ms after its trace's first span), its
duration, its kind and its attributes.

    tree.py SPANS.jsonl [TRACE_ID_PREFIX ...]

Only the traces whose ids start with a given prefix, if any are given.
Standard library only.
"""

import json
import sys


def main(argv):
    path, prefixes = argv[1], argv[2:]
    spans = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
    traces = {}
    for span in spans:
        traces.setdefault(span["trace_id"], []).append(span)
    for trace_id, members in sorted(traces.items(), key=lambda t: min(s["start_ns"] for s in t[1])):
        if prefixes and not any(trace_id.startswith(p) for p in prefixes):
            continue
        start = min(s["start_ns"] for s in members)
        ids = {s["span_id"] for s in members}
        children = {}
        for span in members:
            parent = span["parent_span_id"] if span["parent_span_id"] in ids else None
            children.setdefault(parent, []).append(span)
        service = members[0]["resource"].get("service.name", "?")
        print(f"trace {trace_id} ({service})")

        def show(span, depth):
            offset = (span["start_ns"] - start) / 1e6
            took = (span["end_ns"] - span["start_ns"]) / 1e6
            attributes = " ".join(f"{k}={v}" for k, v in sorted(span["attributes"].items()))
            status = "" if span["status"]["code"] == "UNSET" else f" [{span['status']['code']}: {span['status']['message']}]"
            print(f"{'  ' * depth}{offset:9.2f} ms {took:8.2f} ms  {span['name']} ({span['kind'].lower()}){status}  {attributes}".rstrip())
            for child in sorted(children.get(span["span_id"], []), key=lambda s: s["start_ns"]):
                show(child, depth + 1)

        roots = children.get(None, [])
        for root in sorted(roots, key=lambda s: s["start_ns"]):
            if root["parent_span_id"]:
                print(f"  (parent {root['parent_span_id']}, not received)")
            show(root, 1)
        print()


if __name__ == "__main__":
    main(sys.argv)
