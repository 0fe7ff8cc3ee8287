"""Golden outputs: every program's output on fixed inputs, text for text, against files stored in
tests/data/golden.

This is a regression test, not a test of correctness (the other tests compare with R, dense
likelihoods, 1.2.0a1 and plink2): it fails on any change of any number, NaN or column of the
results files, null-effect files, fit_hlmm_model's files, dispersion tables and summary
statistics, so that a redesign that must not change results can show it did not. The stored files
were written by the commit named in tests/data/golden/COMMIT. After a deliberate change of
results, regenerate them with::

    python tests/test_golden.py --regenerate

and say in the commit message what changed and why.
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from datasets import make_dataset  # noqa: E402

from hlmm.cli import fit_hlmm_model, hlmm_chr, hlmm_dispersion, hlmm_sumstats  # noqa: E402

GOLDEN = Path(__file__).parent / "data" / "golden"
FORMATS = Path(__file__).parent / "data" / "formats"

#: name -> hlmm_chr arguments after ``genotypes 0 end phenotypes out`` ({covar}, {random}, ... filled in)
SCANS = {
    "hlm": [],
    "hlm_covariates": ["--mean_covar", "{covar}", "--var_covar", "{covar}"],
    "hlm_fit_covariates": ["--mean_covar", "{covar}", "--var_covar", "{covar}", "--fit_covariates"],
    "hlm_robust": ["--mean_covar", "{covar}", "--robust"],
    "hlm_fit_covariates_robust": ["--mean_covar", "{covar}", "--fit_covariates", "--robust"],
    "hlm_reference": ["--mean_covar", "{covar}", "--engine", "reference"],
    "hlm_two_phenotypes": ["--phen_index", "1,2"],
    "hlm_selection": ["--extract", "{extract}", "--remove", "{remove}", "--min_maf", "0.02"],
    "hlmm": ["--random_gts", "{random}"],
    "hlmm_txt": ["--random_gts", "{random_txt}", "--random_gts_txt", "--no_h2_estimate"],
    "hlmm_fit_covariates": ["--random_gts", "{random}", "--mean_covar", "{covar}", "--fit_covariates"],
    "score": ["--test", "score", "--mean_covar", "{covar}"],
    "score_robust_refit": ["--test", "score", "--robust", "--refit", "1"],
    "score_hlmm": ["--test", "score", "--random_gts", "{random}"],
    "score_hlmm_robust": ["--test", "score", "--random_gts", "{random}", "--robust"],
    "score_hlmm_refit": ["--test", "score", "--random_gts", "{random}", "--refit", "1"],
    "score_fit_covariates": ["--test", "score", "--mean_covar", "{covar}", "--fit_covariates"],
}
#: name -> (genotype fixture, hlmm_chr arguments) for dosage files
DOSAGE_SCANS = {
    "pgen_dosages": ("dos.pgen", ["--min_maf", "0.01"]),
    "bgen_dosages_robust": ("dos.bgen", ["--min_maf", "0.01", "--robust"]),
    "pgen_hard_calls": ("dos.pgen", ["--min_maf", "0.01", "--hard_calls"]),
    "pgen_score": ("dos.pgen", ["--min_maf", "0.01", "--test", "score"]),
    "pgen_hlmm": ("dos.pgen", ["--min_maf", "0.01", "--random_gts", "{hard}", "--end", "8"]),
    "pgen_score_hlmm": ("dos.pgen", ["--min_maf", "0.01", "--random_gts", "{hard}", "--test", "score"]),
}
#: name -> fit_hlmm_model arguments after ``phenotypes out``
FITS = {
    "fit_hlm": ["--mean_covar", "{covar}", "--var_covar", "{covar}"],
    "fit_hlm_robust": ["--mean_covar", "{covar}", "--var_covar", "{covar}", "--robust"],
    "fit_hlmm": ["--mean_covar", "{covar}", "--random_gts", "{random}"],
}


def _fill(args: list, paths: dict) -> list:
    return [a.format(**paths) for a in args]


def _text(path: Path) -> str:
    data = path.read_bytes()
    return gzip.decompress(data).decode() if path.suffix == ".gz" else data.decode()


def _outputs(directory: Path, name: str) -> dict:
    """Every output file of run ``name``, as text (gzip decompressed), by file name; the run
    descriptions (which hold paths and times) and the metadata's date are left out."""
    out = {}
    for p in sorted(directory.glob(f"{name}*")):
        if not (p.name == name or p.name.startswith((f"{name}.", f"{name}-"))) or p.name.endswith((".json", ".png")):
            continue
        text = _text(p)
        if p.name.endswith("-meta.yaml"):
            text = "".join(line for line in text.splitlines(True) if not line.startswith("date_metadata"))
        out[p.name] = text
    return out


