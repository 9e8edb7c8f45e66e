"""Every claim of the three papers, as a property test, with its negative control.

For each registered claim (:mod:`theory`): for every hypothesis-generated instance the two
sides agree within the claim's tolerance (derived from float64 rounding or from a solver's
certificate, see each claim's ``tol_reason``); the deliberately wrong variant is rejected
on seeded instances; and where the printed statement needed a correction, the statement
as printed is rejected too. Then ``python -m theory --quick`` end to end.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from bandit.problems import Bandit
from theory import CLAIMS, run_claims
from theory.claims import claim_rng
from theory.instances import SAMPLERS, BanditInstance
from theory.strategies import STRATEGIES

ROOT = Path(__file__).resolve().parents[1]
# Each example costs a JIT compilation per new shape; the fast profile tries a few per
# claim (31 claims), the thorough profile (COPG_HYPOTHESIS=thorough) many more.
EXAMPLES = max(3, settings.default.max_examples // 8)
NEG_INSTANCES = 2

# What the issue asks for, at least: every one must stay registered.
REQUIRED = {
    "copg.thm1", "copg.thm1.support", "copg.eq7", "copg.eq9", "copg.prop1", "copg.prop2",
    "copg.prop3", "copg.sec5.ipo", "ipo_md.eq7", "ipo_md.prop4.1", "ipo_md.prop4.2",
    "ipo_md.prop5.1.nash", "ipo_md.prop5.1.ipo_md", "ipo_md.prop5.2", "ipo_md.propE1",
    "ipo_md.propE1.gaussian", "ipo_md.lemmaG3", "ipo_md.thmG6", "ipo_md.thmG7",
    "ipo_md.remarkG9", "p3o.thm1", "p3o.lemma1", "p3o.thm2", "p3o.thm2.ppo",
}  # fmt: skip


def _non_degenerate(cid: str, inst) -> bool:
    """PPO's change −(1/B)Σ δ(x_b)∇log π(y_b|x_b) vanishes when the batch's action counts
    equal B_x·π(·|x) exactly (e.g. uniform π and a balanced batch): the non-invariance is
    generic, not universal, so such instances are skipped."""
    if cid != "p3o.thm2.ppo":
        return True
    from bandit.policy import log_softmax

    pi = np.exp(log_softmax(inst.old_logits))
    X, n = pi.shape
    change = np.zeros((X, n))
    for x, y, _ in inst.batch:
        change[x] += inst.delta[x] * (np.eye(n)[y] - pi[x])
    return float(np.abs(change).max()) > 1e-6


def _theory_imports() -> dict[str, set[str]]:
    """theory's intra-package imports, module → the theory modules it imports (anywhere in
    the file, function bodies included)."""
    graph = {}
    for path in sorted((ROOT / "theory").glob("*.py")):
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                deps |= {node.module} if node.module else {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("theory."):
                deps.add(node.module.split(".")[1])
        graph[path.stem] = deps
    return graph


def test_theory_imports_form_a_dag():
    """No import cycle inside theory/: only the package __init__ imports the paper modules
    (which register the claims), and the paper modules never import one another."""
    graph = _theory_imports()
    papers = {"copg", "ipo_md", "p3o", "online"}
    for module, deps in graph.items():
        if module != "__init__":
            assert not deps & papers, f"theory.{module} imports {sorted(deps & papers)}"
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, "import cycle: " + " -> ".join((*path, module))
        if module not in done:
            for dep in graph.get(module, ()):
                visit(dep, (*path, module))
            done.add(module)

    for module in graph:
        visit(module, ())


def test_negative_control_import_cycle_is_detected(monkeypatch):
    """The DAG check rejects a cycle that involves no paper module (instances ↔ registry)
    and a paper module imported outside __init__ (claims → copg, the old cycle)."""
    graph = _theory_imports()
    cyclic = {**graph, "instances": graph["instances"] | {"registry"}}
    monkeypatch.setattr(sys.modules[__name__], "_theory_imports", lambda: cyclic)
    with pytest.raises(AssertionError, match="import cycle"):
        test_theory_imports_form_a_dag()
    old = {**graph, "claims": graph["claims"] | {"copg"}}
    monkeypatch.setattr(sys.modules[__name__], "_theory_imports", lambda: old)
    with pytest.raises(AssertionError, match=r"theory\.claims imports"):
        test_theory_imports_form_a_dag()


def test_every_required_claim_is_registered():
    assert REQUIRED <= set(CLAIMS), sorted(REQUIRED - set(CLAIMS))
    assert {c.paper for c in CLAIMS.values()} == {"CoPG", "IPO-MD", "P3O", "ours"}
    # Our claims (theory.online) are labelled ours, never a paper's.
    assert all(c.paper == "ours" for c in CLAIMS.values() if c.id.startswith("ours."))


@pytest.mark.parametrize("cid", sorted(CLAIMS))
@settings(max_examples=EXAMPLES)
@given(data=st.data())
def test_claim_holds(cid, data):
    """For every valid instance, both sides of the claim agree within its tolerance."""
    claim = CLAIMS[cid]
    inst = data.draw(STRATEGIES[claim.family], label="instance")
    assume(_non_degenerate(cid, inst))
    residual = claim.check(inst)
    assert residual <= claim.tol, f"{cid}: residual {residual:.3g} > tol {claim.tol:g}"


def test_thm1_support_survives_a_near_deterministic_optimum():
    """R/β = 47: 1 − π*(a) rounds to 0 in float64 (found by the thorough profile; the
    rescaling of the other actions gave NaN before it moved to log space)."""
    bandit = Bandit(np.array([[3.0, 0.0]]), np.array([[0.5, 0.5]]), np.array([1.0]), 0.0639)
    half = np.array([[0.5, 0.5]])
    zeros = np.zeros((1, 2))
    inst = BanditInstance(
        bandit, zeros, zeros, half, half, np.array([-1.0]), np.zeros((4, 3), dtype=np.int64)
    )
    claim = CLAIMS["copg.thm1.support"]
    assert claim.check(inst) <= claim.tol
    assert claim.negative(inst) > claim.tol


@pytest.mark.parametrize("cid", sorted(CLAIMS))
def test_negative_control_is_caught(cid):
    """The deliberately wrong variant exceeds the tolerance on every seeded instance."""
    claim = CLAIMS[cid]
    for i in range(NEG_INSTANCES):
        inst = SAMPLERS[claim.family](claim_rng(cid, 1, i))
        residual = claim.negative(inst)
        assert residual > claim.tol, f"{cid}: '{claim.negative_desc}' not caught ({residual:.3g})"


@pytest.mark.parametrize("cid", sorted(c for c in CLAIMS if CLAIMS[c].printed is not None))
def test_printed_statement_needed_its_correction(cid):
    """Where we corrected a constant or condition, the statement as printed fails."""
    claim = CLAIMS[cid]
    inst = SAMPLERS[claim.family](claim_rng(cid, 1, 0))
    residual = claim.printed(inst)
    assert residual > claim.tol, f"{cid}: the printed statement holds ({residual:.3g})"


def test_same_seed_same_results():
    ids = ["copg.eq15c", "p3o.lemma1", "ipo_md.remarkG9"]
    a = [r.to_dict() for r in run_claims(ids, instances=2, seed=3)]
    b = [r.to_dict() for r in run_claims(ids, instances=2, seed=3)]
    assert a == b
    assert all(r["status"] == "pass" for r in a)


def _run(*args, cwd=ROOT):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "theory", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_cli_quick_runs_every_claim(tmp_path):
    report = tmp_path / "theory_report.md"
    out = _run("--quick", "--no-progress", "--report", str(report))
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert lines[0].split()[:3] == ["claim", "paper", "statement"]
    for cid in CLAIMS:
        row = next(line for line in lines if line.startswith(cid + " "))
        assert row.rstrip().endswith("pass") and " yes " in row, row
    text = report.read_text()
    assert all(f"| {cid} |" in text for cid in CLAIMS)
    assert "Needed a corrected constant or condition" in text


def test_cli_json_and_bad_input(tmp_path):
    out = _run("--json", "--instances", "1", "--claims", "p3o.lemma1", "copg.eq15c",
               "--no-progress", "--report", str(tmp_path / "r.md"))  # fmt: skip
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["passed"] is True and [c["id"] for c in doc["claims"]] == [
        "copg.eq15c",
        "p3o.lemma1",
    ]
    bad = _run("--instances", "0", "--report", str(tmp_path / "r.md"))
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert "--instances" in bad.stderr
    unknown = _run("--claims", "nope", "--report", str(tmp_path / "r.md"))
    assert unknown.returncode == 2 and "nope" in unknown.stderr
