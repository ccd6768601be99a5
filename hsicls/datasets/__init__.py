"""Public benchmark scenes: a declarative registry and checksummed downloads."""

from .catalogue import ALIASES, DATASETS, DatasetInfo, RemoteFile, aliases_of, get_dataset, list_datasets
from .download import default_data_dir, download_dataset, download_file, import_file, import_folder, safe_extract, sha256_file
from .resolve import ResolvedScene, resolve_dataset

__all__ = [
    "ALIASES",
    "DATASETS",
    "DatasetInfo",
    "RemoteFile",
    "ResolvedScene",
    "aliases_of",
    "default_data_dir",
    "download_dataset",
    "download_file",
    "get_dataset",
    "import_file",
    "import_folder",
    "list_datasets",
    "resolve_dataset",
    "safe_extract",
    "sha256_file",
]
