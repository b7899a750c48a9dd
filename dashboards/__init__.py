"""``stepscope dashboard``: a Streamlit app over one job's dataset, analyses and findings.

The app computes nothing of its own: it reads the job dataset (``analyzer.ingest``), the
analyses (``analyzer.analyses``) and the report model (``stepscope.report.model``), and only
filters and downsamples what it shows.
"""
