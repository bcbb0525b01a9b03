"""Source readers for `snnctl data prepare`: each turns one source format into Hugging Face datasets.

Binary formats (IDX, CIFAR, N-MNIST, image folders) are read example by example through
`datasets.Dataset.from_generator`, so a source larger than memory streams into Arrow files; tabular
and text formats go through Hugging Face's own packaged builders (`load_dataset("csv", ...)`).
Every malformed source is a UserError naming the file and what was expected.
"""

from __future__ import annotations

import gzip
import io
import itertools
import pickle
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from snnctl.errors import UserError

FORMATS: tuple[str, ...] = ("idx", "imagefolder", "csv", "tsv", "jsonl", "parquet", "text", "cifar", "nmnist",
                             "dialogue", "hf")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
TABULAR = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".txt": "text"}
Progress = Callable[[int], None]


@dataclass
class Options:
    """What a reader may be told besides the source: column names and the event representation."""

    text_column: str | None = None
    label_column: str | None = None
    events: str = "frames"  # nmnist: "frames" (binned into T steps) or "raw" (events kept)
    T: int = 8
    cache_dir: Path = Path(".")
    progress: Progress = field(default=lambda n: None)


@dataclass
class Read:
    """A source read into splits ("train"/"test" when the source gives them, else "all")."""

    splits: dict[str, Any]  # split name -> datasets.Dataset
    files: list[Path]
    classes: list[str]
    modality: str  # "image", "text", "events" or "dialogue"
    info: dict[str, Any] = field(default_factory=dict)


def detect(source: Path) -> str:
    """The format of a local source, from its suffix or the files it holds; ambiguity is a user error.
    JSON lines whose first record has a `turns` list are dialogues (snnctl.data.dialogue)."""
    if source.is_file():
        fmt = TABULAR.get(source.suffix.lower())
        if fmt:
            return "dialogue" if fmt == "jsonl" and _dialogue().has_turns(source) else fmt
        if "idx" in source.name or "ubyte" in source.name:
            return "idx"
        raise UserError("cannot tell the format of this file", where=str(source), hint="pass --format")
    if not source.is_dir():
        raise UserError("no such file or folder", where=str(source),
                        hint="give a local path, or --format hf with a Hugging Face hub id")
    names = [p.name for p in source.iterdir()]
    checks = [
        ("hf", any(n in ("dataset_dict.json", "dataset_info.json", "state.json") for n in names)),
        ("idx", any("ubyte" in n for n in names)),
        ("nmnist", "events" in names or any(n.endswith(".bs2") for n in names)),
        ("cifar", any(n.startswith(("data_batch", "test_batch")) for n in names)),
        ("imagefolder", any((source / n).is_dir() and _images_in(source / n) for n in names)),
    ]
    for fmt, found in checks:
        if found:
            return fmt
    suffixes = {TABULAR[Path(n).suffix.lower()] for n in names if Path(n).suffix.lower() in TABULAR}
    if len(suffixes) == 1:
        fmt = suffixes.pop()
        return "dialogue" if fmt == "jsonl" and _dialogue().has_turns(source) else fmt
    raise UserError("cannot tell the format of this folder", where=str(source),
                    hint=f"pass --format ({', '.join(FORMATS)})")


def split_of(name: str) -> str | None:
    """train/test from a file name, as MNIST, CIFAR and GLUE name theirs."""
    low = name.lower()
    if any(k in low for k in ("t10k", "test", "dev", "valid")):
        return "test"
    if "train" in low or "data_batch" in low:
        return "train"
    return None


def image_features(shape: tuple[int, ...], classes: list[str]) -> Any:
    import datasets

    return datasets.Features({"x": datasets.Array3D(shape=shape, dtype="uint8"),
                              "label": datasets.ClassLabel(names=classes)})


