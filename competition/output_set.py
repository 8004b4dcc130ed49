"""The study's output set with a manifest: ``study.json``, ``study.md``, ``study.png`` written as one set
(``nnunet_genesis.io.atomic.OutputSet``: every member to a temporary sibling first, then all renamed into place;
a failure while writing leaves every old member as it was), then the manifest (``{member: sha256}``) written
last, atomically.

A crash between the renames (a killed process, a power cut) would leave old and new members side by side;
the manifest then no longer matches, which :func:`set_problems` reports and the next write repairs. Readers
that need a consistent set call :func:`set_problems` first. :func:`replace_folder` swaps a step's whole
output folder (a prediction, an evaluation) into place.
"""
import os
from typing import Callable, Dict, List

from nnunet_genesis.io.atomic import output_set, write_json_atomic
from nnunet_genesis.io.fingerprint import file_sha256


def write_output_set(folder: str, writers: Dict[str, Callable[[str], None]], manifest: str) -> List[str]:
    """Write each member ``name`` with ``writers[name](temporary path)``, rename them all into place, then
    write the manifest. Returns the members' paths. WriteError (naming the member) when a member cannot be
    written: then nothing in ``folder`` has changed."""
    with output_set(folder) as files:
        for name, write in writers.items():
            files.write(name, write)
    digests = {name: file_sha256(os.path.join(folder, name)) for name in writers}
    write_json_atomic({"members": digests, "written_last": True}, os.path.join(folder, manifest))
    return [os.path.join(folder, name) for name in writers]


def set_problems(folder: str, manifest: str) -> List[str]:
    """Why the set in ``folder`` is not the one its manifest lists (empty: consistent)."""
    import json
    path = os.path.join(folder, manifest)
    if not os.path.isfile(path):
        return ["%s does not exist" % path]
    try:
        with open(path) as f:
            members = json.load(f)["members"]
    except (ValueError, KeyError, TypeError) as error:
        return ["%s is damaged (%s)" % (path, error)]
    problems = []
    for name, digest in sorted(members.items()):
        member = os.path.join(folder, name)
        if not os.path.isfile(member):
            problems.append("%s is missing" % member)
        elif file_sha256(member) != digest:
            problems.append("%s is not the one %s lists" % (member, manifest))
    return problems


def replace_folder(new: str, final: str) -> str:
    """Put the finished folder ``new`` in the place of ``final`` (a step's whole output: all old or all
    new). The old folder is renamed aside first and removed only once ``new`` is in place."""
    import shutil
    old = final + ".old"
    if os.path.lexists(old):
        shutil.rmtree(old)
    if os.path.lexists(final):
        os.rename(final, old)
    os.rename(new, final)
    if os.path.lexists(old):
        shutil.rmtree(old)
    return final
