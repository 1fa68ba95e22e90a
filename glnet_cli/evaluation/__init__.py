"""Scoring a mask against raster or vector ground truth on the mask's own grid."""