def from_examples(examples: Callable[[], Iterator[dict[str, Any]]], features: Any, opts: Options) -> Any:
    """One split, streamed example by example into an Arrow file in the staging folder (memory-mapped
    when read back), so a source larger than memory never has to fit in it."""
    import datasets
    from datasets.arrow_writer import ArrowWriter

    opts.cache_dir.mkdir(parents=True, exist_ok=True)
    path = opts.cache_dir / f"split-{next(_serial)}.arrow"
    with ArrowWriter(features=features, path=str(path), writer_batch_size=1000) as writer:  # ~40 MB of frames
        for n, example in enumerate(examples(), 1):
            writer.write(features.encode_example(example))
            opts.progress(n)
        writer.finalize()
    return datasets.Dataset.from_file(str(path))


_serial = itertools.count()


# --- IDX (MNIST, Fashion-MNIST) -------------------------------------------------------------------


def _open(path: Path) -> io.BufferedIOBase:
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")  # type: ignore[return-value]


def idx_header(path: Path) -> tuple[int, ...]:
    """The dimensions an IDX file declares (unsigned bytes only), checked against the file's length."""
    try:
        with _open(path) as fh:
            head = fh.read(4)
            if len(head) == 0:
                raise UserError("empty file, expected an IDX file", where=str(path))
            if len(head) < 4 or head[:3] != b"\x00\x00\x08" or not 1 <= head[3] <= 4:
                raise UserError(f"not an IDX file of unsigned bytes (magic {head.hex()}, expected 0000080N)",
                                where=str(path))
            raw = fh.read(4 * head[3])
            if len(raw) < 4 * head[3]:
                raise UserError("truncated IDX header", where=str(path))
            dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4"))
            size = sum(len(chunk) for chunk in iter(lambda: fh.read(1 << 20), b""))
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise UserError(f"cannot read as IDX ({err})", where=str(path)) from None
    if size != int(np.prod(dims)):
        raise UserError(f"truncated IDX file: header says {'x'.join(map(str, dims))} = {int(np.prod(dims))} bytes "
                        f"of data, the file has {size}", where=str(path))
    return dims


def _idx_rows(path: Path, dims: tuple[int, ...]) -> Iterator[np.ndarray]:
    row = int(np.prod(dims[1:]))
    with _open(path) as fh:
        fh.read(4 + 4 * len(dims))
        for _ in range(dims[0]):
            yield np.frombuffer(fh.read(row), dtype=np.uint8).reshape(dims[1:])


def _idx_labels(path: Path) -> np.ndarray:
    with _open(path) as fh:
        fh.read(8)
        return np.frombuffer(fh.read(), dtype=np.uint8)


def read_idx(source: Path, opts: Options) -> Read:
    """Pairs of image and label IDX files (.gz or raw), train and test told apart by name."""
    files = [source] if source.is_file() else sorted(p for p in source.iterdir() if p.is_file() and "ubyte" in p.name)
    pairs: dict[str, dict[str, tuple[Path, tuple[int, ...]]]] = {}
    for path in files:
        dims = idx_header(path)
        split = split_of(path.name) or "all"
        pairs.setdefault(split, {})["labels" if len(dims) == 1 else "images"] = (path, dims)
    if not pairs:
        raise UserError("no IDX files (*-ubyte or *-ubyte.gz)", where=str(source))
    labels_all = []
    for split, pair in pairs.items():
        if set(pair) != {"images", "labels"}:
            missing = ({"images", "labels"} - set(pair)).pop()
            raise UserError(f"the {split} split has no {missing} file", where=str(pair[next(iter(pair))][0]),
                            hint="IDX data comes as an images file and a labels file per split")
        (img, idims), (lab, ldims) = pair["images"], pair["labels"]
        if idims[0] != ldims[0]:
            raise UserError(f"{idims[0]} images but {ldims[0]} labels in {lab.name}", where=str(img))
        labels_all.append(_idx_labels(lab))
    classes = [str(i) for i in range(max((int(a.max()) for a in labels_all if a.size), default=0) + 1)]
    splits = {}
    for split, pair in pairs.items():
        (img, idims), (lab, ldims) = pair["images"], pair["labels"]
        shape = (1, *idims[1:]) if len(idims) == 3 else tuple(idims[1:])
        labels = _idx_labels(lab)

        def examples(img: Path = img, idims: tuple[int, ...] = idims, labels: np.ndarray = labels,
                     shape: tuple[int, ...] = shape) -> Iterator[dict[str, Any]]:
            for x, y in zip(_idx_rows(img, idims), labels, strict=True):
                yield {"x": x.reshape(shape), "label": int(y)}

        splits[split] = from_examples(examples, image_features(shape, classes), opts)
    return Read(splits, [p for pair in pairs.values() for p, _ in pair.values()], classes, "image")


