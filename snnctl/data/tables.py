"""Tabular, text and Hugging Face sources for `snnctl data prepare`, read by Hugging Face's own builders.

`csv`/`tsv`/`jsonl`/`parquet`/`text` go through `datasets.load_dataset(<builder>, data_files=...)`, which
streams into Arrow; `hf` is `load_from_disk` for a `save_to_disk` folder and `load_dataset` otherwise
(a local script or data folder, or a hub id when the user names one). The result has a `text` (or
image `x`) column and an integer `label` column.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from snnctl.data.formats import TABULAR, Options, Read, split_of
from snnctl.errors import UserError

BUILDERS = {"csv": ("csv", {}), "tsv": ("csv", {"sep": "\t", "quoting": 3}), "jsonl": ("json", {}),
            "parquet": ("parquet", {}), "text": ("text", {})}
TEXT_NAMES = ("text", "sentence", "content", "review")
LABEL_NAMES = ("label", "labels", "class", "target")
IMAGE_NAMES = ("image", "img", "pixel_values")


def _files(source: Path, fmt: str) -> dict[str, list[Path]]:
    if source.is_file():
        return {"train": [source]}  # split later (Hugging Face reserves the name "all")
    found = [p for p in sorted(source.iterdir()) if p.is_file() and TABULAR.get(p.suffix.lower()) == fmt]
    if not found:
        raise UserError(f"no {fmt} files", where=str(source))
    out: dict[str, list[Path]] = {}
    for p in found:
        out.setdefault(split_of(p.name) or "train", []).append(p)
    return out


def read_table(source: Path, fmt: str, opts: Options) -> Read:
    """One file (split later) or a folder of files whose names say train/test."""
    import datasets

    files = _files(source, fmt)
    for paths in files.values():
        for p in paths:
            if p.stat().st_size == 0:
                raise UserError(f"empty file, expected {fmt} data", where=str(p))
    builder, kwargs = BUILDERS[fmt]
    try:
        loaded = datasets.load_dataset(builder, data_files={k: [str(p) for p in v] for k, v in files.items()},
                                       cache_dir=str(opts.cache_dir / "hf-cache"), **kwargs)
    except (ValueError, datasets.exceptions.DatasetGenerationError) as err:
        cause = err.__cause__ or err
        raise UserError(f"not valid {fmt} ({str(cause).splitlines()[0][:200]})", where=str(source)) from None
    where = {k: str(v[0]) for k, v in files.items()}
    splits, classes = normalise(dict(loaded), opts, where, fmt)
    return Read(splits, [p for v in files.values() for p in v], classes, "text")


def normalise(splits: dict[str, Any], opts: Options, where: dict[str, str],
              fmt: str) -> tuple[dict[str, Any], list[str]]:
    """Keep the text (or image) and label columns, named `text`/`x` and `label`; labels must be integers."""
    first = next(iter(splits.values()))
    columns = list(first.column_names)
    text_col = _column(columns, opts.text_column, TEXT_NAMES + IMAGE_NAMES, "--text-column", where, first=fmt == "text")
    label_col = _column(columns, opts.label_column, LABEL_NAMES, "--label-column", where, required=fmt != "text")
    classes = _classes(splits, label_col, where) if label_col else []
    if label_col and text_col:
        _no_empty_texts(splits, text_col, where)
    out = {}
    for split, ds in splits.items():
        keep = [c for c in (text_col, label_col) if c]
        ds = ds.select_columns(keep).rename_columns({text_col: "text", **({label_col: "label"} if label_col else {})})
        if label_col:
            import datasets

            ds = ds.cast_column("label", datasets.ClassLabel(names=classes))
        out[split] = ds
    return out, classes


def _no_empty_texts(splits: dict[str, Any], text_col: str, where: dict[str, str]) -> None:
    """A labelled text that is empty (or only spaces) gives a model nothing to classify: refuse it,
    naming the row (1-based, after any header), rather than train on padding alone."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for split, ds in splits.items():
        column = ds.data.column(text_col)
        if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
            continue
        empty = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(pc.fill_null(column, ""))), 0)
        if pc.any(empty).as_py():
            row = pc.index(empty, True).as_py() + 1
            raise UserError(f"the text in row {row} is empty", where=where.get(split, ""),
                            hint="remove empty sentences from the source, or fill them in")


def _column(columns: list[str], chosen: str | None, defaults: tuple[str, ...], flag: str, where: dict[str, str],
            required: bool = True, first: bool = False) -> str | None:
    file = next(iter(where.values()))
    if chosen is not None:
        if chosen not in columns:
            raise UserError(f"no column '{chosen}' (columns: {', '.join(columns)})", where=file, hint=f"check {flag}")
        return chosen
    found = next((c for c in defaults if c in columns), columns[0] if first and columns else None)
    if found is None and required:
        raise UserError(f"no column named {' or '.join(defaults[:3])} (columns: {', '.join(columns)})", where=file,
                        hint=f"name it with {flag}")
    return found


