"""Training dual encoders with monolingual, cross-lingual and hybrid batches (arXiv 2408.10536)."""
