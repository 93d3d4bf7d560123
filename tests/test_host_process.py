"""newsqa embedded in someone else's process: it leaves the environment and numpy alone.

Before, `import newsqa` wrote OPENBLAS/MKL/OMP_NUM_THREADS, HF_HUB_OFFLINE,
TIKTOKEN_CACHE_DIR and more into `os.environ`, changing numpy for the whole host
(a notebook, a chatbot). Each test runs in a fresh interpreter, because what a
variable does is decided when numpy or tiktoken first load.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

HOST = """
import json, os, sys
before = dict(os.environ)
import newsqa
after_import = dict(os.environ)
from newsqa import NewsQA
qa = NewsQA(db=sys.argv[1])
qa.ingest([sys.argv[2]])
answer = qa.ask("Who did Qaani meet in Baghdad?")
changed = {
    stage: sorted(k for k in set(before) | set(env) if before.get(k) != env.get(k))
    for stage, env in (("import", after_import), ("ask", dict(os.environ)))
}
print(json.dumps({"changed": changed, "cited": len(answer.citations)}))
"""

BLAS = """
import json, sys
import numpy
from threadpoolctl import threadpool_info, threadpool_limits
from newsqa import NewsQA

def blas_threads():
    return sorted({p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"})

threadpool_limits(limits=2, user_api="blas")       # the host's own choice
qa = NewsQA(db=sys.argv[1])
qa.ingest([sys.argv[2]])
seen = []
embed = qa.embedder.embed_query
qa.embedder.embed_query = lambda text: (seen.append(blas_threads()), embed(text))[1]
qa.search("Who did Qaani meet in Baghdad?", top_k=3)
print(json.dumps({"during": seen, "after": blas_threads()}))
"""


def _run(code: str, tmp_path: Path) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIKTOKEN_", "OPENBLAS_"))}
    # KMP_DUPLICATE_LIB_OK: set in this pytest process by an earlier in-process test
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "HF_HUB_OFFLINE", "TOKENIZERS_PARALLELISM",
                 "KMP_DUPLICATE_LIB_OK"):
        env.pop(name, None)
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "db"), str(REPO / "seeds")],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def test_import_and_ask_change_no_environment_variable(tmp_path: Path) -> None:
    """Also proves tiktoken works offline without TIKTOKEN_CACHE_DIR being set for it.

    The one exception is threadpoolctl's own `setdefault("KMP_DUPLICATE_LIB_OK")` on its
    import (so that two Intel OpenMP runtimes may load; scikit-learn hosts have it too):
    it is the library the issue asks for, and it changes nothing numpy does.
    """
    got = _run(HOST, tmp_path)
    assert got["changed"] == {"import": [], "ask": ["KMP_DUPLICATE_LIB_OK"]}
    assert got["cited"]


def test_blas_held_at_one_thread_only_while_newsqa_works(tmp_path: Path) -> None:
    got = _run(BLAS, tmp_path)
    assert got["during"] and all(threads == [1] for threads in got["during"])  # type: ignore[union-attr]
    assert got["after"] == [2]
