"""The registered experiments, one package each; every one defines `EXPERIMENT` (`train.harness.cli.Experiment`)."""
