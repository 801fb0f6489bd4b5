"""The `crossrank` command: the two-stage demo and `rank` on a file."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crossrank.cli import app

runner = CliRunner()


def _said(output: str) -> str:
    """The output with whitespace collapsed: rich wraps long lines where the terminal ends."""
    return " ".join(output.split())


def test_demo_falls_back_when_the_default_model_cannot_be_had(
    offline_hub, tiny_model_dir, monkeypatch
) -> None:
    monkeypatch.setenv("CROSSRANK_DEMO_FALLBACK_MODEL", str(tiny_model_dir))
    result = runner.invoke(app, ["demo", "-n", "2", "-k", "5"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "cross-encoder/ms-marco-MiniLM-L6-v2 can't be had here (hub unreachable)" in result.output
    assert f"falling back to {tiny_model_dir}" in result.output
    assert "Best 2 of 5" in result.output


def test_demo_does_not_fall_back_for_an_explicit_model(offline_hub, tmp_path: Path) -> None:
    result = runner.invoke(app, ["demo", "--model", "acme/unknown-model"], env={"COLUMNS": "200"})
    assert result.exit_code == 1
    assert "error:" in result.output and "acme/unknown-model" in result.output
    assert "Traceback" not in result.output


def test_rank_a_text_file_as_json(tiny_model_dir: Path, tmp_path: Path) -> None:
    file = tmp_path / "docs.txt"
    file.write_text("fleas live a year\n\nthe eiffel tower is in paris\ncoffee or tea\nfleas live a year\n")
    result = runner.invoke(
        app,
        ["rank", str(file), "-q", "how long does a flea live", "-m", str(tiny_model_dir), "--json", "--all"],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["num_candidates"] == 4  # the blank line is a separator, not a document
    assert sorted(hit["index"] for hit in payload["results"]) == [0, 1, 2, 3]
    scores = [hit["score"] for hit in payload["results"]]
    assert scores == sorted(scores, reverse=True)


def test_rank_jsonl_keeps_ids_and_shows_a_table(tiny_model_dir: Path, tmp_path: Path) -> None:
    file = tmp_path / "docs.jsonl"
    file.write_text(
        "\n".join(
            json.dumps({"_id": f"doc-{i}", "text": t})
            for i, t in enumerate(["fleas live a year", "paris tower", "tea"])
        )
    )
    result = runner.invoke(
        app, ["rank", str(file), "-q", "flea", "-m", str(tiny_model_dir), "-n", "2", "--json"]
    )
    payload = json.loads(result.output)
    assert [hit["id"] for hit in payload["results"]] == [f"doc-{hit['index']}" for hit in payload["results"]]
    assert len(payload["results"]) == 2
    table = runner.invoke(
        app, ["rank", str(file), "-q", "flea", "-m", str(tiny_model_dir)], env={"COLUMNS": "200"}
    )
    assert table.exit_code == 0 and "3 of 3 documents" in table.output and "doc-" in table.output


def test_rank_reports_bad_input_without_a_traceback(tiny_model_dir: Path, tmp_path: Path) -> None:
    file = tmp_path / "docs.txt"
    file.write_text("a\nb\n")
    result = runner.invoke(app, ["rank", str(file), "-q", "   ", "-m", str(tiny_model_dir)])
    assert result.exit_code == 1
    assert "query has no tokens" in _said(result.output) and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "is a directory"),
        ('{"text": "fine"}\n{"text": "broken\n', "docs.jsonl:2: not valid JSON"),
        (
            '{"text": "fine"}\n{"title": "no text"}\n',
            "docs.jsonl:2: expected a JSON object with a string 'text'",
        ),
        (b"\xff\xfe bad bytes", "not UTF-8"),
    ],
)
def test_rank_names_the_file_and_line_at_fault(tiny_model_dir, tmp_path: Path, content, message) -> None:
    file = tmp_path / "docs.jsonl"
    if content is None:
        file.mkdir()
    elif isinstance(content, bytes):
        file.write_bytes(content)
    else:
        file.write_text(content)
    result = runner.invoke(
        app, ["rank", str(file), "-q", "flea", "-m", str(tiny_model_dir)], env={"COLUMNS": "400"}
    )
    assert result.exit_code == 1, result.output
    # rich wraps long lines (temporary paths vary in length): compare with whitespace collapsed.
    assert _said(message) in _said(result.output) and "Traceback" not in result.output


def test_rank_json_is_json_only_and_output_writes_a_file(tiny_model_dir: Path, tmp_path: Path) -> None:
    file = tmp_path / "docs.txt"
    file.write_text("fleas live a year\nparis\ntea\n")
    out = tmp_path / "out.json"
    args = ["rank", str(file), "-q", "flea", "-m", str(tiny_model_dir), "--long-documents", "windows"]
    result = runner.invoke(app, [*args, "--json", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == json.loads(out.read_text())
    table = runner.invoke(app, [*args, "-o", str(out)], env={"COLUMNS": "200"})
    assert "3 of 3 documents" in table.stdout and json.loads(out.read_text())["num_candidates"] == 3


def test_environment_and_config_file_apply_to_every_option(tiny_model_dir: Path, tmp_path: Path) -> None:
    """One rule: the CLI takes any RerankerConfig field from CROSSRANK_* and from --config."""
    file = tmp_path / "docs.txt"
    file.write_text("fleas live a year\nparis\ntea\ncoffee\n")
    env = {"CROSSRANK_MODEL": str(tiny_model_dir), "CROSSRANK_TOP_N": "2", "CROSSRANK_NORMALIZE": "true"}
    payload = json.loads(runner.invoke(app, ["rank", str(file), "-q", "flea", "--json"], env=env).stdout)
    assert len(payload["results"]) == 2 and all(0 < hit["score"] < 1 for hit in payload["results"])
    settings = tmp_path / "app.yaml"
    settings.write_text(f"llm: {{}}\nreranker:\n  model: {tiny_model_dir}\n  top_n: 1\n")
    args = [
        "rank",
        str(file),
        "-q",
        "flea",
        "--json",
        "--config",
        str(settings),
        "--config-section",
        "reranker",
    ]
    assert len(json.loads(runner.invoke(app, args).stdout)["results"]) == 1
    assert len(json.loads(runner.invoke(app, [*args, "-n", "3"]).stdout)["results"]) == 3  # options win
    bad = runner.invoke(app, args, env={"CROSSRANK_TOP_N": "zero"})
    assert bad.exit_code == 1 and "top_n" in bad.output and "Traceback" not in bad.output
    missing = runner.invoke(app, [*args[:-1], "retriever"])
    assert missing.exit_code == 1 and "no section 'retriever'" in _said(missing.output)


def test_every_subcommand_derives_the_same_options_from_the_config() -> None:
    """The options come from RerankerConfig: same flags, types, choices and bounds everywhere."""
    import typing

    import typer

    from crossrank.config import OPTION_GROUPS, RerankerConfig, env_name

    group = typer.main.get_command(app)
    expected = {
        "rank": ("model", "engine", "ranking", "selection"),
        "demo": ("model", "engine", "ranking", "selection"),
        "eval": ("model", "engine", "selection"),
    }
    seen: dict[str, dict] = {}
    for command_name, groups in expected.items():
        params = {p.name: p for p in group.commands[command_name].params}
        for name in (name for g in groups for name in OPTION_GROUPS[g]):
            param = params[name]
            assert (
                env_name(name) in param.help and RerankerConfig.model_fields[name].description in param.help
            )
            annotation = param.type_descriptor.annotation
            shape = (param.opts + param.secondary_opts, annotation, typing.get_args(annotation), param.min)
            assert seen.setdefault(name, {"shape": shape})["shape"] == shape, name
        assert ("top_n" in params) == ("ranking" in groups)
    assert set(seen) == set(RerankerConfig.model_fields)  # every field is on the command line
    assert seen["long_documents"]["shape"][2] == ("truncate", "windows")
    assert seen["backend"]["shape"][2] == ("auto", "torch", "onnx", "openvino")
    assert seen["normalize"]["shape"][0] == ["--normalize", "--no-normalize"]
    assert seen["max_length"]["shape"][3] == seen["batch_size"]["shape"][3] == 1


def test_the_cli_works_without_the_server_extra() -> None:
    """Without the server extra every command but `serve` runs, and `serve` says what to install."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['fastapi'] = None; sys.modules['uvicorn'] = None\n"
        "from typer.testing import CliRunner\n"
        "from crossrank.cli import app\n"
        "assert CliRunner().invoke(app, ['rank', '--help']).exit_code == 0\n"
        "done = CliRunner().invoke(app, ['serve', '--model', '/nonexistent'])\n"
        "print(done.exit_code, ' '.join(done.output.split()))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    exit_code, message = done.stdout.strip().split(" ", 1)
    assert exit_code == "1" and "pip install 'crossrank[server]'" in message


