import pytest

from pipeline.model.job import Finding, StageError
from pipeline.model.policy import decide_status, is_terminal, worst_status


def f(code, severity="error"):
    return Finding(code=code, severity=severity, detail="d")


ERR = StageError(stage="remux", type="RemuxError", message="boom")


@pytest.mark.parametrize(
    ("findings", "policy", "error", "status"),
    [
        pytest.param([], "strict", None, "ok", id="clean"),
        pytest.param([f("NAME_MISMATCH", "warning")], "strict", None, "ok", id="warnings-ok"),
        pytest.param([f("MISSING_SEGMENT")], "strict", None, "failed", id="strict-error"),
        pytest.param([f("MISSING_SEGMENT")], "lenient", None, "degraded", id="lenient-error"),
        pytest.param([f("NO_ENDLIST", "info")], "strict", None, "pending", id="pending"),
        pytest.param(
            [f("UNSAFE_URI"), f("NO_ENDLIST", "info")], "lenient", None, "rejected", id="unsafe-wins"
        ),
        pytest.param([f("PLAYLIST_INVALID")], "lenient", None, "rejected", id="invalid"),
        pytest.param([], "lenient", ERR, "failed", id="stage-error-fails-even-lenient"),
        pytest.param([f("NO_ENDLIST", "info")], "strict", ERR, "pending", id="pending-before-error"),
    ],
)
def test_decide_status(findings, policy, error, status):
    assert decide_status(findings, policy=policy, error=error) == status


@pytest.mark.parametrize(
    ("status", "terminal"),
    [("ok", False), ("degraded", False), ("failed", True), ("pending", True), ("rejected", True)],
)
def test_is_terminal(status, terminal):
    assert is_terminal(status) is terminal


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        pytest.param([], "ok", id="none"),
        pytest.param(["ok", "degraded"], "degraded", id="degraded"),
        pytest.param(["degraded", "pending"], "pending", id="pending-over-degraded"),
        pytest.param(["pending", "failed"], "failed", id="failed-over-pending"),
        pytest.param(["failed", "rejected"], "rejected", id="rejected-over-failed"),
        pytest.param(["ok", None], "failed", id="missing-is-failed"),
    ],
)
def test_one_status_order_for_every_summary(statuses, expected):
    assert worst_status(statuses) == expected
