"""Archive runs: STAC inputs, each mask's quick look and STAC item, job-array shards.

Around the plain batch (:mod:`~glnet_cli.inference.batch`): a STAC input
becomes one job per item, named by the item's id and resolved to an asset
only when its turn comes (so a broken item fails alone); after each mask its
quick look and item are written beside it; a batch with ``--stac`` ends with
a Catalog linking every item in the output folder. None of this touches the
mask: the sidecars are read from the published file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional, Sequence

from glnet_cli.errors import InputError
from glnet_cli.inference.batch import SceneReport
from glnet_cli.inference.batch_files import (
    ResolvedOutputs,
    expand_inputs,
    is_batch,
    resolve_outputs,
)
from glnet_cli.inference.shards import Shard
from glnet_cli.io.paths import check_distinct

if TYPE_CHECKING:
    from glnet_cli.inference.engine import PlanSummary, Segmenter, SegmentResult
    from glnet_cli.io.stac.read import ChosenAsset, StacScene

#: The batch's catalogue, in the output folder (``catalog.shard-K-of-N.json`` for a shard).
CATALOG_NAME = "catalog.json"


@dataclass
class ArchivePlan:
    """The jobs of this run (this shard's, in a job array) and where its reports go."""

    resolved: ResolvedOutputs
    #: The JSON report, named after the shard.
    report: Optional[str] = None
    #: STAC items by job scene (the item's href).
    sources: dict[str, "StacScene"] = field(default_factory=dict)
    shard: Optional[Shard] = None
    #: The Catalog a batch with ``--stac`` writes; None otherwise.
    catalog: Optional[str] = None


def plan_archive(inputs: Sequence[str], output: str, probabilities: Optional[str] = None,
                 report: Optional[str] = None, *, overwrite: bool = False, prepare: bool = True,
                 shard: Optional[Shard] = None, stac: bool = False) -> ArchivePlan:
    """:func:`resolve_outputs` for inputs that may be STAC documents, cut to ``shard``.

    An ItemCollection, Catalog or Collection is a batch, as a folder is; one
    Item into a file is a single run. ``shard`` applies to a batch only.
    """
    from glnet_cli.io.stac.read import is_stac

    report = shard.name(report) if shard and report else report
    if not any(is_stac(spec) for spec in inputs):
        resolved = resolve_outputs(inputs, output, probabilities, report, overwrite=overwrite,
                                   prepare=prepare)
        sources: dict[str, StacScene] = {}
    else:
        resolved, sources = _resolve_stac(inputs, output, probabilities, report,
                                          overwrite=overwrite, prepare=prepare)
    if shard is not None and resolved.batch:
        resolved = ResolvedOutputs(True, shard.select(resolved.jobs))
    elif shard is not None and shard.source == "--shard":
        raise InputError("--shard splits a batch; this run has one scene")
    catalog = None
    if stac and resolved.batch:
        name = shard.name(CATALOG_NAME) if shard else CATALOG_NAME
        catalog = os.path.join(output, name)
    return ArchivePlan(resolved, report, sources, shard if resolved.batch else None, catalog)


def _resolve_stac(inputs: Sequence[str], output: str, probabilities: Optional[str],
                  report: Optional[str], *, overwrite: bool,
                  prepare: bool) -> tuple[ResolvedOutputs, dict[str, "StacScene"]]:
    from glnet_cli.io.stac.read import is_stac, read_stac

    named: dict[str, str] = {}
    sources: dict[str, StacScene] = {}
    many = len(inputs) > 1
    for spec in inputs:
        if not is_stac(spec):
            named.update((scene, scene) for scene in expand_inputs([spec]))
            continue
        scenes, collection = read_stac(spec)
        many = many or collection
        for scene in scenes:
            # The name stands for a file: its stem is the mask's (ids may hold dots).
            named.setdefault(scene.key, scene.name + ".json")
            sources.setdefault(scene.key, scene)
    if not named:
        raise InputError(f"{', '.join(inputs)}: no STAC items found")
    if not many and len(named) == 1 and not is_batch([], output):
        return resolve_outputs(list(named), output, probabilities, report, overwrite=overwrite,
                               prepare=prepare), sources
    return resolve_outputs(inputs, output, probabilities, report, overwrite=overwrite,
                           prepare=prepare, scenes=list(named.items())), sources


class ArchiveSegmenter:
    """A :class:`Segmenter` that reads STAC items' assets and writes quick looks and items.

    It stands in for the segmenter wherever one is run (``segment_many``), by path.
    """

    def __init__(self, segmenter: Segmenter, plan: ArchivePlan, model_path: str, *,
                 asset: Optional[str] = None, stac: bool = False, preview: bool = False) -> None:
        self.segmenter = segmenter
        self.plan = plan
        self.model_path = model_path
        self.asset, self.stac, self.preview = asset, stac, preview
        self._model_sha256: Optional[str] = None

    def source(self, path: str) -> "ChosenAsset":
        """What to read for a job's scene: a STAC item's asset and bands, or the path itself."""
        from glnet_cli.io.stac.read import ChosenAsset, choose_asset, model_band_names

        scene = self.plan.sources.get(path)
        if scene is None:
            if self.asset is not None:
                raise InputError(f"{path}: --asset chooses a STAC item's asset; this is a raster")
            return ChosenAsset("", path)
        info = self.segmenter.info
        names = (None if self.segmenter.options.bands
                 else model_band_names(info.config.in_channels, info.provenance))
        return choose_asset(scene, self.asset, names)

    def dry_run(self, path: str) -> PlanSummary:
        chosen = self.source(path)
        return self._named(path, chosen, lambda: self.segmenter.dry_run(chosen.path,
                                                                          chosen.bands))

    def run(self, path: str, output: str, *, probabilities: Optional[str] = None,
            cog: bool = False, overwrite: bool = False, **options: Any) -> SegmentResult:
        """Segment one job's scene, then write its quick look and STAC item if asked for.

        The sidecars describe the mask just written, so they replace older ones.
        """
        from glnet_cli.io.raster.preview import quicklook_path, write_preview
        from glnet_cli.io.stac.write import item_path

        chosen = self.source(path)
        thumbnail = quicklook_path(output) if self.preview else None
        item = item_path(output) if self.stac else None
        check_distinct([output, thumbnail, item], [path, chosen.path])
        result = self._named(path, chosen, lambda: self.segmenter.run(
            chosen.path, output, probabilities=probabilities, cog=cog, overwrite=overwrite,
            bands=chosen.bands, **options))
        if thumbnail:
            write_preview(thumbnail, scene=chosen.path, mask=output,
                          bands=chosen.bands or self.segmenter.options.bands, overwrite=True)
        if item:
            self._write_item(path, output, thumbnail, probabilities, cog)
        return result

    def _named(self, path: str, chosen: "ChosenAsset", call: Any) -> Any:
        """``call()``, its input errors naming the STAC item and asset they concern."""
        scene = self.plan.sources.get(path)
        try:
            return call()
        except InputError as exc:
            if scene is None or scene.item is None:
                raise
            raise type(exc)(f"STAC item {scene.item.id}, asset {chosen.key}: {exc}") from None

    def _write_item(self, path: str, output: str, thumbnail: Optional[str],
                    probabilities: Optional[str], cog: bool) -> None:
        from glnet_cli.io.stac.write import MaskProvenance, sha256_file, write_mask_item

        if self._model_sha256 is None:
            self._model_sha256 = sha256_file(self.model_path)
        scene = self.plan.sources.get(path)
        item = scene.item if scene else None
        when = (item.datetime or item.common_metadata.start_datetime) if item else None
        provenance = MaskProvenance(os.path.basename(self.model_path), self._model_sha256,
                                    scene.href if scene else None, when)
        write_mask_item(output, self.segmenter.info.classes, provenance, thumbnail=thumbnail,
                        probabilities=probabilities, cog=cog, overwrite=True)


def write_batch_catalog(plan: ArchivePlan, reports: Sequence[SceneReport]) -> Optional[str]:
    """The batch's Catalog, linking the item of every mask it made or found (``--skip-existing``).

    Rewritten at each run, so that a rerun of the whole array gathers every shard's items.
    """
    if plan.catalog is None:
        return None
    from glnet_cli.io.stac.write import item_path, write_catalog

    items = [item_path(r.output) for r in reports
             if r.status in ("ok", "skipped") and os.path.isfile(item_path(r.output))]
    write_catalog(plan.catalog, items, overwrite=True)
    return plan.catalog
