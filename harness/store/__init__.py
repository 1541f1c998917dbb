"""Where runs live: the run store (a run's identity is its configuration), the name of every
file in and beside a run (paths), the run directory's records, who is on a run (locks, job
records), and moving runs of older layouts in. It needs only the core, so every wing above may
ask it where a run's files are."""
