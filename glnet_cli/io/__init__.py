"""Everything that touches files.

Scenes and masks (GDAL), vectors (fiona), model files, and the safe outputs they all use.
"""
