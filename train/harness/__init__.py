"""Running experiments: command line, output folders, checkpoints, sweeps, keys, progress, reports (train/__init__)."""
