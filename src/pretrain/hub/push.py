"""Upload a checkpoint to the Hub (or a folder, with `--dry-run`), safetensors and card only.

What is uploaded: `*.safetensors`, `*.json` configs and tokenizer files, `README.md`, `*.png`;
never `trainer_state/` (optimizer pickles, RNG) unless asked, never `STAGE.json`. The token comes from
`huggingface_hub`'s usual resolution (`HF_TOKEN`, `hf auth login`) and is never printed or written.
Uploads are one commit per push and idempotent: re-pushing the same folder changes nothing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from pretrain.core.errors import PretrainError

ALLOWED_SUFFIXES = (".safetensors", ".json", ".md", ".png", ".txt", ".model", ".jinja")
EXCLUDED_NAMES = {"STAGE.json", "eval_results.json"}


def files_to_upload(folder: Path, include_optimizer: bool = False) -> list[Path]:
    files = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(folder)
        if rel.parts[0] == "trainer_state":
            if include_optimizer:
                files.append(rel)
            continue
        if rel.name in EXCLUDED_NAMES or rel.name.startswith(".") or path.suffix not in ALLOWED_SUFFIXES:
            continue
        files.append(rel)
    return files


def stage_upload(folder: Path, dest: Path, include_optimizer: bool = False) -> list[Path]:
    """Copy exactly what would be uploaded into `dest` (the dry run, and the staging area of a push)."""
    files = files_to_upload(folder, include_optimizer)
    if not any(f.suffix == ".safetensors" for f in files):
        raise PretrainError(f"{folder}: no model.safetensors — not a model folder")
    for rel in files:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(folder / rel, dest / rel)
    return files


def push_folder(
    folder: Path,
    repo_id: str,
    revision: str | None = None,
    private: bool = True,
    include_optimizer: bool = False,
    commit_message: str | None = None,
) -> str:
    """Create the repo (and branch), upload the folder; returns the commit URL. Clear errors on failure."""
    import tempfile

    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi()
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        if revision and revision != "main":
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="pretrain-push-") as tmp:
            stage_upload(folder, Path(tmp), include_optimizer)
            info = api.upload_folder(
                folder_path=tmp,
                repo_id=repo_id,
                revision=revision or "main",
                commit_message=commit_message or f"Upload {folder.name}",
            )
    except HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", "?")
        raise PretrainError(
            f"push of {folder} to {repo_id}@{revision or 'main'} failed (HTTP {status}); "
            "check the repo id and your token (`hf auth login` / HF_TOKEN), then re-run — pushes are idempotent"
        ) from None
    except (OSError, ConnectionError) as exc:
        raise PretrainError(
            f"push of {folder} to {repo_id} failed: network error ({type(exc).__name__}); "
            "re-run the same command to retry — pushes are idempotent"
        ) from None
    return str(getattr(info, "commit_url", info))
