"""Presentation the outputs share: figure builders (plotly) that report.html and the
dashboard draw alike. Above the report (it reads the typed Report and the report's
measurements), below the outputs, which may all import it; nothing below imports plotly."""
