"""One experiment: its gin configuration parsed and checked, assembled (data + model +
method + suites), executed and recorded into its run directory, replayed, rescored or exported
without training."""
