"""The in-memory container shared by every data source, and the project's 6:2:2 split."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover - typing only; TensorFlow is imported lazily
    import tensorflow as tf

DEFAULT_FRACTIONS = (0.6, 0.2, 0.2)


def split_indices(
    labels: np.ndarray, seed: int = 0, fractions: Sequence[float] = DEFAULT_FRACTIONS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split example indices into train/validation/test, stratified per class.

    Within each class (in ascending class order) the indices are permuted with
    ``np.random.default_rng([seed, class])`` and cut at ``round(n * f0)`` and
    ``round(n * (f0 + f1))`` (half rounds up), so a class of 5 gives 3/1/1 and a class of 10 gives
    6/2/2. Every index lands in exactly one part. The result does not depend on the other classes.

    Args:
        labels: ``(N,)`` integer class labels (non-negative).
        seed: Seed of the permutation; the same seed gives the same split.
        fractions: Three non-negative fractions summing to 1 (train, validation, test).

    Returns:
        ``(train, val, test)``: three sorted ``int64`` index arrays into ``labels``.

    Raises:
        ValueError: If ``labels`` is not 1-D, holds negative values, or ``fractions`` is not three
            non-negative numbers summing to 1.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(
            f"fractions must be three non-negative numbers summing to 1, got {fractions}"
        )
    if labels.size and labels.min() < 0:
        raise ValueError(f"labels must be non-negative, got {int(labels.min())}")
    parts: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]] = ([], [], [])
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        members = np.random.default_rng([seed, int(cls)]).permutation(members)
        n = members.size
        cut1 = int(np.floor(n * fractions[0] + 0.5))
        cut2 = max(cut1, int(np.floor(n * (fractions[0] + fractions[1]) + 0.5)))
        for part, chunk in zip(parts, (members[:cut1], members[cut1:cut2], members[cut2:])):
            part.append(chunk)
    return tuple(  # type: ignore[return-value]
        np.sort(np.concatenate(part)).astype(np.int64) if part else np.zeros(0, np.int64)
        for part in parts
    )


@dataclass(eq=False)
class ImageSet:
    """Images with class labels and, optionally, per-pixel object label maps.

    Attributes:
        images: ``(N, H, W, 3)`` uint8 RGB images.
        labels: ``(N,)`` int64 class indices into ``class_names``.
        class_names: Name of each class.
        label_maps: ``(N, H, W)`` uint8 ADE20K object indices, or None. Synthetic data labels
            every pixel (no 0); 0 means "unlabelled" in real data.
        object_names: ADE20K index -> name, for the indices that can occur in ``label_maps``.
        discriminative: Class name -> names of the objects planted in that class (synthetic data
            only; empty for real data).
        ids: A stable id per image (``"city_a/000017"``, or the file path relative to the root).
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    label_maps: np.ndarray | None = None
    object_names: dict[int, str] = field(default_factory=dict)
    discriminative: dict[str, list[str]] = field(default_factory=dict)
    ids: list[str] | None = None

    def __post_init__(self) -> None:
        self.images = np.asarray(self.images)
        self.labels = np.asarray(self.labels).astype(np.int64, copy=False)
        self.class_names = list(self.class_names)
        n = self.images.shape[0] if self.images.ndim else 0
        if self.images.ndim != 4 or self.images.shape[-1] != 3 or self.images.dtype != np.uint8:
            raise ValueError(
                "images must be a (N, H, W, 3) uint8 array, got "
                f"shape {self.images.shape} dtype {self.images.dtype}"
            )
        if self.labels.shape != (n,):
            raise ValueError(f"labels must have shape ({n},), got {self.labels.shape}")
        if n and (self.labels.min() < 0 or self.labels.max() >= len(self.class_names)):
            raise ValueError(
                f"labels must lie in [0, {len(self.class_names)}) for classes {self.class_names}, "
                f"got values in [{self.labels.min()}, {self.labels.max()}]"
            )
        if self.label_maps is not None:
            self.label_maps = np.asarray(self.label_maps)
            if self.label_maps.shape != self.images.shape[:3] or self.label_maps.dtype != np.uint8:
                raise ValueError(
                    f"label_maps must be a {self.images.shape[:3]} uint8 array, got shape "
                    f"{self.label_maps.shape} dtype {self.label_maps.dtype}"
                )
        if self.ids is not None:
            self.ids = list(self.ids)
            if len(self.ids) != n:
                raise ValueError(f"ids must have {n} entries, got {len(self.ids)}")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, indices: Sequence[int] | np.ndarray) -> "ImageSet":
        """Return the images at ``indices`` (in that order), with the same metadata.

        Args:
            indices: Integer indices (or a boolean mask of length N).

        Returns:
            A new ImageSet holding copies of the selected rows.
        """
        idx = np.asarray(indices)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64, copy=False)
        return ImageSet(
            images=self.images[idx],
            labels=self.labels[idx],
            class_names=list(self.class_names),
            label_maps=None if self.label_maps is None else self.label_maps[idx],
            object_names=dict(self.object_names),
            discriminative={k: list(v) for k, v in self.discriminative.items()},
            ids=None if self.ids is None else [self.ids[i] for i in idx],
        )

    def split(self, seed: int = 0) -> tuple["ImageSet", "ImageSet", "ImageSet"]:
        """Split 6:2:2 into train/validation/test, stratified per class (see :func:`split_indices`).

        Args:
            seed: Seed of the split; the same seed gives the same split.

        Returns:
            ``(train, val, test)`` ImageSets.
        """
        train, val, test = split_indices(self.labels, seed=seed)
        return self.subset(train), self.subset(val), self.subset(test)

    def to_tf_dataset(
        self,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        with_label_maps: bool = False,
    ) -> "tf.data.Dataset":
        """Return a batched ``tf.data.Dataset`` over the images.

        Args:
            batch_size: Examples per batch (the last batch may be smaller).
            shuffle: Shuffle the whole set (reshuffled every epoch, deterministic given ``seed``).
            seed: Shuffle seed.
            with_label_maps: Also yield the ``(B, H, W)`` uint8 label maps.

        Returns:
            A dataset of ``(images, labels)`` or ``(images, labels, label_maps)`` where images are
            ``(B, H, W, 3)`` float32 in [0, 1] and labels ``(B,)`` int64.

        Raises:
            ValueError: If ``batch_size < 1`` or label maps are requested but absent.
        """
        import tensorflow as tf

        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        tensors: tuple[np.ndarray, ...] = (self.images, self.labels)
        if with_label_maps:
            if self.label_maps is None:
                raise ValueError("with_label_maps=True but this ImageSet has no label maps")
            tensors = tensors + (self.label_maps,)
        ds = tf.data.Dataset.from_tensor_slices(tensors)
        if shuffle and len(self):
            ds = ds.shuffle(len(self), seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(int(batch_size))

        def scale(images, *rest):
            return (tf.cast(images, tf.float32) / 255.0,) + rest

        return ds.map(scale, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