# --- image folders --------------------------------------------------------------------------------


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def read_imagefolder(source: Path, opts: Options) -> Read:
    """One subfolder per class (torchvision's ImageFolder); every image must have the first one's size."""
    from PIL import Image, UnidentifiedImageError

    if not source.is_dir():
        raise UserError("not a folder, expected one subfolder of images per class", where=str(source))
    by_class = {d.name: _images_in(d) for d in sorted(source.iterdir()) if d.is_dir()}
    by_class = {k: v for k, v in by_class.items() if v}
    if not by_class:
        raise UserError("no classes: expected one subfolder of PNG/JPEG images per class", where=str(source))
    classes = list(by_class)
    files = [p for paths in by_class.values() for p in paths]

    def pixels(path: Path) -> np.ndarray:
        try:
            with Image.open(path) as im:
                arr = np.asarray(im.convert("L" if im.mode in ("L", "1", "P", "I;16") else "RGB"))
        except (UnidentifiedImageError, OSError) as err:
            raise UserError(f"not a readable image ({err})", where=str(path)) from None
        return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)

    shape = pixels(files[0]).shape

    def examples() -> Iterator[dict[str, Any]]:
        for label, paths in enumerate(by_class.values()):
            for path in paths:
                x = pixels(path)
                if x.shape != shape:
                    raise UserError(f"image of shape {x.shape}, expected {shape} like {files[0].name}", where=str(path),
                                    hint="resize the images to one size")
                yield {"x": x, "label": label}

    return Read({"all": from_examples(examples, image_features(shape, classes), opts)}, files, classes, "image")


# --- CIFAR-10/100 ----------------------------------------------------------------------------------

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),  # how protocol 2 writes bytes from Python 3: str -> bytes, nothing more
}


