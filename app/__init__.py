"""The application around the `gpt` library: what serves the command line (main.py, generate.py).

Parsers and one-line errors (cli), how arguments become a run's settings (profiles), the comparison grid
(experiments), sampling views (sampling_view) and attention maps (attention_maps). `gpt/` never imports
this package.
"""
