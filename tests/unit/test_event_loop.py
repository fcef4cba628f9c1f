"""cereal.event_loop: uvloop when installed, asyncio's loop when asked or missing."""

from __future__ import annotations

import asyncio
import sys

import pytest

from cereal import event_loop


async def loop_kind() -> str:
    await asyncio.sleep(0)
    return event_loop.running_loop()


@pytest.fixture
def without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes `import uvloop` raise ImportError, as on a machine without it
    monkeypatch.setitem(sys.modules, "uvloop", None)


def test_auto_takes_uvloop_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("uvloop")
    monkeypatch.delenv(event_loop.ENVIRONMENT_VARIABLE, raising=False)

    assert event_loop.chosen_loop() == "uvloop"
    assert event_loop.run(loop_kind()) == "uvloop"


def test_asyncio_is_taken_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(event_loop.ENVIRONMENT_VARIABLE, " AsyncIO ")

    assert event_loop.chosen_loop() == "asyncio"
    assert event_loop.run(loop_kind()) == "asyncio"


@pytest.mark.usefixtures("without_uvloop")
def test_auto_falls_back_to_asyncio_without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(event_loop.ENVIRONMENT_VARIABLE, "auto")

    assert event_loop.chosen_loop() == "asyncio"
    assert event_loop.run(loop_kind()) == "asyncio"


@pytest.mark.usefixtures("without_uvloop")
def test_asking_for_a_missing_uvloop_is_an_error_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(event_loop.ENVIRONMENT_VARIABLE, "uvloop")

    with pytest.raises(ValueError, match=r"uvloop is not installed .*cereal-workflows\[uvloop\]"):
        event_loop.chosen_loop()


def test_an_unknown_choice_is_refused_and_the_coroutine_is_not_left_unawaited(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(event_loop.ENVIRONMENT_VARIABLE, "trio")
    main = loop_kind()

    with pytest.raises(ValueError, match="CEREAL_EVENT_LOOP='trio' is not one of"):
        event_loop.run(main)
    assert main.cr_frame is None  # closed, never started


def test_run_closes_its_loop_and_returns_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(event_loop.ENVIRONMENT_VARIABLE, raising=False)
    seen: list[asyncio.AbstractEventLoop] = []

    async def main() -> int:
        seen.append(asyncio.get_running_loop())
        return 7

    assert event_loop.run(main()) == 7
    assert seen[0].is_closed()


def test_running_loop_needs_a_running_loop() -> None:
    with pytest.raises(RuntimeError):
        event_loop.running_loop()
