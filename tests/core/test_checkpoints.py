"""The checkpoint contract (core/checkpoints.py) both train and eval use: one reader (complete,
latest, best), the atomic writer, and retention that knows about evaluation: a pinned checkpoint
survives `prune` until its evaluation has written its result or ended; then the keep policy
applies on the next save. Evaluations are asked for by kind name."""

from __future__ import annotations

import json
import time

import pytest

from orchestrator.core import checkpoints, paths
from orchestrator.core.errors import SpecError
from orchestrator.core.files import write_json_atomic
from orchestrator.core.registry import Registry


def _fake(epoch: int) -> None:
    d = paths.checkpoint_dir("exp", "arm", epoch)
    d.mkdir(parents=True)
    (d / paths.CHECKPOINT_META).write_text(json.dumps({"epoch": epoch}))
    paths.latest_checkpoint_file("exp", "arm").write_text(d.name + "\n")


def _pin(epoch: int, run: str | None = None) -> str:
    name = paths.checkpoint_name(epoch)
    run = run or f"arm__{name}__t"
    return checkpoints.pin("exp", "arm", name, "exp-eval", run, paths.eval_result("exp", "arm", name, "t"))


def _written(experiment: str, arm: str, epoch: int, reward: float, meta: bool = True) -> None:
    """A checkpoint directory as a writer that does not rename leaves it (meta.json last)."""
    d = paths.checkpoint_dir(experiment, arm, epoch)
    d.mkdir(parents=True)
    if meta:
        (d / paths.CHECKPOINT_META).write_text(json.dumps({"epoch": epoch, "metrics": {"val/reward_mean": reward}}))


def test_one_reader_complete_latest_best(orch_home):
    """The rules of checkpoints.read_arm, which the trainer, discovery and evaluation share."""
    for epoch, reward in ((1, 0.1), (2, 0.5), (3, 0.3)):
        _written("exp", "arm", epoch, reward)
    _written("exp", "arm", 4, 0.9, meta=False)  # no meta.json: being written, never complete
    found = checkpoints.read_arm("exp", "arm")
    assert [c.name for c in found.complete] == ["epoch_1", "epoch_2", "epoch_3"]
    assert any("epoch_4" in n for n in found.notes)
    # no pointers: latest is the highest complete epoch, best the best meta.json metric
    assert (found.latest.name, found.best.name) == ("epoch_3", "epoch_2")
    assert checkpoints.epochs("exp", "arm") == [1, 2, 3]
    # the training summary's best epoch beats the metric; the trainer's `best` pointer beats both
    summary = paths.run_dir("exp", "arm") / paths.SUMMARY_FILE
    summary.parent.mkdir(parents=True)
    summary.write_text(json.dumps({"best": {"epoch": 1}}))
    assert checkpoints.read_arm("exp", "arm").best.name == "epoch_1"
    paths.best_checkpoint_file("exp", "arm").write_text("epoch_3\n")
    assert checkpoints.best("exp", "arm").name == "epoch_3"
    # the `latest` pointer names the latest; one naming no complete checkpoint gives none, and says so
    paths.latest_checkpoint_file("exp", "arm").write_text("epoch_2\n")
    assert checkpoints.latest("exp", "arm").name == "epoch_2"
    paths.latest_checkpoint_file("exp", "arm").write_text("epoch_4\n")
    found = checkpoints.read_arm("exp", "arm")
    assert found.latest is None and any("'latest' names 'epoch_4'" in n for n in found.notes)
    # retention keeps the last K, the latest and the best, and never touches what is being written
    paths.latest_checkpoint_file("exp", "arm").write_text("epoch_3\n")
    paths.best_checkpoint_file("exp", "arm").write_text("epoch_1\n")
    assert checkpoints.prune("exp", "arm", keep_last=1) == [2]
    assert checkpoints.epochs("exp", "arm") == [1, 3] and paths.checkpoint_dir("exp", "arm", 4).is_dir()


