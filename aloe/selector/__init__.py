"""The selector: OOD scores, threshold, k-means, strategies and ``aloe-select``."""
