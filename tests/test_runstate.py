"""hlmm.runstate: where a run's files live and what --resume and --append may trust."""

import json
import os

import pytest

from hlmm.io import InputError, OutputError
from hlmm.runstate import RunState, differences, fingerprint

RUN = {"inputs": {"phenotype": {"sha256": "x"}}, "options": {"start": 0, "end": 4, "min_maf": 0.05}}


def new_run(prefix, run=RUN, total=4, blocks=2):
    st = RunState(str(prefix))
    st.check_paths()
    st.lock()
    assert st.plan(run, total, 0, total, resume=False, append=False, header=b"H") == "new"
    for _ in range(blocks):
        st.write_block(b"rows", total // 2)
    return st


def test_new_run__results_appear_only_when_finished(tmp_path):
    st = new_run(tmp_path / "o", blocks=1)
    assert not os.path.exists(st.out) and os.path.exists(st.part)
    st.write_block(b"more", 2)
    st.finish()
    st.unlock()
    assert open(st.out, "rb").read() == b"Hrowsmore"
    desc = json.load(open(st.out_desc))
    assert desc["finished"] and desc["bytes"] == 9 and desc["ranges"] == [[0, 4]]
    assert not os.path.exists(st.part) and not os.path.exists(st.part_desc) and not os.path.exists(st.lock_path)


def test_resume__continues_from_the_recorded_bytes(tmp_path):
    st = new_run(tmp_path / "o", blocks=1)
    st.close()
    with open(st.part, "ab") as f:
        f.write(b"torn")  # a block cut by a crash after the last record
    st.unlock()
    again = RunState(str(tmp_path / "o"))
    again.lock()
    assert again.plan(RUN, 4, 0, 4, resume=True, append=False, header=b"H") == "resume" and again.position == 2
    again.write_block(b"more", 2)
    again.finish()
    assert open(again.out, "rb").read() == b"Hrowsmore"


def test_resume__refuses_other_options_and_damaged_files(tmp_path):
    st = new_run(tmp_path / "o", blocks=1)
    st.close()
    st.unlock()
    other = {**RUN, "options": {**RUN["options"], "min_maf": 0.1}}
    with pytest.raises(InputError, match="options.min_maf"):
        RunState(str(tmp_path / "o")).plan(other, 4, 0, 4, True, False, b"H")
    with open(st.part, "r+b") as f:
        f.write(b"X")  # same size, different content
    with pytest.raises(InputError, match="does not match"):
        RunState(str(tmp_path / "o")).plan(RUN, 4, 0, 4, True, False, b"H")


def test_finished_run__resume_does_nothing_unless_the_file_was_changed(tmp_path):
    st = new_run(tmp_path / "o")
    st.finish()
    st.unlock()
    assert RunState(str(tmp_path / "o")).plan(RUN, 4, 0, 4, True, False, b"H") == "done"
    os.truncate(st.out, 5)
    with pytest.raises(InputError, match="does not match"):
        RunState(str(tmp_path / "o")).plan(RUN, 4, 0, 4, True, False, b"H")
    os.remove(st.out)
    with pytest.raises(InputError, match="is missing"):
        RunState(str(tmp_path / "o")).plan(RUN, 4, 0, 4, True, False, b"H")


def test_crash_between_rename_and_description__resume_completes_it(tmp_path):
    st = new_run(tmp_path / "o")
    st.close()
    st.state["finished"] = True
    st.save()
    os.replace(st.part, st.out)  # the crash: renamed, description not yet written
    st.unlock()
    again = RunState(str(tmp_path / "o"))
    assert again.plan(RUN, 4, 0, 4, True, False, b"H") == "done"
    assert json.load(open(again.out_desc))["finished"] and not os.path.exists(again.part_desc)


def test_lock__second_holder_refused_and_refusal_touches_nothing(tmp_path):
    st = new_run(tmp_path / "o", blocks=1)
    other = RunState(str(tmp_path / "o"))
    with pytest.raises(OutputError, match="another run is writing it"):
        other.lock()
    other.discard()  # what a refused run does on its way out
    assert os.path.exists(st.part) and os.path.exists(st.part_desc)
    st.unlock()


def test_append__adds_a_range_and_keeps_the_earlier_bytes_on_failure(tmp_path):
    st = new_run(tmp_path / "o")
    st.finish()
    st.unlock()
    run2 = {**RUN, "options": {**RUN["options"], "start": 4, "end": 8}}
    app = RunState(str(tmp_path / "o"))
    assert app.plan(run2, 2, 4, 8, resume=False, append=True, header=b"H") == "new"
    app.write_block(b"tail", 2)
    app.finish()
    assert open(st.out, "rb").read() == b"Hrowsrowstail"
    assert json.load(open(st.out_desc))["ranges"] == [[0, 4], [4, 8]]
    with pytest.raises(InputError, match="overlap"):
        RunState(str(tmp_path / "o")).plan(run2, 2, 4, 8, False, True, b"H")


def test_fingerprint__hashes_text_files_and_stats_genotype_files(tmp_path):
    (tmp_path / "p.txt").write_text("a")
    (tmp_path / "g.bed").write_bytes(b"xyz")
    fp = fingerprint({"phenotype": str(tmp_path / "p.txt"), "genotypes": [str(tmp_path / "g.bed")], "keep": None},
                     {"a": 1})
    assert "sha256" in fp["inputs"]["phenotype"] and fp["inputs"]["genotypes.0"]["size"] == 3
    (tmp_path / "p.txt").write_text("b")
    fp2 = fingerprint({"phenotype": str(tmp_path / "p.txt"), "genotypes": [str(tmp_path / "g.bed")]}, {"a": 1})
    assert differences(fp, fp2) == ["inputs.phenotype.sha256"]
