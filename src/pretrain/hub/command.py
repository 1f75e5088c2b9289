"""`pretrain push CHECKPOINT --repo-id ID`: render the model card and upload a model folder.

pretrain push outputs/tiny/final --repo-id me/tiny-base [--revision step-0001000] [--dry-run DIR]

Failures (no token, a rejected token, an unreachable Hub) are `HubPushError`s: one `error:` line, exit 1.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pretrain.core.errors import PretrainError
from pretrain.core.runs import recipe_of_run, run_dir_of
from pretrain.hub.card import write_model_card
from pretrain.hub.push import push_folder, stage_upload


def run_push_command(args: argparse.Namespace) -> int:
    """Render the card into the folder, then stage it (`--dry-run DIR`) or push it; returns the exit code."""
    folder = Path(args.checkpoint)
    if not (folder / "config.json").exists():
        raise PretrainError(f"{folder}: not a model folder (no config.json)")
    run_dir = run_dir_of(folder)
    recipe = recipe_of_run(run_dir, folder, args.recipe, args.overrides)
    repo_id = args.repo_id or (recipe.hub.repo_id if recipe else None)
    if recipe is not None:
        if repo_id != recipe.hub.repo_id:  # the card's usage snippets name the repo it is pushed to
            recipe = recipe.model_copy(update={"hub": recipe.hub.model_copy(update={"repo_id": repo_id})})
        write_model_card(recipe, folder)
    if args.dry_run:
        dest = Path(args.dry_run)
        dest.mkdir(parents=True, exist_ok=True)
        files = stage_upload(folder, dest, args.include_optimizer)
        print(
            f"dry run: {len(files)} files for {repo_id or '<repo-id>'}@{args.revision or 'main'} written to {dest}"
        )
        for f in files:
            print(f"  {f}")
        return 0
    if not repo_id:
        raise PretrainError("push: no --repo-id given and the recipe has no hub.repo_id")
    private = args.private if args.private is not None else (recipe.hub.private if recipe else True)
    url = push_folder(folder, repo_id, args.revision, private, args.include_optimizer)
    print(f"pushed {folder} -> {repo_id}@{args.revision or 'main'}: {url}")
    return 0
