"""`python -m harness.migrate_runs`: harness/store/migrate.py."""
import sys

from harness.store import migrate


def main(argv: list[str] | None = None) -> int:
    """harness/store/migrate.py's command, with every configurable registered first (a run's
    id needs them all, and the store's wing imports none: tests/test_architecture.py); not for
    the usage alone, which --help prints at once."""
    if "--help" not in (sys.argv[1:] if argv is None else argv):
        import harness.experiment.assemble  # noqa: F401
    return migrate.main(argv)


if __name__ == "__main__":
    sys.exit(main())
