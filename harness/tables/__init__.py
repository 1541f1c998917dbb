"""The paper's tables as data and the one pipeline that builds them: the catalogue, its rows
as gin files, the runs behind them, wide and long table kinds, the renderer, `harness.compare`,
`harness.diff`, the compute plan and the cluster launcher. `python -m harness.tables` is
`make tableN`."""