# --------------------------------------------------------------------------- help and output as written


def _declared_help(callback) -> list[str]:
    """The help texts a command declares (its docstring, each option's help), before any rendering."""
    import inspect
    import typing

    from typer.models import ParameterInfo

    texts = [inspect.cleandoc(callback.__doc__ or "")]
    for parameter in inspect.signature(callback, eval_str=True).parameters.values():
        texts += [
            info.help
            for info in typing.get_args(parameter.annotation)[1:]
            if isinstance(info, ParameterInfo) and info.help
        ]
    return texts


def _help(*args: str) -> str:
    result = runner.invoke(
        app, [*args, "--help"], env={"COLUMNS": "400"}, terminal_width=400, prog_name="crossrank"
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_every_help_shows_its_texts_as_written() -> None:
    """rich reads ``[train]`` as markup: every help text keeps its brackets (``crossrank[train]``)."""
    import re

    commands = {info.name: info.callback for info in app.registered_commands}
    assert set(commands) == {"demo", "rank", "eval", "finetune", "serve", "rerank-batch", "export"}
    pages = {(): (_help(), [app.info.help])} | {
        (name,): (_help(name), _declared_help(callback)) for name, callback in commands.items()
    }
    bracketed = 0
    for command, (page, texts) in pages.items():
        shown = _said(page)
        assert "\\[" not in page, command  # no escape shows through
        for text in texts:
            for token in re.findall(r"\S*\[[^\]]*\]\S*", text):
                assert _said(token) in shown, (command, token)
                bracketed += 1
    assert bracketed >= 4  # finetune's docstring and --dataset, rerank-batch's INPUT
    assert "Needs pip install 'crossrank[train]'. See docs/finetuning.md." in _said(pages[("finetune",)][0])
    assert "JSONL of {query, positives: [text], negatives?: [text]}" in _said(pages[("finetune",)][0])


def test_usage_lines_name_arguments_by_their_metavar() -> None:
    def usage(command: str) -> str:
        return next(line for line in _help(command).splitlines() if "Usage:" in line).strip()

    assert usage("rank") == "Usage: crossrank rank [OPTIONS] FILE"
    assert usage("rerank-batch") == "Usage: crossrank rerank-batch [OPTIONS] INPUT OUTPUT"
    assert usage("finetune") == "Usage: crossrank finetune [OPTIONS]"


def test_an_error_naming_an_extra_is_printed_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    from crossrank.cli.console import fail
    from crossrank.errors import BackendUnavailableError

    exit_ = fail(BackendUnavailableError("backend='onnx' needs onnxruntime: pip install 'crossrank[onnx]'"))
    assert exit_.exit_code == 1
    assert (
        capsys.readouterr().err == "error: backend='onnx' needs onnxruntime: pip install 'crossrank[onnx]'\n"
    )


def test_lines_are_not_wrapped_where_stderr_is_not_a_terminal(tmp_path: Path) -> None:
    """In a log or a pipe a status line stays one line, however narrow the terminal would be."""
    import os
    import subprocess
    import sys

    missing = tmp_path / ("a-long-folder-name-" * 6) / "documents.txt"
    env = {key: value for key, value in os.environ.items() if key != "COLUMNS"}
    done = subprocess.run(
        [sys.executable, "-m", "crossrank", "rank", str(missing), "-q", "flea"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 1, done.stderr[-2000:]
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and len(lines[0]) > 150, done.stderr
    assert str(missing) in lines[0]


def test_demo_status_lines_stay_whole_beside_json(offline_hub, tiny_model_dir: Path) -> None:
    result = runner.invoke(app, ["demo", "-m", str(tiny_model_dir), "-n", "2", "-k", "5", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["num_candidates"] == 5
    stages = [line for line in result.stderr.splitlines() if line.startswith("stage ")]
    assert [line[:7] for line in stages if " in " in line and line.endswith(")")] == ["stage 1", "stage 2"]
    assert any(len(line) > 80 for line in stages)  # the tiny model's path makes stage 2's line long


# --------------------------------------------------------------------------- Ctrl-C in Ray commands


def test_ctrl_c_whose_clean_up_hangs_exits_130_after_the_grace() -> None:
    from crossrank.cli import interrupt

    exits: list[int] = []
    fired = threading.Event()
    before = signal.getsignal(signal.SIGINT)

    def hard_exit(code: int) -> None:
        exits.append(code)
        fired.set()

    with pytest.raises(KeyboardInterrupt), interrupt.bounded_interrupt(0.2, hard_exit=hard_exit):
        try:
            signal.raise_signal(signal.SIGINT)
        finally:  # a clean-up that outlasts the grace
            assert fired.wait(10)
    assert exits == [130]
    assert signal.getsignal(signal.SIGINT) is before


def test_second_ctrl_c_exits_at_once_and_a_quick_clean_up_never_does() -> None:
    from crossrank.cli import interrupt

    exits: list[int] = []
    with pytest.raises(KeyboardInterrupt), interrupt.bounded_interrupt(60, hard_exit=exits.append):
        try:
            signal.raise_signal(signal.SIGINT)
        finally:
            assert exits == []
            signal.raise_signal(signal.SIGINT)  # the second Ctrl-C, during the clean-up
            assert exits == [130]
    with pytest.raises(KeyboardInterrupt), interrupt.bounded_interrupt(1.0, hard_exit=exits.append):
        signal.raise_signal(signal.SIGINT)  # clean-up done at once: the deadline is cancelled
    with interrupt.bounded_interrupt(1.0, hard_exit=exits.append):
        pass
    time.sleep(1.5)
    assert exits == [130]


def test_the_guard_is_off_outside_the_crossrank_process() -> None:
    """Run in-process (CliRunner, a notebook), a Ctrl-C must never end the host with os._exit."""
    from crossrank.cli import interrupt

    before = signal.getsignal(signal.SIGINT)
    assert not interrupt.as_command()  # pytest is not the crossrank command
    with interrupt.bounded_interrupt(0.1):
        assert signal.getsignal(signal.SIGINT) is before  # nothing armed

    def in_a_thread() -> None:
        with interrupt.bounded_interrupt(0.1, hard_exit=lambda code: None):
            seen.append(signal.getsignal(signal.SIGINT))

    seen: list = []
    worker = threading.Thread(target=in_a_thread)
    worker.start()
    worker.join()
    assert seen == [before]  # signal handlers belong to the main thread
