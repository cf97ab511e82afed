"""model §8 equilibrium checks, independent of any one game (Fiez, Chasnov & Ratliff arXiv 1906.01217).

- :mod:`derivatives`: dense (``torch.func``) and matrix-free (``LinearOperator``, GMRES, ARPACK) paths;
- :mod:`solvers`: follower response, differential Stackelberg and Nash points;
- :mod:`conditions`: stationarity, second-order conditions, IFT response, Schur vs finite differences;
- :mod:`dynamics`: J_τ Hurwitz, critical ratio τ*, discrete-time spectral radius;
- :mod:`existence`: attainment and continuity evidence on compact sets (model §8 Thm. 1);
- :mod:`robustness`: equilibrium shift under churn (model §8 Corollary);
- :mod:`equilibrium`: every check of one candidate point; :mod:`report`: rows, table, JSON.
"""

from mfsg.verify.derivatives import Dense, MatrixFree, derivatives
from mfsg.verify.equilibrium import Tolerances, check_equilibrium
from mfsg.verify.report import CheckResult, all_passed, exit_code, format_table, to_json
from mfsg.verify.solvers import solve_follower, solve_nash, solve_stackelberg

__all__ = [
    "Dense",
    "MatrixFree",
    "derivatives",
    "Tolerances",
    "check_equilibrium",
    "CheckResult",
    "all_passed",
    "exit_code",
    "format_table",
    "to_json",
    "solve_follower",
    "solve_nash",
    "solve_stackelberg",
]
