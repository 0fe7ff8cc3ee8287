"""Pieces shared by the command-line programs: errors and exit codes, logging, progress, argument types."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time

import numpy as np

from hlmm import __version__
from hlmm.io import InputError, os_reason

log = logging.getLogger("hlmm")

#: Progress lines when stderr is not a terminal: every this fraction of the work ...
PROGRESS_FRACTION = 0.05
#: ... or every this many seconds, whichever comes first.
PROGRESS_SECONDS = 60.0


class _Formatter(logging.Formatter):
    """``2026-11-25 19:46:56 message``; warnings and errors say so."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
        level = "" if record.levelno < logging.WARNING else f"{record.levelname}: "
        return f"{stamp} {level}{record.getMessage()}"


class _Handler(logging.StreamHandler):
    """Writes log lines above the tqdm progress bar while one is shown."""

    bar_shown = False

    def emit(self, record: logging.LogRecord) -> None:
        if not _Handler.bar_shown:
            return super().emit(record)
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never break a run
            self.handleError(record)


def setup_logging(quiet: bool) -> None:
    handler = _Handler(sys.stderr)
    handler.setFormatter(_Formatter())
    log.handlers[:] = [handler]
    log.setLevel(logging.WARNING if quiet else logging.INFO)
    log.propagate = False


class Terminated(KeyboardInterrupt):
    """SIGTERM (a cluster's time limit or pre-emption), handled like Ctrl-C."""


def _on_sigterm(signum, frame):
    raise Terminated()


def run_main(prog: str, run, argv=None, parser=None) -> int:
    """Parse arguments and run ``run(args)``.

    Problems with inputs or outputs, and running out of memory, become one line
    (``prog: error: ...``) and exit status 2; Ctrl-C exits with 130 and SIGTERM with 143, keeping
    what is already written.
    """
    args = parser.parse_args(argv)
    setup_logging(getattr(args, "quiet", False))
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if threading.current_thread() is threading.main_thread() \
        else None
    try:
        run(args)
    except InputError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        what = "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted"
        print(f"{prog}: {what}; results already written are kept (hlmm_chr: continue with --resume)",
              file=sys.stderr)
        return 143 if isinstance(e, Terminated) else 130
    except OSError as e:  # an output-side fault not caught closer to its cause
        where = f" {e.filename}" if getattr(e, "filename", None) else ""
        print(f"{prog}: error:{where} {os_reason(e)}", file=sys.stderr)
        return 2
    except MemoryError as e:  # numpy's message says what it could not allocate
        what = f": {e}" if str(e) else ""
        print(f"{prog}: error: out of memory{what}; results already written are kept (hlmm_chr: a smaller "
              "--block_size or fewer phenotypes per pass, then --resume)", file=sys.stderr)
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


