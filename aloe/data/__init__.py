"""Data sources: long-tailed counts, synthetic pools, image datasets."""
