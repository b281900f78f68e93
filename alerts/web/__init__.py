"""The planners' console and the JSON API of the alerts service (FastAPI, Jinja2 templates, uPlot charts)."""
