"""Parse each profiler output format once into columnar tables, cached as Parquet."""

from analyzer.ingest.dataset import JobDataset
from analyzer.ingest.pipeline import IngestResult, ingest, no_profiler_data

__all__ = ["IngestResult", "JobDataset", "ingest", "no_profiler_data"]