def test_pinned_checkpoints_survive_retention_until_their_result_exists(orch_home):
    for epoch in (1, 2, 3):
        _fake(epoch)
    assert _pin(1) == "new" and _pin(2) == "new"
    assert _pin(1) == "held"  # a second submit keeps the first one's pin (and its time)
    assert _pin(9) == "gone" and not paths.checkpoint_pin("exp", "arm", "epoch_9", "exp-eval", "x").exists()
    assert checkpoints.prune("exp", "arm", keep_last=1) == []
    assert checkpoints.epochs("exp", "arm") == [1, 2, 3]
    assert checkpoints.read_arm("exp", "arm").notes == []  # .pins/ is no checkpoint
    # epoch_1's evaluation writes its result (and unpins); epoch_2's is still running
    write_json_atomic(paths.eval_result("exp", "arm", "epoch_1", "t"), {"n": 1})
    _fake(4)
    assert checkpoints.prune("exp", "arm", keep_last=1) == [1, 3]
    assert checkpoints.epochs("exp", "arm") == [2, 4]
    assert not paths.checkpoint_pin("exp", "arm", "epoch_1", "exp-eval", "arm__epoch_1__t").exists()
    checkpoints.unpin("exp", "arm", "epoch_2", "exp-eval", "arm__epoch_2__t")  # what the eval job does
    _fake(5)
    assert checkpoints.prune("exp", "arm", keep_last=1) == [2, 4]
    assert not list(paths.arm_checkpoints_dir("exp", "arm").glob(".epoch_*"))  # renamed away, then deleted


def test_a_pin_is_released_when_its_unit_ended_after_it(orch_home):
    for epoch in (1, 2, 3):
        _fake(epoch)
    # an earlier attempt of epoch_1's unit failed before this pin: it says nothing of the new one
    old = {"state": "FAILED", "ended": time.time() - 60}
    write_json_atomic(paths.status_file("exp-eval", "arm__epoch_1__t"), old)
    assert _pin(1) == "new" and _pin(2) == "new"
    assert checkpoints.pinned("exp", "arm") == {"epoch_1", "epoch_2"}
    # the new attempt of epoch_1 fails (its status file); epoch_2's is cancelled while pending
    # (only the registry knows): neither holds its checkpoint any more
    write_json_atomic(paths.status_file("exp-eval", "arm__epoch_1__t"), {"state": "FAILED", "ended": time.time()})
    reg = Registry()
    reg.add_job("77", "slurm", "exp-eval", "eval", "f", "", [("arm__epoch_2__t", [])], [])
    (t,) = reg.tasks("exp-eval")
    assert checkpoints.pinned("exp", "arm") == {"epoch_2"}  # queued: still held
    reg.update_tasks([(t, {"state": "CANCELLED"})])
    assert checkpoints.pinned("exp", "arm") == set()
    assert checkpoints.prune("exp", "arm", keep_last=1) == [1, 2]


def test_prune_keeps_checkpoints_awaiting_a_held_out_decision_and_best_moves_back(orch_home):
    """The trainer's `keep` (pending held-out decisions) survives retention like a pin; set_best
    points `best` at an earlier complete checkpoint (held-out scores arrive after the save)."""
    for e in (1, 2, 3, 4):
        _fake(e)
    assert checkpoints.prune("exp", "arm", keep_last=1, keep=(2,)) == [1, 3]
    assert checkpoints.epochs("exp", "arm") == [2, 4]
    assert checkpoints.set_best("exp", "arm", "epoch_2") and checkpoints.best("exp", "arm").name == "epoch_2"
    assert not checkpoints.set_best("exp", "arm", "epoch_3")  # gone: the pointer stays
    assert checkpoints.prune("exp", "arm", keep_last=1) == []  # best and latest stay
    assert checkpoints.best("exp", "arm").name == "epoch_2"


