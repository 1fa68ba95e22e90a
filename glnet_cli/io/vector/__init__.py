"""Vector files: polygons written with fiona or streamed as GeoJSON."""
