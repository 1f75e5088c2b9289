"""`pretrain push CHECKPOINT --repo-id ID`: render the model card and upload a model folder.

pretrain push outputs/tiny/final --repo-id me/tiny-base [--revision step-0001000] [--dry-run DIR]

Failures (no token, a rejected token, an unreachable Hub) are `HubPushError`s: one `error:` line, exit 1.
A checkpoint or `final/` whose files differ from what its marker recorded (missing, truncated, changed) is
refused before anything is written or sent. `--dry-run DIR` renders the card into DIR, leaving the folder as it is.
"""

from __future__ import annotations

from pathlib import Path

from pretrain.commands.card import write_model_card
from pretrain.commands.runs import recipe_of_run, run_dir_of
from pretrain.core.errors import PretrainError
from pretrain.hub.push import files_to_upload, push_folder, stage_upload
from pretrain.train.checkpoint import model_folder_damage, upload_filter


def push(
    checkpoint: Path,
    repo_id: str | None = None,
    revision: str | None = None,
    private: bool | None = None,
    dry_run: Path | None = None,
    include_optimizer: bool = False,
    recipe_file: Path | None = None,
    overrides: list[str] | None = None,
) -> int:
    """`pretrain push`: render the card into the folder, then stage it (`dry_run` DIR) or push it; returns the
    exit code. `repo_id` and `private` default to the run's recipe's `hub` section."""
    folder = Path(checkpoint)
    if not (folder / "config.json").exists():
        raise PretrainError(f"{folder}: not a model folder (no config.json)")
    problems = model_folder_damage(folder)
    if problems:
        raise PretrainError(
            f"{folder}: damaged, not pushed: {'; '.join(problems[:3])} — its files differ from when it was "
            "written; for final/ re-run `pretrain run` (it rebuilds a damaged final/), else push another checkpoint"
        )
    run_dir = run_dir_of(folder)
    recipe = recipe_of_run(run_dir, folder, recipe_file, overrides)
    repo_id = repo_id or (recipe.hub.repo_id if recipe else None)
    if recipe is not None:
        if repo_id != recipe.hub.repo_id:  # the card's usage snippets name the repo it is pushed to
            recipe = recipe.model_copy(update={"hub": recipe.hub.model_copy(update={"repo_id": repo_id})})
    if dry_run:
        dest = Path(dry_run)
        dest.mkdir(parents=True, exist_ok=True)
        stage_upload(folder, dest, upload_filter(include_optimizer))
        if recipe is not None:
            write_model_card(recipe, dest)  # the copy gets the card; the folder stays as it is
        files = files_to_upload(dest, upload_filter(include_optimizer))
        print(
            f"dry run: {len(files)} files for {repo_id or '<repo-id>'}@{revision or 'main'} written to {dest}"
        )
        for f in files:
            print(f"  {f}")
        return 0
    if not repo_id:
        raise PretrainError("push: no --repo-id given and the recipe has no hub.repo_id")
    if recipe is not None:
        write_model_card(recipe, folder)
    private = private if private is not None else (recipe.hub.private if recipe else True)
    url = push_folder(folder, repo_id, revision, private, skip=upload_filter(include_optimizer))
    print(f"pushed {folder} -> {repo_id}@{revision or 'main'}: {url}")
    return 0
