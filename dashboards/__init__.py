"""``stepscope dashboard``: a Streamlit app over one job's report and its drill-downs.

The app judges and analyses nothing itself: it shows the typed report of the report layer's
one call (``stepscope.report.analyze``: findings, metrics, chart series) and, for what it
zooms into (system metrics over a time window, one step's timeline), the job's typed
queries; it only filters and downsamples what it shows.
"""
