"""Dashboard pages: each file is one Streamlit page script (see dashboards/ui.py PAGES)."""
