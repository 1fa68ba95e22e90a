"""Segmenting scenes: the crop grid, the reader threads, the device loop, blending, batches."""
