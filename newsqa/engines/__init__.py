"""Engines: what turns sources into a draft, and the models behind them.

    base.py          the one engine protocol (`Engine`: answer, summarize, timeline,
                     condense; each streams text, then its result) and `drain`
    llm_answer.py    the LLM engine (`LLMEngine`); its answer: prompt, structured
                     stream, one re-ask
    extractive.py    the offline engine (`ExtractiveEngine`): sentences picked and
                     cited, no model
    direct.py        the short answer a question asks for (a name, a number, a date),
                     picked out of cited text; both engines show it
    summarize.py     summaries' and timelines' sources; the offline ones, sentences
                     picked (extractive, MMR across outlets)
    llm_summary.py   the LLM's summaries and timelines, map-reduce under a token budget
    condense.py      chat follow-ups made standalone, by a model or offline
    llm.py           OpenAI-compatible client: structured-output ladder, retries, streams
    local.py, llama_index_llm.py   backends that register themselves (in-process
                     llama.cpp; any LlamaIndex LLM)
    prompts.py       templates as files (prompts/)

Engines import grounding, retrieval, store and text, never the app above them.
"""
