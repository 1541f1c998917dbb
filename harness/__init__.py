"""FreeTickets bench: one gin-configured harness that trains, evaluates and compares the
efficient ensembles of FreeTickets (ICLR 2022). The wings, bottom up: core, store, data,
kernels, engine, flops, models, evaluation, (methods/), experiment, tables, paper, bench;
the modules here are the thin entry points of the documented commands."""
