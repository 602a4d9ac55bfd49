"""tokens.redact: every source of a Hub token, one redaction (annotated_pipeline/utils/tokens.py)."""

import pytest
from huggingface_hub import constants

from annotated_pipeline.utils.tokens import known_tokens, redact, redact_error


@pytest.fixture
def no_tokens(monkeypatch, tmp_path):
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "stored_tokens"))
    return tmp_path


def test_each_source_is_redacted(no_tokens, monkeypatch):
    assert known_tokens() == []
    assert redact("nothing secret here: token-free") == "nothing secret here: token-free"
    monkeypatch.setenv("HF_TOKEN", "from-the-environment-1234")
    (no_tokens / "token").write_text("from-the-login-file-5678\n")
    (no_tokens / "stored_tokens").write_text("[work]\nhf_token = from-a-stored-token-9012\n")
    text = ("env from-the-environment-1234, file from-the-login-file-5678, stored from-a-stored-token-9012, "
            "argument from-an-argument-3456, header 'Bearer anything-else', shape hf_abcdefghijklmnopqrstuvwxyz")
    assert redact(text, "from-an-argument-3456") == ("env ***, file ***, stored ***, argument ***, "
                                                      "header 'Bearer ***', shape ***")


def test_a_token_that_contains_another_is_not_half_replaced(no_tokens, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "abc")
    assert redact("abcdef and abc", "abcdef") == "*** and ***"


def test_redact_error_keeps_the_type_and_hides_the_token(no_tokens):
    error = OSError("denied for secret-argument-token", 13)
    assert redact_error(error, "secret-argument-token") is error
    assert error.args == ("denied for ***", 13)
