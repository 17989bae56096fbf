"""Real data: ``<root>/<class>/<image>`` folders, with optional per-pixel object label maps.

Layout::

    <root>/<class>/<image>.{png,jpg,jpeg,bmp}        (extension case-insensitive)
    <labels_root>/<class>/<image stem>.png           (optional; single-channel, values = ADE20K
                                                      indices, 0 = unlabelled)

Classes are the sub-folders of ``root`` in sorted order (hidden ones skipped); images within a class
are sorted by file name, so the order, the ids and the split are deterministic. Other files are
ignored.

Entry points:
    * :func:`load_image_folder` decodes everything eagerly with PIL into an :class:`ImageSet`
      (small data); it validates every file before returning anything.
    * :func:`load_image_folder_split` decodes only one part of the 6:2:2 split (e.g. the test
      images an evaluation needs), equal to ``load_image_folder(...).split(seed)[part]``.
    * :class:`ImageFolder` lists the files (validating the layout and that every label map exists)
      and decodes lazily in a ``tf.data`` pipeline with ``tf.io.decode_image`` (large data).

Resizing to ``image_size x image_size``: images bilinear (PIL's filter, antialiased when
shrinking; TensorFlow's ``antialias=True`` in the lazy path, equal up to rounding), label maps
nearest neighbour. Label maps are read with PIL in both paths (8-bit grey, palette indices, or
16-bit values <= 255) so both paths see the same indices.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
from PIL import Image

from .ade20k import name_of
from .imageset import ImageSet, split_indices

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow as tf

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp")
_LABEL_MODES = ("L", "P", "1", "I", "I;16", "I;16B", "I;16L")


@dataclass
class _Listing:
    class_names: list[str]
    files: list[Path]
    labels: np.ndarray
    label_files: list[Path] | None
    ids: list[str]


def _check_dir(path: Path, what: str) -> None:
    if not path.exists():
        raise FileNotFoundError(f"{what} {path} does not exist")
    if not path.is_dir():
        raise NotADirectoryError(f"{what} {path} is not a directory")


def _scan(root: str | os.PathLike, labels_root: str | os.PathLike | None) -> _Listing:
    """List classes, images and label maps; raise on a bad layout before decoding anything."""
    root = Path(root)
    _check_dir(root, "image folder")
    if labels_root is not None:
        labels_root = Path(labels_root)
        _check_dir(labels_root, "label map folder")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise ValueError(
            f"image folder {root} holds no class folders (expected <root>/<class>/<image>)")
    files: list[Path] = []
    labels: list[int] = []
    label_files: list[Path] = []
    for k, name in enumerate(classes):
        found = sorted((p for p in (root / name).iterdir()
                        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS),
                       key=lambda p: p.name)
        if not found:
            raise ValueError(f"class folder {root / name} holds no images "
                             f"(accepted extensions: {', '.join(IMAGE_EXTENSIONS)})")
        for path in found:
            if labels_root is not None:
                label_path = labels_root / name / f"{path.stem}.png"
                if not label_path.is_file():
                    raise FileNotFoundError(
                        f"label map {label_path} for image {path} does not exist")
                label_files.append(label_path)
        files.extend(found)
        labels.extend([k] * len(found))
    return _Listing(
        class_names=classes,
        files=files,
        labels=np.asarray(labels, np.int64),
        label_files=label_files if labels_root is not None else None,
        ids=[p.relative_to(root).as_posix() for p in files],
    )


def _check_image_size(image_size: int | None) -> None:
    if image_size is not None and (isinstance(image_size, bool) or
                                   not isinstance(image_size, (int, np.integer)) or image_size < 1):
        raise ValueError(f"image_size must be a positive integer or None, got {image_size!r}")


def _read_image(path: Path, image_size: int | None) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode one image to ``(H, W, 3)`` uint8 (resized bilinearly when ``image_size``).

    Returns:
        The pixels and the native ``(width, height)``.
    """
    try:
        with Image.open(path) as im:
            rgb = im.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise ValueError(f"cannot read image {path}: {err} (accepted: image files PIL can decode "
                         f"with extension {', '.join(IMAGE_EXTENSIONS)})") from err
    native = rgb.size
    if image_size is not None and rgb.size != (image_size, image_size):
        rgb = rgb.resize((image_size, image_size), Image.Resampling.BILINEAR)
    return np.asarray(rgb, np.uint8), native


