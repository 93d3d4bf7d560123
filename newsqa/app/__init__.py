"""The app: what a user calls. `NewsQA` (api.py) wires store, retrieval and an engine;
chat.py holds sessions, server.py the OpenAI-compatible endpoint, cli.py the `newsqa`
command, llama_index.py the LlamaIndex adapters. evaluation.py is the optional
benchmark harness behind `newsqa eval`, imported by nothing else."""
