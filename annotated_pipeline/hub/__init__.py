"""The model card, and pushing a saved pipeline folder to the Hugging Face Hub.

    card.py   model_card(repo_id_or_path, ...) -> huggingface_hub.ModelCard (templates/model_card.md);
              write_model_card(folder, ...) -> folder/README.md, beside card_inputs.json
    push.py   push_folder_to_hub(folder, repo_id): re-render the card for `repo_id`, then
              create_repo(exist_ok=True) + upload_folder, one commit; HubUnavailableError when unreachable
"""

from .card import (CARD_FILE, CARD_INPUTS_FILE, PIPELINE_TAG, TAGS, TEMPLATE_PATH, _card_inputs,  # noqa: F401
                   folder_sampling_defaults, model_card, write_model_card)
from .push import IGNORE_PATTERNS, STALE_PATTERNS, HubUnavailableError, push_folder_to_hub  # noqa: F401
