"""The bottom wing, which every other wing may use: the one user-error type and the
command-line contract of every entry point, registries, durable writes, safe loading of run
files, type checks of gin bindings, process-group helpers and the progress rule."""
