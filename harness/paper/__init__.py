"""The paper regenerated: figures from the runs of the tables, and the static page of
`make paper`. `python -m harness.paper` builds the page."""