class ArraysOnly(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays; any other class or function is refused, so a
    crafted file cannot run code (CIFAR's python batches are pickles)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name}")


def read_cifar_pickle(path: Path) -> dict[str, Any]:
    """One CIFAR python batch: a dict of arrays, lists and strings, read without running any code."""
    try:
        with path.open("rb") as fh:
            obj = ArraysOnly(fh, encoding="bytes").load()
    except pickle.UnpicklingError as err:
        raise UserError(f"CIFAR pickle holds {err}, expected only arrays, lists and strings", where=str(path),
                        hint="only the official CIFAR python batches are read") from None
    except Exception as err:  # junk bytes fail in many ways inside pickle; each means "not a batch"
        raise UserError(f"not a CIFAR python batch ({err or 'empty or truncated'})", where=str(path)) from None
    if not isinstance(obj, dict):
        raise UserError(f"CIFAR pickle holds a {type(obj).__name__}, expected a dict", where=str(path))
    out = {(k.decode() if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}
    for key, value in out.items():
        if isinstance(value, np.ndarray) and value.dtype == object:
            raise UserError(f"CIFAR pickle key '{key}' holds objects, expected an array of numbers", where=str(path))
    return out


def _cifar_python(source: Path, opts: Options) -> tuple[dict[str, list[Path]], list[str], Callable[..., Any]]:
    batches = sorted(p for p in source.iterdir() if p.name.startswith(("data_batch", "test_batch"))
                     or p.name in ("train", "test"))
    meta = next((source / n for n in ("batches.meta", "meta") if (source / n).is_file()), None)
    names = read_cifar_pickle(meta) if meta else {}
    classes = [c.decode() if isinstance(c, bytes) else str(c)
               for c in names.get("label_names", names.get("fine_label_names", []))]

    def records(path: Path) -> Iterator[tuple[np.ndarray, int]]:
        batch = read_cifar_pickle(path)
        key = "labels" if "labels" in batch else "fine_labels"
        if "data" not in batch or key not in batch:
            raise UserError("CIFAR batch without 'data' and 'labels'", where=str(path))
        data = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        yield from zip(data, (int(v) for v in batch[key]), strict=True)

    return _by_split(batches), classes, records


def _cifar_bin(source: Path, opts: Options) -> tuple[dict[str, list[Path]], list[str], Callable[..., Any]]:
    batches = sorted(source.glob("*.bin")) if source.is_dir() else [source]
    meta = next((p for p in source.glob("*.txt") if "meta" in p.name), None) if source.is_dir() else None
    classes = [ln.strip() for ln in meta.read_text().splitlines() if ln.strip()] if meta else []

    def records(path: Path) -> Iterator[tuple[np.ndarray, int]]:
        size = path.stat().st_size
        width = 3074 if path.name in ("train.bin", "test.bin") else 3073  # CIFAR-100: coarse and fine label
        if size == 0 or size % width:
            raise UserError(f"{size} bytes is not a whole number of {width}-byte CIFAR records", where=str(path))
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(width), b""):
                rec = np.frombuffer(chunk, dtype=np.uint8)
                yield rec[width - 3072:].reshape(3, 32, 32), int(rec[width - 3073])

    return _by_split(batches), classes, records


def _by_split(paths: list[Path]) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for p in paths:
        out.setdefault(split_of(p.name) or "all", []).append(p)
    return out


def read_cifar(source: Path, opts: Options) -> Read:
    """CIFAR-10/100 python batches (restricted unpickler) or binary .bin batches."""
    binary = source.is_file() or any(source.glob("*.bin"))
    splits_files, classes, records = (_cifar_bin if binary else _cifar_python)(source, opts)
    if not splits_files:
        raise UserError("no CIFAR batches (data_batch_*, test_batch or *.bin)", where=str(source))
    if not classes:
        top = max(label for paths in splits_files.values() for _, label in records(paths[0]))
        classes = [str(i) for i in range(max(top + 1, 100 if top >= 10 else 10))]
    splits = {}
    for split, paths in splits_files.items():
        def examples(paths: list[Path] = paths) -> Iterator[dict[str, Any]]:
            for path in paths:
                for x, y in records(path):
                    if y >= len(classes):
                        raise UserError(f"label {y} outside the {len(classes)} classes", where=str(path))
                    yield {"x": x, "label": y}

        splits[split] = from_examples(examples, image_features((3, 32, 32), classes), opts)
    return Read(splits, [p for ps in splits_files.values() for p in ps], classes, "image")


# --- N-MNIST events --------------------------------------------------------------------------------

SENSOR = (34, 34)


def read_events(path: Path) -> np.ndarray:
    """One N-MNIST file: 5 bytes an event -> a structured array of x, y, polarity p, time t (us)."""
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % 5:
        raise UserError(f"{raw.size} bytes is not a whole number of 5-byte N-MNIST events", where=str(path))
    ev = raw.reshape(-1, 5).astype(np.uint32)
    out = np.empty(len(ev), dtype=[("x", "u1"), ("y", "u1"), ("p", "u1"), ("t", "u4")])
    out["x"], out["y"], out["p"] = ev[:, 0], ev[:, 1], ev[:, 2] >> 7
    out["t"] = (ev[:, 2] & 0x7F) << 16 | ev[:, 3] << 8 | ev[:, 4]
    if out["x"].max() >= SENSOR[1] or out["y"].max() >= SENSOR[0]:
        raise UserError(f"event coordinates beyond the {SENSOR[0]}x{SENSOR[1]} N-MNIST sensor", where=str(path))
    return out


def bin_events(ev: Any, T: int) -> np.ndarray:
    """Counts of events per (time bin, polarity, y, x): T equal bins over the sample's own duration."""
    t = np.asarray(ev["t"], dtype=np.int64)
    frames = np.zeros((T, 2, *SENSOR), dtype=np.uint16)
    if t.size:
        span = int(t.max() - t.min()) + 1
        bins = np.minimum((t - t.min()) * T // span, T - 1)
        np.add.at(frames, (bins, np.asarray(ev["p"], np.int64), np.asarray(ev["y"], np.int64),
                           np.asarray(ev["x"], np.int64)), 1)
    return frames


def _nmnist_lists(source: Path) -> dict[str, list[tuple[Path, int]]]:
    """`train*.txt`/`test*.txt` lists of "<id>\\t<class>" (SLAYER's layout), else class subfolders."""
    if not source.is_dir():
        raise UserError("not a folder, expected N-MNIST event files with train/test lists or class folders",
                        where=str(source))
    events = source / "events" if (source / "events").is_dir() else source
    lists = {split_of(p.name): p for p in sorted(source.glob("*.txt")) if split_of(p.name)}
    out: dict[str, list[tuple[Path, int]]] = {}
    for split, path in lists.items():
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip() or line.startswith("#"):
                continue
            parts = line.split()
            if len(parts) != 2 or not parts[1].isdigit():
                raise UserError(f"line {n} is not '<id> <class>'", where=str(path))
            out.setdefault(str(split), []).append((events / f"{parts[0]}.bs2", int(parts[1])))
    if not out:
        for d in sorted(p for p in source.iterdir() if p.is_dir() and p.name.isdigit()):
            out.setdefault("all", []).extend((f, int(d.name)) for f in sorted(d.glob("*.b*")))
    if not out:
        raise UserError("no N-MNIST lists (train*.txt/test*.txt) or class folders 0..9", where=str(source))
    return out


def read_nmnist(source: Path, opts: Options) -> Read:
    """N-MNIST: frames binned into `T` steps at prepare time, or the raw events (binned when loaded)."""
    import datasets

    if opts.events not in ("frames", "raw"):
        raise UserError(f"unknown event representation '{opts.events}'", where="--events", hint="frames or raw")
    lists = _nmnist_lists(source)
    for pairs in lists.values():
        for path, _ in pairs:
            if not path.is_file():
                raise UserError("event file listed but missing", where=str(path))
    classes = [str(i) for i in range(max(y for pairs in lists.values() for _, y in pairs) + 1)]
    if opts.events == "frames":
        x_feature: Any = datasets.Array4D(shape=(opts.T, 2, *SENSOR), dtype="uint16")
    else:
        x_feature = {k: datasets.Sequence(datasets.Value(d)) for k, d in
                     (("x", "uint8"), ("y", "uint8"), ("p", "uint8"), ("t", "uint32"))}
    features = datasets.Features({"x": x_feature, "label": datasets.ClassLabel(names=classes)})
    splits = {}
    for split, pairs in lists.items():
        def examples(pairs: list[tuple[Path, int]] = pairs) -> Iterator[dict[str, Any]]:
            for path, y in pairs:
                ev = read_events(path)
                x = bin_events(ev, opts.T) if opts.events == "frames" else {k: ev[k] for k in ("x", "y", "p", "t")}
                yield {"x": x, "label": y}

        splits[split] = from_examples(examples, features, opts)
    info = {"events": opts.events, "sensor": list(SENSOR), **({"T": opts.T} if opts.events == "frames" else {})}
    return Read(splits, [p for pairs in lists.values() for p, _ in pairs], classes, "events", info)


# --- dialogues (snnctl.data.dialogue, which builds on this module) ------------------------------------


def _dialogue() -> Any:
    from snnctl.data import dialogue

    return dialogue


def read_dialogue(source: Path, opts: Options) -> Read:
    """One dialogue a line (Schema-Guided Dialogue's JSON): see snnctl.data.dialogue."""
    return _dialogue().read_dialogue(source, opts)


READERS: dict[str, Callable[[Path, Options], Read]] = {
    "idx": read_idx, "imagefolder": read_imagefolder, "cifar": read_cifar, "nmnist": read_nmnist,
    "dialogue": read_dialogue,
}
