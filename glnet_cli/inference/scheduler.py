"""Which output tiles are complete, and which crop results memory must still hold.

An output tile can be blended once every crop that touches it is done (run,
or skipped as empty); a crop's result can be dropped once every tile it
touches has been handed out. Counting both ways keeps memory to the tiles
still waiting for a neighbour, however large the scene.
"""

from __future__ import annotations

from glnet_cli.inference.blend import CropResult
from glnet_cli.inference.grid import ScenePlan
from glnet_cli.io.raster.windows import Box


class TileScheduler:
    """Counts, per tile, the crops still to come; holds crop results until no tile needs them."""

    def __init__(self, plan: ScenePlan) -> None:
        self._plan = plan
        self._tiles_left = [len(crops) for crops in plan.tile_crops]
        self._crops_left = [len(tiles) for tiles in plan.crop_tiles]
        self._results: dict[int, CropResult] = {}

    def add(self, crop: int, result: CropResult) -> None:
        """Keep a crop's result for the tiles it touches (then call :meth:`done`)."""
        self._results[crop] = result

    def done(self, crop: int) -> list[tuple[Box, list[CropResult]]]:
        """A crop is done: the tiles it completes, each with the results of its crops.

        A skipped crop is done without a result; its tiles get only the others'.
        Results no remaining tile needs are dropped.
        """
        plan = self._plan
        finished = []
        for tile in plan.crop_tiles[crop]:
            self._tiles_left[tile] -= 1
            if self._tiles_left[tile]:
                continue
            members = plan.tile_crops[tile]
            finished.append((plan.tiles[tile],
                             [self._results[c] for c in members if c in self._results]))
            for member in members:
                self._crops_left[member] -= 1
                if not self._crops_left[member]:
                    self._results.pop(member, None)
        return finished
