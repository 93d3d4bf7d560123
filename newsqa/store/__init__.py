"""The store: articles in, chunks with exact offsets, embeddings, the Chroma index and the
persistent keyword index. Imports only text/ and the top-level models, config, errors.

    ingest.py        load -> dedupe -> chunk -> embed -> write, with a report
       |  |  |
       |  |  index.py        Chroma collections: chunks, article manifest, model check
       |  |     |  keywordstore.py   the persistent keyword index beside it
       |  |     folderlock.py        one process per folder
       |  embedding.py (+ minilm_graph.py)   the offline ONNX MiniLM, OpenAI embeddings
       articles.py, chunking.py             loaders; sentence-aware token-bounded chunks
"""