def _dosage_phenotype(directory: Path) -> Path:
    import numpy as np

    from hlmm.io import open_genotypes

    src = open_genotypes(str(FORMATS / "dos.pgen"))
    rng = np.random.default_rng(31)
    g = np.nan_to_num(src.read_dosages(np.arange(src.n_samples), 0, 2).T, nan=1.0)
    y = 0.4 * g[:, 0] + rng.standard_normal(src.n_samples) * np.exp(0.3 * g[:, 1])
    path = directory / "dpheno.txt"
    path.write_text("FID IID y\n" + "".join(f"{f} {i} {v!r}\n" for (f, i), v in zip(src.samples, y.tolist())))
    return path


def run_all(directory: Path) -> dict:
    """Run every golden scenario in ``directory``; returns {file name: text}."""
    (directory / "data").mkdir()
    ds = make_dataset(directory / "data", seed=3)
    extract, remove = directory / "extract.txt", directory / "remove.txt"
    extract.write_text("".join(f"rs{j}\n" for j in range(2, 12)))
    remove.write_text("".join(f"F{i} I{i}\n" for i in range(0, 600, 7)))
    paths = {"covar": ds.covar, "random": ds.random, "random_txt": ds.random_txt, "extract": extract,
             "remove": remove, "hard": FORMATS / "hard.bed"}
    texts = {}
    for name, extra in SCANS.items():
        out = directory / name
        assert hlmm_chr.main([ds.bed, "0", "12", ds.pheno, str(out), "--quiet", *_fill(extra, paths)]) == 0, name
        texts.update(_outputs(directory, name))
    dpheno = _dosage_phenotype(directory)
    for name, (geno, extra) in DOSAGE_SCANS.items():
        extra = _fill(extra, paths)
        end = "40"
        if "--end" in extra:
            k = extra.index("--end")
            end = extra[k + 1]
            del extra[k:k + 2]
        out = directory / name
        assert hlmm_chr.main([str(FORMATS / geno), "0", end, str(dpheno), str(out), "--quiet", *extra]) == 0, name
        texts.update(_outputs(directory, name))
    for name, extra in FITS.items():
        out = directory / name
        assert fit_hlmm_model.main([ds.pheno, str(out), "--quiet", *_fill(extra, paths)]) == 0, name
        texts.update(_outputs(directory, name))
    for source in ("hlm", "score_hlmm"):
        models = str(directory / f"{source}.models.gz")
        for method in ("moment", "1.2.0a1"):
            out = directory / f"disp_{source}_{method}"
            assert hlmm_dispersion.main([models, "-o", f"{out}.dispersion.gz", "--method", method, "--quiet"]) == 0
            texts.update(_outputs(directory, out.name))
    for effect in ("add", "var", "dispersion"):
        src = directory / ("disp_hlm_moment.dispersion.gz" if effect == "dispersion" else "hlm.models.gz")
        out = directory / f"ssf_{effect}.tsv"
        # the variance effects of the golden files are the pooled-moment robust ones (no longer the default)
        se = ["--se", "robust"] if effect == "var" else []
        assert hlmm_sumstats.main([str(src), "-o", str(out), "--effect", effect, "--quiet", *se]) == 0
        texts.update(_outputs(directory, out.name))
    return texts


#: Columns added after the golden files were written (the adaptive variance test, hlmm.adaptive):
#: left out of the comparison, which holds every other column to the stored text.
ADDED = ("var_adapt", "var_se_adapt", "var_pval_adapt")


def _without_added(text: str) -> str:
    """A tab-separated table without the :data:`ADDED` columns (other text unchanged)."""
    lines = text.splitlines(True)
    if not lines or "\t" not in lines[0]:
        return text
    header = lines[0].rstrip("\n").split("\t")
    keep = [k for k, c in enumerate(header) if c not in ADDED]
    if len(keep) == len(header):
        return text
    return "".join("\t".join(f[k] for k in keep) + "\n" for f in (ln.rstrip("\n").split("\t") for ln in lines))


def test_every_output__identical_to_the_golden_files(tmp_path):
    stored = {p.name: _without_added(p.read_text()) for p in sorted(GOLDEN.iterdir()) if p.name != "COMMIT"}
    texts = {name: _without_added(text) for name, text in run_all(tmp_path).items()}
    assert sorted(texts) == sorted(stored), "the set of output files differs"
    changed = [name for name in texts if texts[name] != stored[name]]
    assert not changed, f"outputs differ from tests/data/golden: {changed}"


def regenerate() -> None:
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        texts = run_all(Path(d))
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for p in GOLDEN.iterdir():
        p.unlink()
    for name, text in texts.items():
        (GOLDEN / name).write_text(text)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=GOLDEN).stdout.strip()
    (GOLDEN / "COMMIT").write_text(f"{commit}\n")
    print(f"wrote {len(texts)} files to {GOLDEN} (outputs of {commit})")


if __name__ == "__main__":
    if sys.argv[1:] != ["--regenerate"]:
        sys.exit(__doc__)
    regenerate()
