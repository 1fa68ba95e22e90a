"""The GLNet network, usable without rasterio or click.

Import submodules as ``models.<module>``: the top-level name is common.
"""
