"""Every claim of the CoPG, IPO-MD and P3O papers as an executable, falsifiable check.

``python -m theory`` runs them all; :data:`CLAIMS` holds them by id (one module per paper:
:mod:`theory.copg`, :mod:`theory.ipo_md`, :mod:`theory.p3o`, and our own claims on data
sources in :mod:`theory.online`), :func:`run_claims` runs
them on seeded random instances, and :mod:`theory.strategies` generates instances for
hypothesis property tests.

Imports form a DAG: :mod:`theory.instances` ← :mod:`theory.registry`, and
:mod:`theory.checks` (shared helpers) ← the paper modules ← this package, which imports
every paper module (registering its claims) before the runner :mod:`theory.claims`.
"""

from bandit.cli import exit_on_interrupt_while_importing as _exit_on_interrupt_while_importing

# python -m theory: Ctrl-C while JAX and the claims import exits 130 with one line (the
# paper modules import JAX before bandit, whose own guard would come too late).
_exit_on_interrupt_while_importing()

from . import copg, ipo_md, online, p3o  # noqa: E402, F401  (each registers its claims)
from .claims import ClaimResult, run_claim, run_claims  # noqa: E402
from .instances import BanditInstance, GameInstance, GaussianInstance  # noqa: E402
from .registry import CLAIMS, Claim  # noqa: E402

__all__ = [
    "CLAIMS",
    "BanditInstance",
    "Claim",
    "ClaimResult",
    "GameInstance",
    "GaussianInstance",
    "run_claim",
    "run_claims",
]
