"""Class masks to polygons, window by window, merged across window edges."""
