"""The report layer: the typed report (``model``), built from a job and its rules' results
(``build``), and the one call from a source to it (``analyze``). The outputs (``stepscope.render``,
the CLI, the dashboard) read these models and nothing below them."""
