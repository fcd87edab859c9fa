"""The exit contract every rofolio command keeps (docs/errors.md): the status and the exact shape of stderr."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from rofolio.cli import main
from rofolio.exitstatus import ExitStatus, hint_lines

# a step whose expectation fails on a machine with 1G pages and holds on one without
EXPECT_NO_1G_SPLIT = ('name = "w"\n[machine]\nmem = "8G"\n[[steps]]\nop = "set_memory_ro"\npa = "6G"\npages = 512\n'
                      'expect = { splits_1g = 0 }\n')


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def rofolio(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rofolio", *args], stderr=subprocess.PIPE, text=True, timeout=120,
                          **kwargs)


def assert_contract_lines(stderr: str) -> list[str]:
    """Every line is an error or a hint, it starts with an error, and no error has more than two hints."""
    lines = stderr.splitlines()
    assert lines and lines[0].startswith("rofolio: error: "), stderr
    hints = 0
    for line in lines:
        assert line.startswith(("rofolio: error: ", "rofolio: hint: ")), line
        hints = hints + 1 if line.startswith("rofolio: hint: ") else 0
        assert hints <= 2, stderr
    assert "Traceback" not in stderr
    return lines


# ------------------------------------------------------------------ 2: bad input
def test_a_malformed_scenario_file_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('name = "w"\n[machine]\nmem = "8G"\n[[steps]]\nop = "set_memory_ro"\npa = = "6G"\n')
    result = invoke("run", str(path))
    assert result.exit_code == ExitStatus.USAGE == 2
    assert result.stderr.splitlines() == [f"rofolio: error: {path}:6: not valid TOML: Invalid value",
                                          "rofolio: hint: fix the syntax at that line"]


def test_every_problem_of_a_scenario_is_its_own_error_line_with_its_hints(tmp_path: Path) -> None:
    path = tmp_path / "two.toml"
    path.write_text('name = "w"\n[machine]\nmem = "8G"\n[[steps]]\nop = "set_memory_ro"\npa = "6G"\n'
                    'pages = "many"\n[[steps]]\nop = "frobnicate"\n')
    result = invoke("run", str(path))
    assert result.exit_code == 2
    lines = assert_contract_lines(result.stderr)
    errors = [line for line in lines if line.startswith("rofolio: error: ")]
    assert len(errors) == 2
    assert re.fullmatch(rf"rofolio: error: {re.escape(str(path))}:7: steps\[1\]\.pages: .+", errors[0])
    assert re.fullmatch(rf"rofolio: error: {re.escape(str(path))}:9: steps\[2\]: unknown op 'frobnicate'", errors[1])


@pytest.mark.parametrize("command", ["run", "meminfo"])
def test_a_bad_size_on_the_command_line_exits_2(command: str) -> None:
    result = invoke(command, "--mem", "8Q")
    assert result.exit_code == 2
    lines = assert_contract_lines(result.stderr)
    assert "cannot parse size '8Q'" in lines[0]
    assert result.stdout == ""


def test_a_click_usage_mistake_is_one_command_line_error_and_a_hint() -> None:
    result = invoke("run", "--frobnicate")
    assert result.exit_code == 2
    first, hint = result.stderr.splitlines()
    assert re.fullmatch(r"rofolio: error: command line: No such option.*--frobnicate.*", first)
    assert hint == "rofolio: hint: see 'main run --help'"
    result = invoke("meminfo", "--arch", "sparc")
    assert result.exit_code == 2
    lines = assert_contract_lines(result.stderr)
    assert re.fullmatch(r"rofolio: error: command line: Invalid value for '--arch': .*'sparc'.*", lines[0])


def test_an_unknown_command_is_a_command_line_error() -> None:
    result = invoke("scenario")
    assert result.exit_code == 2
    lines = assert_contract_lines(result.stderr)
    assert lines[0].startswith("rofolio: error: command line: No such command 'scenario'.")


def test_a_hint_is_at_most_two_lines() -> None:
    assert hint_lines("") == []
    assert hint_lines("add --arch arm64") == ["add --arch arm64"]
    assert hint_lines("built-ins: a, b; or give a path; or a name") == ["built-ins: a, b", "or give a path; or a name"]
    assert hint_lines("one\ntwo\nthree") == ["one", "two; three"]
    # a "; " inside parentheses is part of the sentence, not where it ends
    assert hint_lines("a full flush (arch/x86/mm/tlb.c; in debugfs); see 'rofolio run --help'") == [
        "a full flush (arch/x86/mm/tlb.c; in debugfs)", "see 'rofolio run --help'"]
    assert hint_lines("a flush (arch/x86/mm/tlb.c; in debugfs)") == ["a flush (arch/x86/mm/tlb.c; in debugfs)"]


# ------------------------------------------------------------------ 1: an expectation failed
def test_a_failed_expectation_exits_1_with_one_closing_summary_line(tmp_path: Path) -> None:
    path = tmp_path / "wrong.toml"
    path.write_text(EXPECT_NO_1G_SPLIT)
    result = invoke("run", str(path))
    assert result.exit_code == ExitStatus.FAILED == 1
    assert "splits_1g changed by 1, expected 0" in result.stdout
    assert result.stderr == "rofolio: 1 expectation(s) failed in 1 of 1 run\n"


def test_json_stays_parseable_when_an_expectation_fails(tmp_path: Path) -> None:
    import json

    path = tmp_path / "wrong.toml"
    path.write_text(EXPECT_NO_1G_SPLIT)
    result = invoke("run", str(path), "--json")
    assert result.exit_code == 1 and json.loads(result.stdout)["expect_failures"]
    assert result.stderr == "rofolio: 1 expectation(s) failed in 1 of 1 run\n"


def test_compare_counts_the_failing_runs(tmp_path: Path) -> None:
    path = tmp_path / "wrong.toml"
    path.write_text(EXPECT_NO_1G_SPLIT)
    result = invoke("compare", str(path), "--set", "gbpages=true,false")
    assert result.exit_code == 1
    assert result.stderr == "rofolio: 1 expectation(s) failed in 1 of 2 runs\n"


def test_an_oracle_disagreement_ends_with_a_summary_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from rofolio.oracle import session
    from rofolio.oracle import setup as oracle_setup
    from rofolio.oracle.bootcheck import HostCheck, OwnPlacement

    monkeypatch.setattr(oracle_setup, "load_install", lambda **_: SimpleNamespace(kver="6.12.0-test"))
    kb = {"DirectMap4k": 1, "DirectMap2M": 2, "DirectMap1G": 3}
    reports = [SimpleNamespace(agree=agree, own=OwnPlacement(kb, kb, []), host=HostCheck({}, [], True),
                               to_dict=lambda: {}) for agree in (True, False)]
    monkeypatch.setattr(session, "boot_fidelity", lambda *a, **k: reports)
    result = invoke("oracle", "boot", "--json", "--machines", "0")
    assert result.exit_code == 1
    assert result.stderr == "rofolio: 1 of 2 boot configuration(s) disagree with the model booted with their record\n"


# ------------------------------------------------------------------ 3: internal error
def _boom(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("boom\nsecond line")


def test_an_internal_error_is_one_line_and_the_traceback_goes_to_a_file(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr("rofolio.scenario.loader.builtin_names", _boom)
    result = invoke("scenarios")
    assert result.exit_code == ExitStatus.INTERNAL == 3
    match = re.fullmatch(r"rofolio: internal error: RuntimeError: boom second line \(traceback saved to (.+)\)\n",
                         result.stderr)
    assert match, result.stderr
    saved = Path(match.group(1))
    assert saved.parent == tmp_path / "rofolio"
    assert re.fullmatch(rf"rofolio-traceback-\d{{8}}-\d{{6}}-{os.getpid()}\.txt", saved.name)
    text = saved.read_text()
    assert "Traceback (most recent call last)" in text and "RuntimeError: boom" in text and "_boom" in text


def test_the_traceback_falls_back_to_the_temp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # $XDG_CACHE_HOME/rofolio cannot be created
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    monkeypatch.setattr("rofolio.scenario.loader.builtin_names", _boom)
    result = invoke("scenarios")
    assert result.exit_code == 3
    saved = Path(re.search(r"traceback saved to (.+)\)$", result.stderr.strip()).group(1))  # type: ignore[union-attr]
    assert saved.parent == tmp_path / "tmp" and saved.exists()


# ------------------------------------------------------------------ 4: the environment failed
def test_a_report_that_cannot_be_written_exits_4(tmp_path: Path) -> None:
    path = tmp_path / "ok.toml"
    path.write_text(EXPECT_NO_1G_SPLIT.replace("splits_1g = 0", "splits_1g = 1"))
    result = invoke("run", str(path), "--report", "/proc/rofolio-report.html")
    assert result.exit_code == ExitStatus.ENVIRONMENT == 4
    lines = assert_contract_lines(result.stderr)
    assert re.fullmatch(r"rofolio: error: /proc/rofolio-report\.html: .+", lines[0])


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_report_on_a_full_device_names_the_report_not_standard_output(tmp_path: Path) -> None:
    """The open succeeds and the write fails: the OSError names no file, so the report's path is put on it."""
    path = tmp_path / "ok.toml"
    path.write_text(EXPECT_NO_1G_SPLIT.replace("splits_1g = 0", "splits_1g = 1"))
    out = rofolio("run", str(path), "--report", "/dev/full", stdout=subprocess.DEVNULL)
    assert out.returncode == ExitStatus.ENVIRONMENT
    assert assert_contract_lines(out.stderr)[0] == "rofolio: error: /dev/full: No space left on device"


