"""The plug-in's own test: agentray's contract checker on the family."""

from agentray.testing.env_check import assert_env_ok


def test_the_treasure_family_keeps_the_env_contract():
    report = assert_env_ok("treasure", {"rooms": 5, "n_train": 10, "n_test": 5}, tasks=5)
    assert [c.name for c in report.checks if c.ok] == [c.name for c in report.checks]