def read_label_map(path: str | os.PathLike, expected_size: tuple[int, int] | None = None,
                   image_path: str | os.PathLike | None = None,
                   image_size: int | None = None) -> np.ndarray:
    """Read a single-channel label-map PNG to ``(H, W)`` uint8.

    Args:
        path: The PNG; mode L (8-bit grey), P (palette indices), 1, or I/I;16 with values <= 255.
        expected_size: ``(width, height)`` of its image; a different size raises.
        image_path: The image, named in the size error.
        image_size: Resize (nearest neighbour) to a square of this side.

    Returns:
        ``(H, W)`` uint8 object indices.

    Raises:
        ValueError: If the file cannot be read, is not single-channel, holds values > 255 or its
            size differs from ``expected_size`` (naming both sizes and the file).
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            mode, size = im.mode, im.size
            if mode not in _LABEL_MODES:
                raise ValueError(f"label map {path} must be a single-channel PNG (mode L, P or "
                                 f"16-bit grey), got mode {mode}")
            if expected_size is not None and size != tuple(expected_size):
                raise ValueError(
                    f"label map {path} is {size[0]}x{size[1]} (WxH) but its image "
                    f"{image_path if image_path is not None else ''} is "
                    f"{expected_size[0]}x{expected_size[1]}")
            if image_size is not None and size != (image_size, image_size):
                im = im.resize((image_size, image_size), Image.Resampling.NEAREST)
            values = np.asarray(im)
    except (OSError, SyntaxError, Image.DecompressionBombError) as err:
        raise ValueError(f"cannot read label map {path}: {err}") from err
    if values.dtype == bool:
        values = values.astype(np.uint8)
    if values.size and values.max() > 255:
        raise ValueError(f"label map {path} holds value {int(values.max())} > 255")
    return values.astype(np.uint8)


def load_image_folder(
    root: str | os.PathLike,
    labels_root: str | os.PathLike | None = None,
    image_size: int | None = None,
    progress: bool = False,
) -> ImageSet:
    """Decode ``<root>/<class>/<image>`` (and label maps) eagerly into an :class:`ImageSet`.

    Args:
        root: The image folder.
        labels_root: Optional folder of label maps ``<labels_root>/<class>/<image stem>.png``.
        image_size: Resize to ``image_size x image_size`` (images bilinear, label maps nearest);
            None keeps the sizes, which must then all be equal.
        progress: Show a ``tqdm`` progress bar on stderr while decoding.

    Returns:
        The ImageSet; ``ids`` are the paths relative to ``root`` (``"<class>/<file>"``),
        ``object_names`` the indices found in the label maps, ``discriminative`` empty.

    Raises:
        FileNotFoundError: If ``root``/``labels_root`` or a label map is missing (naming the path).
        ValueError: If a class folder holds no images, an image or label map cannot be read, a
            label map's size differs from its image's, or (``image_size=None``) sizes differ; the
            message names the file. Everything is validated before anything is returned.
    """
    _check_image_size(image_size)
    listing = _scan(root, labels_root)
    return _decode(listing, np.arange(len(listing.files)), image_size, progress, f"reading {root}")


def list_image_folder(root: str | os.PathLike) -> tuple[list[str], list[str], np.ndarray]:
    """List ``<root>/<class>/<image>`` without decoding anything.

    Returns:
        ``(class names, ids, labels)``: the sorted class folders, the image paths relative to
        ``root`` (class-major, sorted by name) and each image's class index, exactly as
        :func:`load_image_folder` orders them.

    Raises:
        FileNotFoundError, NotADirectoryError, ValueError: As :func:`load_image_folder` for the
            layout (missing folder, no class folders, an empty class).
    """
    listing = _scan(root, None)
    return listing.class_names, listing.ids, listing.labels


#: Names of the parts of the 6:2:2 split, in the order of :func:`split_indices`.
SPLIT_PARTS: tuple[str, ...] = ("train", "val", "test")


def load_image_folder_split(
    root: str | os.PathLike,
    part: str,
    seed: int = 0,
    labels_root: str | os.PathLike | None = None,
    image_size: int | None = None,
    progress: bool = False,
) -> tuple[ImageSet, dict[str, int]]:
    """Decode only one part of the folder's 6:2:2 split (stratified per class, see ``split_indices``).

    The result equals ``load_image_folder(root, labels_root, image_size).split(seed)[k]`` for
    ``part == SPLIT_PARTS[k]`` (same images, labels, label maps, ids and class names; only
    ``object_names`` lists just the indices found in this part's label maps), but decodes only
    that part, e.g. the test images an evaluation needs.

    Args:
        root: The image folder.
        part: ``"train"``, ``"val"`` or ``"test"``.
        seed: Seed of the split.
        labels_root, image_size, progress: As in :func:`load_image_folder`.

    Returns:
        ``(images of the part, counts)``: ``counts`` maps each part to its number of images;
        the ImageSet's ``class_names`` are all of the folder's classes.

    Raises:
        ValueError: An unknown ``part`` (naming the accepted ones), an empty part; otherwise as
            :func:`load_image_folder` (only the files of ``part`` are decoded).
    """
    if part not in SPLIT_PARTS:
        raise ValueError(f"unknown split part {part!r}; accepted: {list(SPLIT_PARTS)}")
    _check_image_size(image_size)
    listing = _scan(root, labels_root)
    parts = split_indices(listing.labels, seed)
    counts = {name: int(len(idx)) for name, idx in zip(SPLIT_PARTS, parts)}
    chosen = parts[SPLIT_PARTS.index(part)]
    if not len(chosen):
        raise ValueError(f"the {part} part of image folder {root} is empty (split seed {seed}, "
                         f"counts {counts}); a class needs at least 4 images to appear in every part")
    return _decode(listing, chosen, image_size, progress, f"reading {part} images of {root}"), counts


def _decode(listing: _Listing, indices: np.ndarray, image_size: int | None, progress: bool,
            desc: str) -> ImageSet:
    """Decode the files ``indices`` of a listing (in that order) into an ImageSet."""
    from tqdm.auto import tqdm

    images: list[np.ndarray] = []
    maps: list[np.ndarray] = []
    first: Path | None = None
    for i in tqdm(indices.tolist(), desc=desc, disable=not progress, leave=False, unit="img"):
        path = listing.files[i]
        image, native = _read_image(path, image_size)
        if image_size is None and images and image.shape != images[0].shape:
            raise ValueError(
                f"image {path} is {image.shape[1]}x{image.shape[0]} (WxH) but "
                f"{first} is {images[0].shape[1]}x{images[0].shape[0]}; "
                "pass image_size to resize them to one size")
        first = path if first is None else first
        images.append(image)
        if listing.label_files is not None:
            maps.append(read_label_map(listing.label_files[i], native, path, image_size))
    label_maps = np.stack(maps) if maps else None
    found = np.unique(label_maps) if label_maps is not None else np.zeros(0, np.uint8)
    return ImageSet(
        images=np.stack(images),
        labels=listing.labels[indices],
        class_names=listing.class_names,
        label_maps=label_maps,
        object_names={int(i): name_of(int(i)) for i in found},
        discriminative={},
        ids=[listing.ids[i] for i in indices],
    )


class ImageFolder:
    """Lazy access to ``<root>/<class>/<image>`` for data too large to hold in memory.

    Construction lists and validates the layout (missing folders, empty classes, missing label
    maps) but decodes nothing; :meth:`dataset` decodes in a ``tf.data`` pipeline.

    Attributes:
        root: The image folder.
        labels_root: The label-map folder or None.
        class_names: Sorted class folder names.
        files: Image paths (str), class-major, sorted by name within a class.
        labels: ``(N,)`` int64 class index of each file.
        label_files: Label-map paths (str) parallel to ``files``, or None.
        ids: Paths relative to ``root``.
    """

    def __init__(self, root: str | os.PathLike, labels_root: str | os.PathLike | None = None):
        listing = _scan(root, labels_root)
        self.root = Path(root)
        self.labels_root = None if labels_root is None else Path(labels_root)
        self.class_names: list[str] = listing.class_names
        self.files: list[str] = [str(p) for p in listing.files]
        self.labels: np.ndarray = listing.labels
        self.label_files: list[str] | None = (
            None if listing.label_files is None else [str(p) for p in listing.label_files])
        self.ids: list[str] = listing.ids

    def __len__(self) -> int:
        return len(self.files)

    def split(self, seed: int = 0) -> tuple[list[int], list[int], list[int]]:
        """6:2:2 train/validation/test indices, stratified per class (see ``split_indices``)."""
        return tuple(part.tolist() for part in split_indices(self.labels, seed))  # type: ignore

    def verify(self, indices: Sequence[int] | None = None) -> None:
        """Decode the selected images (default all) with PIL; raise ValueError naming a bad file.

        The lazy pipeline only meets a corrupt file when it reaches it; call this first to fail
        early with the file's name.
        """
        for i in range(len(self)) if indices is None else indices:
            _, size = _read_image(Path(self.files[i]), None)
            if self.label_files is not None:
                read_label_map(self.label_files[i], size, self.files[i])

    def dataset(
        self,
        indices: Sequence[int] | np.ndarray,
        image_size: int,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        with_label_maps: bool = False,
    ) -> "tf.data.Dataset":
        """A batched ``tf.data.Dataset`` decoding the selected files lazily.

        Args:
            indices: Indices into ``files`` (e.g. one part of :meth:`split`).
            image_size: Side of the square output images (bilinear, antialiased).
            batch_size: Examples per batch (the last may be smaller).
            shuffle: Shuffle the file order (every epoch, deterministic given ``seed``).
            seed: Shuffle seed.
            with_label_maps: Also yield ``(B, S, S)`` uint8 label maps (nearest neighbour).

        Returns:
            ``(images (B, S, S, 3) float32 in [0, 1], labels (B,) int64)`` or
            ``(images, labels, label_maps)``. Images pass through uint8 after resizing, so for
            files already of the target size they equal :func:`load_image_folder` exactly.

        Raises:
            ValueError: On bad indices, sizes, or label maps requested without ``labels_root``.
        """
        import tensorflow as tf

        if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or (
                image_size < 1):
            raise ValueError(f"image_size must be a positive integer, got {image_size!r}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        idx = np.asarray(indices, np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise ValueError(f"indices must lie in [0, {len(self)}), got values in "
                             f"[{idx.min()}, {idx.max()}]")
        if with_label_maps and self.label_files is None:
            raise ValueError("with_label_maps=True but this ImageFolder has no labels_root")
        size = int(image_size)
        columns = [np.asarray([self.files[i] for i in idx], dtype=object).astype(str),
                   self.labels[idx]]
        if with_label_maps:
            columns.append(np.asarray([self.label_files[i] for i in idx], dtype=object).astype(str))
        ds = tf.data.Dataset.from_tensor_slices(tuple(columns))
        if shuffle and idx.size:
            ds = ds.shuffle(idx.size, seed=seed, reshuffle_each_iteration=True)

        def load(path, label, *label_path):
            raw = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
            native = tf.shape(raw)[:2]
            image = tf.image.resize(raw, [size, size], method="bilinear", antialias=True)
            image = tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)
            image = tf.ensure_shape(tf.cast(image, tf.float32) / 255.0, [size, size, 3])
            if not label_path:
                return image, label
            label_map = tf.numpy_function(_label_map_for_tf, [label_path[0], path, native, size],
                                          tf.uint8, stateful=False)
            return image, label, tf.ensure_shape(label_map, [size, size])

        ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return ds.batch(int(batch_size)).prefetch(tf.data.AUTOTUNE)


def _label_map_for_tf(label_path: bytes, image_path: bytes, native_hw: np.ndarray,
                      size: np.ndarray) -> np.ndarray:
    """``tf.numpy_function`` body: read a label map with PIL, check it against its image."""
    height, width = (int(v) for v in native_hw)
    return read_label_map(label_path.decode(), (width, height), image_path.decode(), int(size))