def parser(prog: str, description: str) -> argparse.ArgumentParser:
    """An argument parser with ``--version``."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--version", action="version", version=f"%(prog)s (hlmm) {__version__}")
    return p


class Progress:
    """Progress of a scan: a tqdm bar on a terminal; otherwise timestamped log lines every 5% of
    the variants or every 60 s, whichever comes first, with variants done, rate and ETA."""

    def __init__(self, enabled: bool, tty: bool | None = None, label: str = "variants") -> None:
        self.enabled = enabled
        self.tty = sys.stderr.isatty() if tty is None else tty
        self.label = label
        self.bar = None

    def start(self, total: int, done: int = 0) -> None:
        self.total, self.done, self.first = total, done, done
        self.t0 = self._last_t = time.monotonic()
        self._last_done = done
        if self.enabled and self.tty and total > done:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=done, unit=" " + self.label, file=sys.stderr, dynamic_ncols=True,
                            mininterval=0.5, smoothing=0.1)
            _Handler.bar_shown = True

    def update(self, k: int) -> None:
        self.done += k
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(k)
            return
        now = time.monotonic()
        step = max(1, int(np.ceil(PROGRESS_FRACTION * self.total)))
        if self.done - self._last_done >= step or now - self._last_t >= PROGRESS_SECONDS or self.done >= self.total:
            self._last_t, self._last_done = now, self.done
            rate = (self.done - self.first) / max(now - self.t0, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            eta_s = time.strftime("%H:%M:%S", time.gmtime(eta)) if np.isfinite(eta) else "--:--:--"
            log.info(f"progress: {self.done:,}/{self.total:,} {self.label} ({100 * self.done / self.total:.0f}%),"
                     f" {rate:,.1f} {self.label}/s, ETA {eta_s}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
            _Handler.bar_shown = False


# ----------------------------------------------------------------------------------------------
# Argument types
# ----------------------------------------------------------------------------------------------
def non_negative_float(text: str) -> float:
    """argparse type: a finite float >= 0."""
    value = _float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be non-negative, got {text}")
    return value


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not np.isfinite(value):
        raise argparse.ArgumentTypeError(f"'{text}' is not finite")
    return value


def maf_fraction(text: str) -> float:
    """argparse type: a minor allele frequency threshold, a fraction in [0, 0.5)."""
    value = _float(text)
    if not 0 <= value < 0.5:
        hint = f" (did you mean {value / 100:g}? it is a fraction, not a percentage)" if 1 <= value < 50 else ""
        raise argparse.ArgumentTypeError(f"must be a fraction in [0, 0.5), got {text}{hint}")
    return value


def missing_percentage(text: str) -> float:
    """argparse type: a missingness threshold, a percentage in (0, 100]."""
    value = _float(text)
    if not 0 < value <= 100:
        raise argparse.ArgumentTypeError(f"must be a percentage in (0, 100], got {text}")
    return value


def neglog10_threshold(text: str) -> float:
    """argparse type: a -log10 p-value threshold, a number >= 0."""
    value = _float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"is a -log10 p-value, at least 0, got {text}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def index_list(text: str) -> list:
    """argparse type: 1-based column indices such as ``1,3-5``."""
    out = []
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                a, b = (int(x) for x in part.split("-", 1))
                if b < a:
                    raise ValueError
                out += list(range(a, b + 1))
            else:
                out.append(int(part))
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a list of indices such as 1,3-5") from None
    if any(i < 1 for i in out):
        raise argparse.ArgumentTypeError(f"indices count from 1, got {text}")
    return out


def probability(text: str) -> float:
    """argparse type: a p-value threshold in (0, 1)."""
    value = _float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be a p-value in (0, 1), got {text}")
    return value


def check_output(out: str, inputs: list) -> None:
    """One-line errors for an output file that cannot be written, before any work is done."""
    import os

    from hlmm.io import OutputError

    if os.path.abspath(out) in {os.path.abspath(p) for p in inputs}:
        raise InputError(f"output {out} is also an input")
    directory = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(directory):
        raise OutputError(f"output {out}: directory {os.path.dirname(out) or '.'} does not exist")
    if os.path.isdir(out):
        raise OutputError(f"output {out}: is a directory")


def read_results(path: str) -> dict:
    """Read a results table, turning every reading problem into a one-line :class:`InputError`."""
    import gzip
    import zlib

    from hlmm.results import read_models

    try:
        return read_models(path)
    except FileNotFoundError:
        raise InputError(f"results file {path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"results file {path}: is a directory") from None
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile, UnicodeDecodeError) as e:
        raise InputError(f"results file {path}: not a readable gzip results table ({e})") from None
    except (ValueError, IndexError):
        raise InputError(f"results file {path}: malformed table (not a results table of hlmm_chr?)") from None


def name_list(text: str) -> list:
    """A comma-separated list of names (``--interaction E1,E2``)."""
    names = [t.strip() for t in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of names")
    return names


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments shared by hlmm_chr and fit_hlmm_model."""
    p.add_argument("--mean_covar", type=str, default=None,
                   help="Location of mean covariate file, FID IID x1 x2 ... (default no mean covariates)")
    p.add_argument("--var_covar", type=str, default=None,
                   help="Location of variance covariate file, FID IID x1 x2 ... (default no variance covariates)")
    p.add_argument("--random_gts", type=str, default=None,
                   help="Genotype file (.bed, .pgen or .bgen) of the SNPs whose effects are modelled as random: "
                        "HLMMs (hetlmm.model) are fit, rather than HLMs (hetlm.model)")
    p.add_argument("--random_gts_txt", action="store_true", default=False,
                   help="The file given to --random_gts is a text file with columns FID, IID, x1, x2, ...")
    p.add_argument("--h2_init", type=non_negative_float, default=0.05,
                   help="Initial value for the variance explained by random effects (default 0.05)")
    p.add_argument("--missing_char", type=str, default="NA",
                   help="Missing value string in the phenotype and covariate files (default NA)")
    p.add_argument("--no_h2_estimate", action="store_true", default=False, help="Suppress output of the h2 estimate")
    p.add_argument("--keep", type=str, default=None,
                   help="Analyse only the individuals in this file (FID IID per line; an optional # header line)")
    p.add_argument("--remove", type=str, default=None,
                   help="Leave out the individuals in this file (FID IID per line; an optional # header line)")
    p.add_argument("--quiet", action="store_true", default=False,
                   help="No progress bar or log messages; errors are still printed")
