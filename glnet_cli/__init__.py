"""glnet: GLNet segmentation of ultra-high-resolution GeoTIFFs."""

__version__ = "0.1.0"
