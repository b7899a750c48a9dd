"""stepscope's analysis engine: sources → ingest → analyses.

Layers only reach down: ``sources`` lists and reads raw objects, ``ingest`` turns each
object into columnar tables (cached as Parquet) and bundles them in a ``JobDataset``,
``analyses`` are pure functions over that dataset. Rules, reports and the dashboard sit
above and only read what this package returns.
"""

__version__ = "0.1.0"
