"""The reports, one family: what they are built of, `markdown` (tables, headed tables, image
links, number formatting), `figures` (`save_figure`), `section` (`Section`, a section builder's
result), `intervals` (means and differences with bootstrap intervals over seeds and units); and
the reports: `comparison` (the comparison report of the checkpoints' evaluations), `figure3` (its
acceptability section), `loss_curves` (a training run's curves), `testbed` (the synthetic
testbed's report per scenario and its sweep)."""
