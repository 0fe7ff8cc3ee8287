"""The state of a scan's output: where the files live, what the run is, and whether to resume.

One :class:`RunState` per results file ``PREFIX.models.gz``. It owns these paths:

``PREFIX.models.gz`` / ``PREFIX.models.json``
    A finished results file and its run description (inputs, options, range, size, CRC-32).
``PREFIX.models.gz.partial`` / ``PREFIX.models.gz.partial.json``
    A run in progress: complete gzip members of rows, and how far they go. Only when the run
    completes is the partial file renamed over ``PREFIX.models.gz``, so a finished result stays
    intact until a new run of it has completed.
``PREFIX.models.lock``
    Held (``flock``) by the one process writing this output; a second run on the same prefix
    refuses at once.

It decides, from these files and the request (new run, ``--resume``, ``--append``), what to do,
and checks the results file against its description before trusting it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from dataclasses import dataclass, field

from hlmm import __version__
from hlmm.io import InputError, OutputError, os_reason
from hlmm.results import MemberFile, file_crc, write_atomic

__all__ = ["RunState", "fingerprint", "differences", "load_description", "description_path"]


def description_path(models_path: str) -> str:
    """The run description of a results file: ``X.models.gz`` -> ``X.models.json``."""
    return (models_path[: -len(".gz")] if models_path.endswith(".gz") else models_path) + ".json"


#: Options that say which range of a genotype file a run covers: results of one analysis differ
#: in them when another range is appended (--append) ...
RANGE_OPTIONS = ("start", "end", "whole_chr")
#: ... and, when results are merged (hlmm_merge: other files or selections), also in the
#: chromosome and base-pair selection.
SELECTION_OPTIONS = RANGE_OPTIONS + ("chr", "from_bp", "to_bp")


def fingerprint(files: dict, options: dict) -> dict:
    """What a run is: its input files and the options that affect its results.

    Parameters
    ----------
    files : dict of str to (str or list of str or None)
        Input files by role. Genotype files (large) are identified by size and modification
        time, other files by the SHA-256 of their content.
    options : dict
        JSON-serialisable options.
    """
    inputs = {}
    for role, paths in files.items():
        if not paths:
            continue
        for k, path in enumerate([paths] if isinstance(paths, str) else paths):
            key = role if isinstance(paths, str) else f"{role}.{k}"
            try:
                if role.startswith(("genotypes", "random")) and not role.endswith("_txt"):
                    st = os.stat(path)
                    inputs[key] = {"path": os.path.abspath(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
                else:
                    digest = hashlib.sha256()
                    with open(path, "rb") as f:
                        while chunk := f.read(1 << 20):
                            digest.update(chunk)
                    inputs[key] = {"path": os.path.abspath(path), "sha256": digest.hexdigest()}
            except OSError as e:
                raise InputError(f"{role} file {path}: cannot read: {os_reason(e)}") from None
    return {"inputs": inputs, "options": options}


def differences(a: dict, b: dict, prefix: str = "") -> list:
    """Keys whose values differ between two nested dicts."""
    out = []
    for k in sorted(set(a) | set(b)):
        if isinstance(a.get(k), dict) and isinstance(b.get(k), dict):
            out += differences(a[k], b[k], f"{prefix}{k}.")
        elif a.get(k) != b.get(k):
            out.append(f"{prefix}{k}")
    return out


def load_description(path: str) -> dict:
    """Read a run description (JSON), as an :class:`InputError` if unreadable."""
    try:
        with open(path) as f:
            d = json.load(f)
        for key in ("run", "start", "stop", "bytes", "finished"):
            d[key]  # noqa: B018 - presence check
        return d
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"run description {path}: unreadable ({type(e).__name__}: {e})") from None


@dataclass
class RunState:
    """The files of one results file and the state of the run writing it.

    Parameters
    ----------
    prefix : str
        Output prefix; the results file is ``prefix + ".models.gz"``.
    """

    prefix: str
    state: dict = field(default_factory=dict)
    _lock_fd: int | None = None
    _file: MemberFile | None = None
    _owned: bool = False  # this process created or continued the partial files
    append_to: int | None = None

    @property
    def out(self) -> str:
        return self.prefix + ".models.gz"

    @property
    def out_desc(self) -> str:
        return self.prefix + ".models.json"

    @property
    def part(self) -> str:
        return self.out + ".partial"

    @property
    def part_desc(self) -> str:
        return self.part + ".json"

    @property
    def lock_path(self) -> str:
        return self.prefix + ".models.lock"

    # ------------------------------------------------------------------------------------------
    def check_paths(self) -> None:
        """Refuse output paths that cannot be written: a directory in the way, a missing directory."""
        if self.prefix.endswith(os.sep) or os.path.basename(self.prefix) == "":
            raise OutputError(f"output prefix {self.prefix}: ends in '{os.sep}'; give a prefix such as"
                              f" {self.prefix}name")
        d = os.path.dirname(self.prefix) or "."
        if not os.path.isdir(d):
            raise OutputError(f"output prefix {self.prefix}: directory {d} does not exist")
        if not os.access(d, os.W_OK | os.X_OK):
            raise OutputError(f"output prefix {self.prefix}: directory {d} is not writable")
        for p in (self.out, self.out_desc, self.part, self.part_desc, self.lock_path):
            if os.path.isdir(p):
                raise OutputError(f"output file {p}: is a directory")

    def lock(self) -> None:
        """Take the output's lock, or refuse at once if another process holds it.

        The lock file is removed (while still locked) by :meth:`unlock`; a process that opened
        it just before then finds, once it holds the lock, that the path no longer names its
        file, and starts over.
        """
        while True:
            try:
                fd = os.open(self.lock_path, os.O_WRONLY | os.O_CREAT, 0o644)
            except OSError as e:
                raise OutputError(f"lock file {self.lock_path}: cannot create: {os_reason(e)}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise OutputError(f"output {self.out}: another run is writing it (it holds {self.lock_path});"
                                  " wait for it to finish or use another output prefix") from None
            try:
                same = os.stat(self.lock_path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._lock_fd = fd
                return
            os.close(fd)

    def unlock(self) -> None:
        if self._lock_fd is not None:
            try:
                os.remove(self.lock_path)
            except OSError:
                pass
            os.close(self._lock_fd)
            self._lock_fd = None

    # ------------------------------------------------------------------------------------------
    def plan(self, run: dict, total: int, start: int, stop: int, resume: bool, append: bool,
             header: bytes) -> str:
        """Decide what to do and open the partial file to write to.

        Parameters
        ----------
        run : dict
            The run's fingerprint (inputs and options).
        total : int
            Number of rows the run writes.
        start, stop : int
            Range of variant indices in the genotype file.
        resume, append : bool
            The request (``--resume``, ``--append``).
        header : bytes
            The header gzip member.

        Returns
        -------
        str
            ``"done"`` (finished before: nothing to do), ``"resume"`` or ``"new"``. With
            ``"resume"`` or ``"new"``, :attr:`position` says how many rows are done.
        """
        if resume and os.path.exists(self.part_desc):
            partial = load_description(self.part_desc)
            finished = load_description(self.out_desc) if os.path.exists(self.out_desc) else None
            if differences(partial["run"], run) and finished and not differences(finished["run"], run):
                self._check_finished(run, "--resume")  # an unrelated interrupted rerun; this run is finished
                return "done"
            return self._resume_partial(run, total)
        if resume and os.path.exists(self.out_desc):
            self._check_finished(run, "--resume")
            return "done"
        if resume and os.path.exists(self.out):
            raise InputError(f"--resume: {self.out} has no run description {self.out_desc},"
                             " so it cannot be resumed safely; rerun without --resume")
        if append and os.path.exists(self.out):
            self._check_append(run, start, stop)
            self.append_to = self.finished_desc["bytes"]
            self._new(run, total, start, stop, b"")
            return "new"
        self._new(run, total, start, stop, header)
        return "new"

    @property
    def position(self) -> int:
        return self.state["position"]

    def _new(self, run: dict, total: int, start: int, stop: int, header: bytes) -> None:
        for p in (self.part, self.part_desc):
            if os.path.exists(p):
                os.remove(p)
        self._owned = True
        self.state = {"hlmm_version": __version__, "run": run, "start": start, "stop": stop, "total": total,
                      "position": 0, "bytes": 0, "crc32": 0, "finished": False, "failed_blocks": [],
                      "append_to": self.append_to}
        try:
            self._file = MemberFile(self.part)
            self._file.write(header)
            self.save()
        except OutputError:
            self.discard()
            raise

    def _resume_partial(self, run: dict, total: int) -> str:
        st = load_description(self.part_desc)
        diff = differences(st["run"], run)
        if diff:
            raise InputError(f"--resume: {self.out} was started with different inputs or options ({', '.join(diff)});"
                             " rerun without --resume to start again")
        if st.get("total") != total:
            raise InputError(f"--resume: {self.part_desc} describes {st.get('total')} rows but this run has {total};"
                             " rerun without --resume to start again")
        self.append_to = st.get("append_to")
        if not os.path.exists(self.part):
            # the run completed and its file was renamed, but the description was not yet updated
            if os.path.exists(self.out) and st["position"] == total and self._matches(self.out, st):
                self.state = st
                self._write_final_description()
                return "done"
            raise InputError(f"--resume: {self.part} is missing although {self.part_desc} describes it;"
                             " rerun without --resume to start again")
        if not self._matches(self.part, st, allow_longer=True):
            raise InputError(f"--resume: {self.part} does not match {self.part_desc} (size or CRC-32 differ:"
                             " modified or corrupted); rerun without --resume to start again")
        self.state = st
        self._owned = True
        self._file = MemberFile(self.part, truncate_to=st["bytes"], crc=st["crc32"])
        return "resume"

    def _matches(self, path: str, desc: dict, allow_longer: bool = False) -> bool:
        try:
            size = os.path.getsize(path)
        except OSError:
            return False
        if size < desc["bytes"] or (size > desc["bytes"] and not allow_longer):
            return False
        if "crc32" not in desc:
            return True
        return file_crc(path, desc["bytes"]) == desc["crc32"]

    def _check_finished(self, run: dict, option: str) -> dict:
        d = load_description(self.out_desc)
        if not d["finished"]:
            raise InputError(f"{option}: {self.out_desc} describes an unfinished run; rerun without {option}")
        diff = differences(d["run"], run) if option == "--resume" else []
        if diff:
            raise InputError(f"{option}: {self.out} was made with different inputs or options ({', '.join(diff)});"
                             f" rerun without {option} to replace it")
        if not os.path.exists(self.out):
            raise InputError(f"{option}: {self.out} is missing although {self.out_desc} says the run finished;"
                             f" rerun without {option} to make it again")
        if not self._matches(self.out, d):
            raise InputError(f"{option}: {self.out} does not match {self.out_desc} (size or CRC-32 differ:"
                             f" truncated, modified or replaced); rerun without {option} to make it again")
        self.finished_desc = d
        return d

    def _check_append(self, run: dict, start: int, stop: int) -> None:
        if not os.path.exists(self.out_desc):
            raise InputError(f"--append: {self.out} has no run description {self.out_desc} (not written by this"
                             " hlmm_chr, or not a results file); refusing to append to it")
        d = self._check_finished(run, "--append")
        a = {**d["run"], "options": {k: v for k, v in d["run"]["options"].items() if k not in RANGE_OPTIONS}}
        b = {**run, "options": {k: v for k, v in run["options"].items() if k not in RANGE_OPTIONS}}
        diff = differences(a, b)
        if diff:
            raise InputError(f"--append: {self.out} was made with different inputs or options ({', '.join(diff)});"
                             " appending would mix results of different analyses")
        for s0, s1 in d.get("ranges", [[d["start"], d["stop"]]]):
            if start < s1 and s0 < stop:
                raise InputError(f"--append: {self.out} already holds variants {s0}..{s1 - 1}, which overlap"
                                 f" {start}..{stop - 1}")

    # ------------------------------------------------------------------------------------------
    def write_block(self, data: bytes, rows: int, failed_block: list | None = None) -> None:
        """Append a block's gzip member, then record the new position (in that order)."""
        self._file.write(data)
        self.state["position"] += rows
        self.state["bytes"], self.state["crc32"] = self._file.size, self._file.crc
        if failed_block:
            self.state["failed_blocks"].append(failed_block)
        self.save()

    def save(self) -> None:
        write_atomic(self.part_desc, json.dumps(self.state, indent=1).encode(), "run description")

    def finish(self, extra: dict | None = None) -> None:
        """Make the partial file the results file (or append it to the finished one)."""
        self._file.close()
        self._file = None
        self.state["finished"] = True
        if extra:
            self.state.update(extra)
        self.save()
        if self.append_to is None:
            try:
                os.replace(self.part, self.out)
            except OSError as e:
                raise OutputError(f"results file {self.out}: cannot rename {self.part} to it: {os_reason(e)}") from None
        else:
            self._append_partial()
        self._write_final_description()

    def _append_partial(self) -> None:
        d = load_description(self.out_desc)
        try:
            with open(self.part, "rb") as src, open(self.out, "r+b") as dst:
                dst.truncate(d["bytes"])  # drop what an interrupted earlier append left
                dst.seek(d["bytes"])
                data = src.read()
                dst.write(data)
                dst.flush()
                os.fsync(dst.fileno())
        except OSError as e:
            raise OutputError(f"results file {self.out}: cannot append: {os_reason(e)};"
                              f" its first {d['bytes']} bytes (the earlier results) are intact") from None
        import zlib

        ranges = d.get("ranges", [[d["start"], d["stop"]]]) + [[self.state["start"], self.state["stop"]]]
        self.state.update(bytes=d["bytes"] + len(data), crc32=zlib.crc32(data, d.get("crc32", 0)), ranges=ranges,
                          start=d["start"], stop=self.state["stop"],
                          failed_blocks=d.get("failed_blocks", []) + self.state["failed_blocks"])
        os.remove(self.part)

    def _write_final_description(self) -> None:
        final = {k: v for k, v in self.state.items() if k not in ("position", "append_to")}
        final["finished"] = True
        final.setdefault("ranges", [[final["start"], final["stop"]]])
        write_atomic(self.out_desc, json.dumps(final, indent=1).encode(), "run description")
        if os.path.exists(self.part_desc):
            os.remove(self.part_desc)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def discard(self) -> None:
        """Remove this run's partial file if it holds no rows (a run that failed before its first block)."""
        self.close()
        if self._owned and self.state.get("position", 0) == 0:
            for p in (self.part, self.part_desc):
                try:
                    os.remove(p)
                except OSError:
                    pass
