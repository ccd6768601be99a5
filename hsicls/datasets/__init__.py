"""Public benchmark scenes: a declarative registry and checksummed downloads."""

from .download import default_data_dir, download_dataset, download_file, sha256_file
from .registry import DATASETS, DatasetInfo, RemoteFile, get_dataset, list_datasets

__all__ = [
    "DATASETS", "DatasetInfo", "RemoteFile", "default_data_dir", "download_dataset", "download_file",
    "get_dataset", "list_datasets", "sha256_file",
]
