"""GLNet's three training stages on a folder of image/mask tiles, on one device or many."""
