"""The report files: one module per format, each reading only the typed report
(``stepscope.report.model``) and the caller's verdict (``verdict.Verdict``)."""
