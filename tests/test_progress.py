"""Progress bars: plain text on stdout when headless or outside a notebook kernel, never on stderr."""

from __future__ import annotations

import io
import sys

import pytest

from qnnlib import progress as P


def test_headless_env(monkeypatch) -> None:
    for value, expected in (("1", True), ("true", True), ("yes", True), ("0", False), ("", False)):
        monkeypatch.setenv(P.HEADLESS_ENV, value)
        assert P.headless() is expected
    monkeypatch.delenv(P.HEADLESS_ENV)
    assert not P.headless()


def test_plain_text_on_stdout_outside_a_kernel(monkeypatch, capsys) -> None:
    monkeypatch.setenv(P.HEADLESS_ENV, "1")
    assert not P.widgets_available()
    out = list(P.progress(range(3), desc="demo", mininterval=0))
    assert out == [0, 1, 2]
    captured = capsys.readouterr()
    assert "demo" in captured.out and captured.err == ""


def test_no_widgets_without_a_kernel(monkeypatch) -> None:
    monkeypatch.delenv(P.HEADLESS_ENV, raising=False)
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    assert not P.widgets_available()


def test_an_explicit_file_wins() -> None:
    buf = io.StringIO()
    with P.progress(total=2, desc="to-buffer", file=buf, mininterval=0) as bar:
        bar.update(2)
    assert "to-buffer" in buf.getvalue()


@pytest.mark.parametrize("disable", [True, False])
def test_disable_is_passed_through(disable, capsys) -> None:
    list(P.progress(range(2), desc="quiet", disable=disable, mininterval=0))
    assert ("quiet" in capsys.readouterr().out) is not disable
