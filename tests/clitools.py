"""What the CLI tests share: running poolcli as a user would, and the SPEC's JSON fields."""

from click.testing import CliRunner

from pool_cli.cli import cli

# The fields SPEC.md promises in every --json object.
SPEC_FIELDS = {"input", "output", "mode", "input_shape", "output_shape", "input_dtype",
               "output_dtype", "window", "stride", "padding", "dilation", "ceil_mode",
               "load_ms", "pool_ms", "save_ms", "ok"}


def run(*args, code: int = 0, input=None):
    """Invoke ``poolcli ARGS``; check the exit code and that nothing leaks a traceback."""
    result = CliRunner().invoke(cli, [str(a) for a in args], input=input)
    text = result.stdout_bytes.decode("utf-8", "replace") + result.stderr
    assert "Traceback" not in text, text
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"poolcli {' '.join(map(str, args))} raised "
                             f"{type(result.exception).__name__}: {result.exception}"
                             ) from result.exception
    assert result.exit_code == code, (
        f"poolcli {' '.join(map(str, args))}: exit {result.exit_code}, want {code}\n"
        f"stdout: {result.stdout_bytes[:2000]!r}\nstderr: {result.stderr}")
    return result


def error_lines(result) -> list[str]:
    """The ``poolcli: error:`` lines on standard error (each must be one whole error)."""
    return [line for line in result.stderr.splitlines() if line.startswith("poolcli: error:")]
