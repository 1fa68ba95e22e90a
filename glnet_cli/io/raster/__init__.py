"""Raster files: scenes and tiles read, masks written (GDAL through rasterio)."""
