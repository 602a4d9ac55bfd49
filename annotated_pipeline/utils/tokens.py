"""Hub tokens never reach a message: one redaction for every place a token can come from.

A push authenticates with the first of

    a `token=` argument             push_folder_to_hub(..., token=...), pipe.push_to_hub(token=...)
    the environment                 HF_TOKEN (or the older HUGGING_FACE_HUB_TOKEN)
    the login file                  `hf auth login` writes HF_HOME/token (and stored_tokens, by name)

and an error can carry any of them back: an endpoint or proxy that echoes the `Authorization` header,
an exception that prints its request. `redact(text, *tokens)` replaces every token known from all of
these sources, every `Bearer ...` credential and anything shaped like a Hub token (`hf_` + 20 or more
letters and digits) with `***`. The push path (hub.py, training/push.py) and the commands' error
reporting (errors.py, train.py) pass what they print or raise through it (`redact_error` for an
exception that is raised on).
"""

import os
import re

REDACTED = "***"
# "Authorization: Bearer <token>" however it is quoted, and the shape of a Hub user access token.
_BEARER = re.compile(r"(Bearer\s+)[^\s'\",;}\]]+", re.IGNORECASE)
_HUB_TOKEN_SHAPE = re.compile(r"\bhf_[A-Za-z0-9]{20,}\b")
_ENV_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")


def known_tokens(*explicit):
    """Every token this process could send: the given ones, the environment's, the login file's and the
    named stored ones (empty and None left out), longest first so that none is half-replaced."""
    tokens = [t for t in explicit if t]
    tokens += [os.environ.get(name) for name in _ENV_VARS]
    try:
        from huggingface_hub import constants
        from huggingface_hub.utils import get_stored_tokens

        with open(constants.HF_TOKEN_PATH, encoding="utf-8") as f:
            tokens.append(f.read().strip())
    except (OSError, ImportError):
        pass
    else:
        try:
            tokens += list(get_stored_tokens().values())
        except Exception:  # a malformed stored_tokens file: the single login file above still counts
            pass
    return sorted({t.strip() for t in tokens if t and t.strip()}, key=len, reverse=True)


def redact(text, *explicit):
    """`text` with every known token (see `known_tokens`), Bearer credential and token-shaped string
    replaced by ***."""
    text = str(text)
    for token in known_tokens(*explicit):
        text = text.replace(token, REDACTED)
    text = _BEARER.sub(lambda m: m.group(1) + REDACTED, text)
    return _HUB_TOKEN_SHAPE.sub(REDACTED, text)


def redact_error(error, *explicit):
    """`error` itself, its message (and a Hub error's `server_message`) redacted in place, so that its
    type, status and response stay for the caller: `raise redact_error(error, token) from None` (the
    `from None` keeps an unredacted context out of the traceback)."""
    error.args = tuple(redact(arg, *explicit) if isinstance(arg, str) else arg for arg in error.args)
    if isinstance(getattr(error, "server_message", None), str):
        error.server_message = redact(error.server_message, *explicit)
    return error
