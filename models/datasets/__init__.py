"""Data for the project: synthetic cities and landmarks with known answers, and real image folders.

Public API::

    ImageSet, split_indices                 # container and the 6:2:2 stratified split
    CityStyle, CitiesConfig, make_cities    # synthetic street scenes with planted objects
    make_landmarks                          # synthetic landmarks for embedding networks
    load_image_folder, ImageFolder          # <root>/<class>/<image> (+ optional label maps)
    load_image_folder_split                 # one part of a folder's 6:2:2 split
    list_image_folder                       # its classes and files, nothing decoded
    rebuild.rebuild_test_split              # the test split a model card's ``dataset`` describes
    twins.render_twins                      # the same scenes without planted objects (causal twins)
    balance.balanced_config, cue_statistics # cities whose cues are each necessary and balanced
    ade20k                                  # ADE20K names <-> indices
"""

from . import ade20k
from .cities import (BACKGROUND, DEFAULT_CITIES, DEFAULT_SHARED, PLANTABLE, SHAREABLE, CitiesConfig,
                     CityStyle, make_cities)
from .folder import (IMAGE_EXTENSIONS, SPLIT_PARTS, ImageFolder, list_image_folder, load_image_folder,
                     load_image_folder_split)
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
    "SPLIT_PARTS",
    "list_image_folder",
    "load_image_folder",
    "load_image_folder_split",
    "make_cities",
    "make_landmarks",
    "split_indices",
]
