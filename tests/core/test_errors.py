"""The one-line form of a caught exception that messages and logs show."""

from __future__ import annotations

from nsfw_tui.core.errors import ConfigError, one_line


def _raised(exc: BaseException, cause: BaseException | None = None) -> BaseException:
    try:
        raise exc from cause
    except BaseException as caught:
        return caught


def test_a_library_error_is_its_innermost_first_line_named_by_type():
    inner = _raised(ValueError("\x1b[31mop aten::foo has no ONNX symbol\x1b[0m\n  at line 3\n"))
    outer = _raised(RuntimeError("export failed, see above"), inner)
    assert one_line(outer) == "ValueError: op aten::foo has no ONNX symbol"


def test_the_projects_own_error_keeps_its_sentence_over_its_cause():
    err = _raised(ConfigError("model.name: expected convnext_tiny"), OSError("no such file"))
    assert one_line(err) == "model.name: expected convnext_tiny"
    assert one_line(_raised(RuntimeError("wrapped"), err)) == "model.name: expected convnext_tiny"


def test_an_empty_message_is_the_type_and_long_ones_are_cut():
    assert one_line(KeyError()) == "KeyError"
    assert one_line(OSError(" \n\n")) == "OSError"
    assert len(one_line(ValueError("x" * 1000))) == 300
