"""STAC metadata: items read as scenes, items and catalogues written beside masks."""