def _classes(splits: dict[str, Any], label_col: str, where: dict[str, str]) -> list[str]:
    """Class names 0..max: labels must be non-negative integers (a ClassLabel keeps its own names). Read
    through Arrow compute, so the labels of a large table are never Python objects."""
    import pyarrow as pa
    import pyarrow.compute as pc

    feature = next(iter(splits.values())).features[label_col]
    if type(feature).__name__ == "ClassLabel":
        return list(feature.names)
    top = -1
    for split, ds in splits.items():
        column = ds.data.column(label_col)
        bad = None
        if not pa.types.is_integer(column.type):  # mixed JSON or quoted CSV: digits only, else the first culprit
            values = list(ds[label_col])  # decoded (datasets keeps mixed JSON values as JSON text)
            bad = next((n for n, v in enumerate(values, 1) if not str(v).isdigit() or isinstance(v, bool)), None)
            if bad is None:
                column = pa.chunked_array([pa.array([int(v) for v in values], pa.int64())])
                splits[split] = ds.cast_column(label_col, _int_feature())
            else:
                raise UserError(f"label {values[bad - 1]!r} in row {bad} is not a non-negative integer",
                                where=where.get(split, ""), hint="labels must be class numbers 0, 1, ...")
        elif len(column) and pc.min(column).as_py() < 0:
            bad = int(pc.index(column, pc.min(column)).as_py()) + 1
        if bad is not None:
            value = column[bad - 1].as_py() if bad <= len(column) else None
            raise UserError(f"label {value!r} in row {bad} is not a non-negative integer", where=where.get(split, ""),
                            hint="labels must be class numbers 0, 1, ...")
        if len(column):
            top = max(top, int(pc.max(column).as_py()))
    return [str(i) for i in range(top + 1)]


def _int_feature() -> Any:
    import datasets

    return datasets.Value("int64")


def read_hf(source: str, opts: Options) -> Read:
    """A `save_to_disk` folder (`load_from_disk`), else `load_dataset(source)`: a local dataset folder or
    script, or a hub id (the only case that goes online). `trust_remote_code` stays off."""
    import datasets

    path = Path(source)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else []
    try:
        if path.is_dir() and any((path / n).is_file() for n in ("dataset_dict.json", "state.json")):
            loaded = datasets.load_from_disk(str(path))
        else:
            loaded = datasets.load_dataset(source, cache_dir=str(opts.cache_dir / "hf-cache"))
    except (FileNotFoundError, ValueError, datasets.exceptions.DatasetNotFoundError) as err:
        raise UserError(f"cannot load as a Hugging Face dataset ({str(err).splitlines()[0][:200]})",
                        where=source) from None
    splits = dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"all": loaded}
    by_test_last = sorted(splits.items(), key=lambda kv: kv[0] == "test")  # "test" wins over "validation"
    splits = {("test" if split_of(k) == "test" else "train" if split_of(k) == "train" else k): v
              for k, v in by_test_last}
    if set(splits) - {"train", "test"}:
        splits = {"train" if k == "all" else k: v for k, v in splits.items() if k in ("train", "test", "all")}
    image_col = next((c for c in IMAGE_NAMES if c in splits["train" if "train" in splits else next(iter(splits))]
                      .column_names), None) if opts.text_column is None else None
    if image_col:
        return _hf_images(splits, image_col, opts, source, files)
    splits, classes = normalise(splits, opts, dict.fromkeys(splits, source), "hf")
    return Read(splits, files, classes, "text")


def _hf_images(splits: dict[str, Any], image_col: str, opts: Options, source: str, files: list[Path]) -> Read:
    """Images (PIL or arrays) to uint8 [C, H, W] arrays, as the other image formats store them."""
    from snnctl.data.formats import image_features

    label_col = _column(splits[next(iter(splits))].column_names, opts.label_column, LABEL_NAMES, "--label-column",
                        dict.fromkeys(splits, source))
    classes = _classes(splits, str(label_col), dict.fromkeys(splits, source))

    def chw(img: Any) -> np.ndarray:
        arr = np.asarray(img, dtype=np.uint8)
        return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)

    shape = chw(splits[next(iter(splits))][0][image_col]).shape
    out = {}
    for split, ds in splits.items():
        out[split] = ds.map(lambda row: {"x": chw(row[image_col]), "label": row[label_col]},
                            remove_columns=ds.column_names, features=image_features(shape, classes),
                            cache_file_name=str(opts.cache_dir / f"hf-map-{split}.arrow"))
    return Read(out, files, classes, "image")