def test_an_empty_report_path_is_a_command_line_error() -> None:
    result = invoke("run", "--report", "")
    assert result.exit_code == ExitStatus.USAGE
    assert "an empty path is not a file" in assert_contract_lines(result.stderr)[0]


@pytest.mark.parametrize("encoding", ["ascii", "latin-1"])
def test_an_output_encoding_without_the_symbols_gets_ascii_stand_ins(encoding: str) -> None:
    """The step lines' arrows (splits 1G→2M) and the checks' ticks are spelled in ASCII, not an internal error."""
    out = rofolio("run", "x86-split-costs", stdout=subprocess.PIPE, env={**os.environ, "PYTHONIOENCODING": encoding},
                  encoding=encoding)
    assert (out.returncode, out.stderr) == (0, "")
    assert "splits 2M->4K" in out.stdout


def test_the_oracle_not_set_up_is_an_environment_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROFOLIO_ORACLE_DIR", str(tmp_path))
    result = invoke("oracle", "boot")
    assert result.exit_code == 4
    lines = assert_contract_lines(result.stderr)
    assert "the oracle is not set up" in lines[0]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_stdout_on_a_full_device_exits_4_with_one_line() -> None:
    with open("/dev/full", "w") as full:
        out = rofolio("scenarios", stdout=full)
    assert out.returncode == 4
    assert out.stderr == "rofolio: error: cannot write to standard output: No space left on device\n"


