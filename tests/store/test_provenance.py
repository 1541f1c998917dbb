"""Code provenance (harness/core/provenance.py): the commit, dirty flag and diff hash a run
records, what changed since a commit, and never a crash without git or outside a checkout."""


from harness.core import provenance
from tests.fakes import git


def test_the_code_state_is_the_commit_the_dirty_flag_and_a_hash_of_the_diff(checkout):
    root, _ = checkout
    clean = provenance.code_state(root)
    assert clean == {"git_commit": git(root, "rev-parse", "--short", "HEAD"),
                     "git_dirty": False, "git_diff_hash": None}
    (root / "harness" / "a.py").write_text("A = 3\n")
    edited = provenance.code_state(root)
    assert edited["git_dirty"] and len(edited["git_diff_hash"]) == 16
    (root / "harness" / "new.py").write_text("B = 1\n")  # untracked files count by name
    added = provenance.code_state(root)
    assert added["git_dirty"] and added["git_diff_hash"] != edited["git_diff_hash"]
    (root / "harness" / "new.py").write_text("B = 2\n")
    assert provenance.code_state(root) == added  # ... not by content


def test_drift_says_what_changed_since_a_commit(checkout):
    root, first = checkout
    stale = provenance.drift(first, root)
    assert stale.stale and stale.text.startswith(f"trained at commit {first}; harness/")
    assert "1 file changed" in stale.text
    assert provenance.drift(provenance.head_commit(root), root) == provenance.Drift(
        provenance.head_commit(root), False, "")
    assert provenance.drift("abc1234", root).stale  # not in this checkout: cannot be trusted


def test_without_git_or_a_checkout_provenance_cannot_be_checked(tmp_path, monkeypatch):
    assert provenance.code_state(tmp_path) == {"git_commit": "unknown", "git_dirty": None,
                                               "git_diff_hash": None}
    assert provenance.drift("abc1234", tmp_path).stale is None
    monkeypatch.setenv("PATH", str(tmp_path))  # no git at all
    assert provenance.code_state()["git_commit"] == "unknown"
    unchecked = provenance.drift("abc1234")
    assert unchecked.stale is None and "cannot be checked" in unchecked.text
