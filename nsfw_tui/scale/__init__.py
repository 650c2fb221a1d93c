"""Scoring past one machine on Ray Data: sources, the Parquet output and its manifest, workers."""
