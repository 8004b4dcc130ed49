"""An output set (several files that belong together, e.g. study.json, study.md, study.png) written as a
whole, with a manifest written last.

``write_output_set(folder, writers, manifest)``:

1. every member is written to a temporary sibling (``.NAME.set.tmp``) first; a failure here (full disk,
   ``ulimit -f``, a plotting error) removes the temporaries and leaves every old member and the old
   manifest as they were: **all old**;
2. only when all are written, each temporary is renamed over its member (``os.replace``, atomic per file
   within one folder; renames do not write data, so the write limits that break step 1 cannot break it);
3. the manifest (``{member: sha256}``) is written last, atomically (``nnunet_genesis.atomic``): **all new**.

A crash between the renames of step 2 (a killed process, a power cut) would leave old and new members
side by side; the manifest then no longer matches, which :func:`set_problems` reports and the next
write repairs. Readers that need a consistent set call :func:`set_problems` first.

This is the study's own small helper; a generic one for every command is planned for
``nnunet_genesis/atomic.py`` (they should become one).
"""
import os
from typing import Callable, Dict, List

from nnunet_genesis.atomic import WriteError, _cause, write_json_atomic
from nnunet_genesis.fingerprint import file_sha256


def _temporary(folder: str, name: str) -> str:
    stem, ext = name.split(".", 1) if "." in name else (name, "")
    return os.path.join(folder, ".%s.set.tmp%s" % (stem, "." + ext if ext else ""))   # keeps the extension


def write_output_set(folder: str, writers: Dict[str, Callable[[str], None]], manifest: str) -> List[str]:
    """Write each member ``name`` with ``writers[name](temporary path)``, then rename them all into place,
    then the manifest. Returns the members' paths. WriteError (naming the member) when a member cannot
    be written: then nothing in ``folder`` has changed."""
    temporaries = {name: _temporary(folder, name) for name in writers}
    try:
        for name, write in writers.items():
            try:
                write(temporaries[name])
            except WriteError:
                raise
            except OSError as error:
                raise WriteError(os.path.join(folder, name), _cause(error, temporaries[name]), error.errno) from error
        for name in writers:
            os.replace(temporaries[name], os.path.join(folder, name))
    finally:
        for tmp in temporaries.values():
            if os.path.lexists(tmp):
                try:
                    os.remove(tmp)
                except OSError:
                    pass
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
