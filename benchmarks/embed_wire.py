"""What an OpenAI-compatible embeddings reply costs the client: float lists vs base64.

    python benchmarks/embed_wire.py [--batches 20] [--batch 512] [--dimension 1536]

Building a 100k-chunk index through an embeddings server that answers instantly
spent its time in the openai client turning JSON float lists into Python objects
(newsqa asked for encoding_format="float"). A local server here answers every
request from a prebuilt body, so only the client side is timed: the real openai
client over HTTP, then the reply turned into a float32 matrix, both ways, in the
same run; and newsqa's OpenAIEmbedder end to end (which asks for base64).
"""

from __future__ import annotations

import argparse
import base64
import json
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from newsqa.config import Settings
from newsqa.store.embedding import OpenAIEmbedder


def bodies(batch: int, dimension: int) -> dict[str, bytes]:
    """The two replies a server would send for one batch, built once."""
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((batch, dimension)).astype(np.float32)
    out = {}
    for fmt in ("float", "base64"):
        data = [
            {"object": "embedding", "index": i,
             "embedding": v.tolist() if fmt == "float"
             else base64.b64encode(struct.pack(f"<{dimension}f", *v)).decode()}
            for i, v in enumerate(vectors)
        ]
        reply = {"object": "list", "data": data, "model": "m",
                 "usage": {"prompt_tokens": batch, "total_tokens": batch}}
        out[fmt] = json.dumps(reply).encode()
    return out


def serve(replies: dict[str, bytes]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            data = replies[body.get("encoding_format", "float")]
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def client_seconds(url: str, fmt: str, texts: list[str], batches: int) -> float:
    """The openai client's request plus the conversion newsqa did (float) or does (base64)."""
    from openai import OpenAI

    from newsqa.store.embedding import _vector

    client = OpenAI(base_url=url, api_key="k", max_retries=0)
    start = time.perf_counter()
    for _ in range(batches):
        reply = client.embeddings.create(model="m", input=texts, encoding_format=fmt)  # type: ignore[arg-type]
        if fmt == "float":
            np.array([d.embedding for d in reply.data], dtype=np.float32)
        else:
            np.stack([_vector(d.embedding) for d in reply.data])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--dimension", type=int, default=1536)
    args = parser.parse_args()
    httpd = serve(bodies(args.batch, args.dimension))
    url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    texts = [f"chunk {i}" for i in range(args.batch)]
    n = args.batch * args.batches
    seconds = {fmt: client_seconds(url, fmt, texts, args.batches) for fmt in ("float", "base64")}
    embedder = OpenAIEmbedder("m", Settings(openai_base_url=url, openai_api_key="k"))
    start = time.perf_counter()
    for _ in range(args.batches):
        embedder.embed_documents(texts)
    seconds["newsqa OpenAIEmbedder"] = time.perf_counter() - start
    print(f"{n} vectors of {args.dimension} floats in batches of {args.batch}, instant server:")
    for label, took in seconds.items():
        print(f"  {label:22s} {n / took:9.0f} vectors/s  ({took:.2f} s)")
    print(f"  base64 / float speed-up: {seconds['float'] / seconds['base64']:.1f}x")
    httpd.shutdown()


if __name__ == "__main__":
    main()
