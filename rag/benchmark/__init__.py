"""``rag bench``: how fast ingestion, retrieval, answering, start-up and memory are, on this machine.

Each figure is the median over several runs, and every ratio compares runs made in the same process
minutes apart, so a noisy machine shifts both sides alike. Everything the bench needs is made here:
a synthetic corpus recombined from the seed paragraphs, synthetic clustered vectors for the scaling
test, an index of the seeds in a temp folder. The live index is never touched. Results go to
``<out>/bench.json`` (rewritten after each section, so a crash keeps what was measured) and
``<out>/bench.md``.

One module per section, each with ``run(ctx)`` and ``markdown(result)``: ``ingest``, ``ann`` (nearest-neighbour
scaling of the FAISS index kinds), ``answer`` (time to first token: ours, the model directly, a naive pipeline),
``cold_start`` and ``memory`` (fresh child processes, helpers in ``processes``), ``store`` (folder vs Milvus Lite).
``context`` holds what they share; ``command`` runs them and renders bench.md.

Not measured: GPUs, other models than the configured one, concurrent users.
"""
