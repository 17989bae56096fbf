"""Data for the project: synthetic cities and landmarks with known answers, and real image folders.

Public API::

    ImageSet, split_indices                 # container and the 6:2:2 stratified split
    CityStyle, CitiesConfig, make_cities    # synthetic street scenes with planted objects
    make_landmarks                          # synthetic landmarks for embedding networks
    load_image_folder, ImageFolder          # <root>/<class>/<image> (+ optional label maps)
    ade20k                                  # ADE20K names <-> indices
"""

from . import ade20k
from .cities import (BACKGROUND, DEFAULT_CITIES, DEFAULT_SHARED, PLANTABLE, SHAREABLE, CitiesConfig,
                     CityStyle, make_cities)
from .folder import IMAGE_EXTENSIONS, ImageFolder, load_image_folder
from .imageset import ImageSet, split_indices
from .landmarks import LANDMARKS, MAX_LANDMARK_CLASSES, make_landmarks

__all__ = [
    "ade20k",
    "BACKGROUND",
    "CitiesConfig",
    "CityStyle",
    "DEFAULT_CITIES",
    "DEFAULT_SHARED",
    "IMAGE_EXTENSIONS",
    "ImageFolder",
    "ImageSet",
    "LANDMARKS",
    "MAX_LANDMARK_CLASSES",
    "PLANTABLE",
    "SHAREABLE",
    "load_image_folder",
    "make_cities",
    "make_landmarks",
    "split_indices",
]
