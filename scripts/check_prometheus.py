#!/usr/bin/env python3
"""Checks Prometheus text exposition read from stdin with the official
Python client's parser (prometheus_client). Exits 1 with a message if the
text does not parse or a required metric family is missing.

usage: check_prometheus.py FAMILY [FAMILY ...] < metrics.txt
"""
import sys

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    sys.exit("prometheus_client is not installed: python3 -m pip install prometheus-client")

text = sys.stdin.read()
try:
    families = {f.name: f for f in text_string_to_metric_families(text)}
except Exception as e:  # the parser raises ValueError and friends
    sys.exit(f"invalid Prometheus exposition: {e}")

missing = [name for name in sys.argv[1:] if name not in families]
if missing:
    sys.exit(f"missing metric families: {missing}; have {sorted(families)}")
samples = sum(len(f.samples) for f in families.values())
print(f"ok: {len(families)} families, {samples} samples")
