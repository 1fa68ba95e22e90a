"""One module per command, imported only when that command runs or shows its help.

``glnet --help`` lists the commands from this table alone, so it imports none
of them (and no torch or GDAL). Each entry's help is the first line of the
command's docstring; ``tests/cli/test_cli.py`` checks that they agree.
"""

#: Command name -> (``module:attribute`` of its click command, one-line help), in help order.
COMMANDS: dict[str, tuple[str, str]] = {
    "segment": ("glnet_cli.commands.segment:segment_command",
                "Segment GeoTIFF scenes into georeferenced class masks with GLNet."),
    "vectorize": ("glnet_cli.commands.vectorize:vectorize_command",
                  "Turn a class mask into polygons with class_id, class_name, area and "
                  "perimeter."),
    "evaluate": ("glnet_cli.commands.evaluate:evaluate_command",
                 "Score the mask PREDICTION against TRUTH: per-class IoU, F1, precision, "
                 "recall, mIoU."),
    "info": ("glnet_cli.commands.info:info_command",
             "Describe PATH, a glnet model file (.pt) or a scene (GeoTIFF or any GDAL raster)."),
    "train": ("glnet_cli.commands.train:train_command",
              "Train a GLNet model on a folder of image/mask tiles, stage by stage."),
    "convert-reference": ("glnet_cli.commands.convert_reference:convert_reference_command",
                          "Convert the reference GLNet's released checkpoints into a glnet "
                          "model file."),
}
