"""Latency of the explorer's requests, as a slider sends them: ``POST /api/decode`` with random
codes over HTTP to a local server (a fresh connection each time, as urllib opens them; a browser
keeps its connection open, so this is an upper bound), and ``Explorer.decode`` alone.

    python benchmarks/explore_latency.py [--requests 200] [--threads 1] [NAME ...]

One row per shipped model (default: all): median and 95th percentile in milliseconds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
import urllib.request

import numpy as np
import torch

from vitae import pretrained
from vitae.explore.explorer import for_run
from vitae.explore.server import make_server, url


def percentiles(seconds: list[float]) -> str:
    ms = sorted(1000 * s for s in seconds)
    return f"median {statistics.median(ms):6.2f} ms, p95 {ms[int(0.95 * (len(ms) - 1))]:6.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=pretrained.names())
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.requests} requests per model")
    for name in args.names:
        config, model, _, _ = pretrained.load_run(f"{pretrained.PREFIX}{name}")
        explorer = for_run(config, model, name=name, n=4)
        draws = [{g: rng.uniform(-3, 3, d).round(2).tolist() for g, d in model.latent_dims.items()}
                 for _ in range(args.requests)]
        for codes in draws[:20]:  # warm-up
            explorer.decode(codes)
        direct = []
        for codes in draws:
            started = time.perf_counter()
            explorer.decode(codes)
            direct.append(time.perf_counter() - started)
        server = make_server(explorer)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        over_http = []
        try:
            for codes in draws:
                request = urllib.request.Request(url(server) + "api/decode", data=json.dumps(codes).encode())
                started = time.perf_counter()
                with urllib.request.urlopen(request) as response:
                    response.read()
                over_http.append(time.perf_counter() - started)
        finally:
            server.shutdown()
            server.server_close()
        print(f"{name:16s} HTTP request: {percentiles(over_http)};  decode alone: {percentiles(direct)}")


if __name__ == "__main__":
    main()
