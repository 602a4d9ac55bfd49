"""--push_to_hub: upload the finished output folder, after the local save, without leaking the token."""

from accelerate.logging import get_logger

from ..utils.tokens import redact

logger = get_logger(__name__)


class HubPushError(RuntimeError):
    """Pushing the finished output folder to the Hub failed (the local folder is intact)."""


def push_output_dir(args):
    """Upload --output_dir (pipeline, samples.png, README.md) to --hub_model_id, after the local save.

    The token comes from HF_TOKEN or the login file. A failure becomes a HubPushError whose message
    contains no token from any source (tokens.redact).
    """
    from ..hub import push_folder_to_hub

    try:
        url = push_folder_to_hub(
            args.output_dir, args.hub_model_id, private=args.hub_private_repo,
            commit_message="Upload DDPM trained with annotated-pipeline train",
        )
    except Exception as error:  # any failure: network, auth, repo; report it without a traceback
        message = redact(f"{type(error).__name__}: {error}")  # every token source (tokens.py)
        raise HubPushError(
            f"push to the Hub repo {args.hub_model_id} failed: {message} "
            f"(the trained pipeline stays in {args.output_dir})"
        ) from None
    logger.info(f"Pushed {args.output_dir} to {url}")
    return url
