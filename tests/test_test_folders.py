"""The test suite's own disk rule (tests/conftest.py, module_tmp_path_factory, and pytest.ini): a module's shared
fixture folder is removed once the module's tests have passed, and kept when one of them failed, as pytest keeps
a failed test's tmp_path. A full run writes several GB; a CI run once ran out of space."""
import os

# The inner session takes the real fixture and hook from tests/conftest.py, and pytest.ini's retention settings.
INNER_CONFTEST = '''
import sys
sys.path.insert(0, %r)
from tests.conftest import module_tmp_path_factory, pytest_runtest_makereport  # noqa: F401
'''
INNER_MODULE = '''
import pytest

@pytest.fixture(scope="module")
def shared(module_tmp_path_factory):
    folder = module_tmp_path_factory.mktemp("shared")
    (folder / "checkpoint.model").write_bytes(b"0" * 1000)
    return folder

def test_first(shared):
    assert (shared / "checkpoint.model").is_file()

def test_second(shared):
    assert %s
'''
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _inner_run(pytester, passes: bool):
    pytester.makeconftest(INNER_CONFTEST % REPO)
    with open(os.path.join(REPO, "pytest.ini")) as f:
        pytester.makeini(f.read())
    pytester.makepyfile(test_inner=INNER_MODULE % ("True" if passes else "False"))
    basetemp = pytester.path / "basetemp"
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--basetemp=%s" % basetemp)
    return result, basetemp


def _module_folders(basetemp):
    """The inner module's folders (not pytest's 'current' link to the newest)."""
    return sorted(p.name for p in basetemp.iterdir() if p.name.startswith("test_inner") and not p.is_symlink())


def test_a_passing_module_leaves_no_folder(pytester):
    result, basetemp = _inner_run(pytester, passes=True)
    result.assert_outcomes(passed=2)
    assert _module_folders(basetemp) == []


def test_a_failing_module_keeps_its_folder_for_a_look(pytester):
    result, basetemp = _inner_run(pytester, passes=False)
    result.assert_outcomes(passed=1, failed=1)
    kept = _module_folders(basetemp)
    assert len(kept) == 1
    assert (basetemp / kept[0] / "shared" / "checkpoint.model").is_file()


def test_the_suite_runs_under_the_rule(pytestconfig):
    """pytest.ini is the file this run reads (a run from another folder would miss the rule)."""
    assert pytestconfig.getini("tmp_path_retention_policy") == "failed"
    assert int(pytestconfig.getini("tmp_path_retention_count")) == 1
