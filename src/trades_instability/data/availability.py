"""Is a dataset on disk? The cheap check the workflow runs before any job starts.

Driven only by :data:`trades_instability.data.download.SOURCES` (the one table of the datasets: folder,
required files, archive, URL): presence of the required paths, no md5 (the download rule and the
loaders check those). Imports nothing heavy: Snakemake's ``onstart`` hook runs it through
:func:`trades_instability.config.pipeline_loading.check_data_available`, which names the settings and raises
the pipeline config's error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from trades_instability.data.download import SOURCES, presence_problem


def dataset_problem(dataset: str, data_root: str | Path, download: bool) -> str | None:
    """None if ``dataset`` looks present below ``data_root`` (file presence only; the download rule and
    the loaders check the md5s), else the message: where to put it, or that the download rule fetches it."""
    if dataset not in SOURCES:
        return None
    src = SOURCES[dataset]
    root = Path(data_root)
    problem = presence_problem(src, root)
    if problem is None:
        return None
    return (f"{src.label} is not available: {problem}. Put the extracted dataset at {root / src.folder}/ "
            f"(extract {src.filename} from {src.url} into data_root={str(root)!r}, absolute {root.resolve()}), "
            f"or set the top-level 'data_root' to the folder that holds {src.folder}/"
            + (f", or fetch it with `python -m trades_instability download {dataset} --data-root {root}`"
               if download else "; 'download: false' in the config, so nothing is fetched") + ".")


def missing_data(needs: Iterable[tuple[str, str]], data_root: str, download: bool, *,
                 fetching: set[str] | None = None, record: Callable[[str], str]) -> str | None:
    """None when every downloadable dataset of ``needs`` ((setting, dataset) pairs) is on
    disk or in ``fetching`` (default: every one when ``download``), else one text listing each missing
    dataset, where to put it and the settings that need it. ``record(dataset)`` is the download rule's
    verification record (named when ``download`` is true: the rule is not scheduled because it exists)."""
    if fetching is None:
        fetching = set(SOURCES) if download else set()
    by_dataset: dict[str, list[str]] = {}
    for name, ds in needs:
        if ds in SOURCES and ds not in fetching:
            by_dataset.setdefault(ds, []).append(name)
    problems = []
    root = Path(data_root)
    for ds, users in by_dataset.items():
        msg = dataset_problem(ds, root, download)
        if msg and download:
            msg += (f" (the workflow's download rule is not scheduled for it: its verification record "
                    f"{record(ds)} exists)")
        elif msg and not root.exists():
            msg = (f"the folder data_root={data_root!r} (absolute {root.resolve()}) does not exist and download "
                   f"is false. {msg}")
        if msg:
            shown = ", ".join(users[:4]) + (f" and {len(users) - 4} more" if len(users) > 4 else "")
            problems.append(f"{msg} (needed by setting(s) {shown})")
    return "data_root: " + " | ".join(problems) if problems else None