def test_write_is_atomic_and_points_latest_and_best_last(orch_home):
    """The writer fills a hidden directory; meta.json, the rename and the pointers come after, so
    a writer killed inside `fill` leaves the previous checkpoint as latest."""

    def fill(text):
        def write_files(d):
            (d / "weights.bin").write_text(text)

        return write_files

    first = checkpoints.write("exp", "arm", 1, fill("one"), {"epoch": 1, "metrics": {"m": 1}}, best=True)
    assert (first / "weights.bin").read_text() == "one" and json.loads((first / paths.CHECKPOINT_META).read_text())
    assert (checkpoints.latest("exp", "arm"), checkpoints.best("exp", "arm")) == (first, first)

    def killed(d):
        (d / "weights.bin").write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        checkpoints.write("exp", "arm", 2, killed, {"epoch": 2})
    assert checkpoints.epochs("exp", "arm") == [1] and checkpoints.latest("exp", "arm") == first
    assert checkpoints.read_arm("exp", "arm").notes == []  # the hidden leftover is no checkpoint
    # the same epoch written again (a resumed run redoing it) replaces it; best stays where it was
    again = checkpoints.write("exp", "arm", 1, fill("redone"), {"epoch": 1})
    assert (again / "weights.bin").read_text() == "redone" and checkpoints.best("exp", "arm") == again
    assert checkpoints.prune("exp", "arm", keep_last=1) == []
    assert not list(paths.arm_checkpoints_dir("exp", "arm").glob(".epoch_*"))  # leftovers cleaned


def test_best_by_metric_follows_the_direction_given(orch_home):
    """Without pointer or summary, best is the best meta.json value of best_metric, in the
    direction the caller reads from the scorer registry (core cannot import scoring)."""
    for epoch, reward in ((1, 0.1), (2, 0.5), (3, 0.3)):
        _written("exp", "arm", epoch, reward)
    assert checkpoints.read_arm("exp", "arm", "val/reward_mean").best.name == "epoch_2"
    assert checkpoints.read_arm("exp", "arm", "val/reward_mean", higher_is_better=False).best.name == "epoch_1"


class _Asked(checkpoints.Evaluator):
    """An evaluation whose submit the test decides (see test_submit_evaluation_...)."""

    kind: str = "eval"
    name: str = "exp-eval"

    def release_pins(self) -> None:
        released.append(self)


released: list[_Asked] = []


def test_submit_evaluation_plans_again_when_retention_raced_and_releases_pins_on_failure(monkeypatch):
    from orchestrator.core import submit

    outcomes = [checkpoints.CheckpointGone("exp: retention deleted arm/epoch_3"), ["job 1"]]

    def fake_submit(spec, executor, force=False):
        out = outcomes.pop(0)
        if isinstance(out, BaseException):
            raise out
        return out

    monkeypatch.setattr(submit, "submit", fake_submit)
    said, fresh = [], _Asked()
    spec, done = checkpoints.submit_evaluation(_Asked(), "local", again=lambda: fresh, say=said.append)
    assert spec is fresh and done == ["job 1"] and "planning again (1/2)" in said[0]
    # without `again` (the trainer's evaluate-on-save), a raced plan is an error; any failure releases
    outcomes[:] = [RuntimeError("sbatch: error")]
    failing = _Asked()
    with pytest.raises(RuntimeError):
        checkpoints.submit_evaluation(failing, "local")
    assert released == [failing]
    outcomes[:] = [checkpoints.CheckpointGone("gone")] * checkpoints.PLAN_ATTEMPTS
    with pytest.raises(checkpoints.CheckpointGone):
        checkpoints.submit_evaluation(_Asked(), "local", again=_Asked, say=said.append)


def test_evaluations_are_asked_for_by_kind_name(orch_home, monkeypatch):
    """The asking kind names the evaluating kind; core finds its spec in the kind table."""
    from helpers import FIXTURES
    from orchestrator.core import kinds

    suite = str(FIXTURES / "suites" / "tiny.yaml")
    ev = checkpoints.evaluator({"experiment": "exp", "suite": suite, "tasks": ["math500"], "only": ["epoch_2"]})
    assert isinstance(ev, checkpoints.Evaluator) and ev.kind == "eval" and ev.name == "exp-eval"
    assert [t.name for t in ev.evaluated_tasks()] == ["math500"]
    with pytest.raises(SpecError, match=r"arms.a.evaluation(.|\n)*batch_size"):
        checkpoints.evaluator({"experiment": "exp", "batch_size": 0}, "arms.a.evaluation")
    monkeypatch.setitem(kinds.KINDS, "eval", "orchestrator.kinds.command.spec:CommandSpec")
    with pytest.raises(SpecError, match="does not evaluate checkpoints"):
        checkpoints.evaluator({"experiment": "exp"})