# ------------------------------------------------------------------ 130 and a closed pipe
def test_an_interrupt_exits_130(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupt(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr("rofolio.scenario.loader.builtin_names", interrupt)
    result = invoke("scenarios")
    assert result.exit_code == ExitStatus.INTERRUPTED == 130
    assert result.stderr == "rofolio: interrupted\n"


def test_a_pipe_closed_before_the_output_ends_quietly() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before rofolio writes anything: every write is EPIPE
    try:
        out = rofolio("scenarios", stdout=write_end)
    finally:
        os.close(write_end)
    assert out.stderr == ""
    assert out.returncode == ExitStatus.BROKEN_PIPE == 141


# the commands that print through rich (whose own Console exits 1 on a closed pipe) and one that uses click
PIPED = [["run"], ["run", "x86-split-costs", "--ptdump"], ["lifetime"], ["tlb"], ["bugs", "--explain", "dirty-pipe"],
         ["compare", "rfc-demo", "--set", "kernel=6.1,6.18"], ["scenarios"]]


@pytest.mark.parametrize("args", PIPED, ids=" ".join)
def test_every_command_ends_with_141_when_its_reader_has_gone(args: list[str]) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write is EPIPE, whatever the size of the output
    try:
        out = rofolio(*args, stdout=write_end)
    finally:
        os.close(write_end)
    assert (out.returncode, out.stderr) == (ExitStatus.BROKEN_PIPE, "")


@pytest.mark.parametrize("args", [["run"], ["run", "x86-split-costs"]], ids=" ".join)
def test_a_reader_that_stops_after_one_line_stops_rofolio_with_141(args: list[str]) -> None:
    with subprocess.Popen([sys.executable, "-m", "rofolio", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, bufsize=1) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        first = proc.stdout.readline()
        proc.stdout.close()
        stderr = proc.stderr.read()
        status = proc.wait(timeout=120)
    assert first.strip()
    assert stderr == ""
    assert status in (0, 141)  # 0 only if the whole output fitted in the pipe before the reader left


def test_a_reader_that_stops_after_one_line_gets_no_noise_on_stderr() -> None:
    with subprocess.Popen([sys.executable, "-m", "rofolio", "scenarios"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        first = proc.stdout.readline()
        proc.stdout.close()
        stderr = proc.stderr.read()
        status = proc.wait(timeout=120)
    assert first.split()[0]
    assert stderr == ""
    assert status in (0, 141)


# ------------------------------------------------------------------ --help
def test_the_top_level_help_summarises_the_contract() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    assert "Exit status: 0 ok; 1 an expectation failed" in text and "docs/errors.md" in text
