"""What the reports are built of: tables, figures and intervals shared by the comparison report
and the testbed report (`intervals`: means and paired differences with bootstrap intervals)."""
