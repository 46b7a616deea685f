"""What the reports are built of, shared by the comparison report and the testbed report:
`markdown` (tables, headed tables, image links, number formatting), `figures`
(`save_figure`), `section` (`Section`, a section builder's result), `intervals` (means and
paired differences with bootstrap intervals); and the reports' parts: `comparison` (the
comparison report), `acceptability` (its Figure 3 section), `loss_curves` (a training run's
curves)."""
