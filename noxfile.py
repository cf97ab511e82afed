"""nox sessions: tests, scale, verify, book, bench, lint, demo.

Every session first installs torch==2.13.0 (the local CPU wheel; other versions pull CUDA packages).
Extra pytest arguments pass through: ``nox -s tests -- -m "not slow" -x``.
"""

import nox

TORCH = "torch==2.13.0"
nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True


def _install(session: nox.Session, extras: str) -> None:
    session.install(TORCH)
    session.install("-e", f".[{extras}]")


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite, slow tests included (``-- -m "not slow"`` for the fast ones); with the book
    extra, so the suite's book test builds the executable book (CI's only build of it)."""
    _install(session, "test,book")
    args = session.posargs or ["-n", "2", "--dist", "loadfile"]
    session.run("pytest", *args, env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})


@nox.session
def scale(session: nox.Session) -> None:
    """The Ray executor's tests (the optional ``[scale]`` extra): same results as the serial executor."""
    _install(session, "test,scale")
    args = session.posargs or ["tests/scale"]
    session.run("pytest", *args, env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})


@nox.session
def verify(session: nox.Session) -> None:
    """The equilibrium verification suite (model §8) from an installed (non-editable) mfsg, run outside the
    repository. ``mfsg verify`` exits 0 when all pass, 1 when some fail, 3 when none fail but some are
    inconclusive; the session fails on 1 (or 2) only: an inconclusive row (the data cannot decide, e.g. a
    confidence interval straddling the tolerance) is listed in the table with the episodes it would need."""
    session.install(TORCH)
    session.install(".[test]")
    session.chdir(session.create_tmp())
    session.run("mfsg", "verify", *session.posargs, success_codes=[0, 3])


@nox.session
def book(session: nox.Session) -> None:
    """Build the executable book; any cell error or warning fails the build."""
    _install(session, "book")
    session.run("jupyter-book", "build", "book", "--all", "-W", "-n", "--keep-going", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks; results are written to bench-results/*.json (``-- env`` to pick one target)."""
    _install(session, "test")
    for target in session.posargs or ["env", "policy", "verify"]:
        session.run("mfsg", "bench", target)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "mfsg", "tests", "verification", "noxfile.py")


@nox.session
def demo(session: nox.Session) -> None:
    """A real simulation: the three rule-based protocols of model §6 at N = 6, K = 2."""
    _install(session, "test")
    for protocol in ("genie", "sr-grant", "aloha"):
        session.run("mfsg", "simulate", "--protocol", protocol, "--n-ue", "6", "--p-arrival", "0.48", "--episodes", "2000")
