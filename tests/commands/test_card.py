"""Card templates render in Jinja's sandbox: a shared recipe's template cannot run code or read other files."""

from __future__ import annotations

import pytest

from pretrain.commands.card import render_card
from pretrain.config import load_recipe
from pretrain.core.errors import RecipeError
from pretrain.core.progress import human

# the template: through a global of the template namespace to `os`, running a shell command
ESCAPE = "{{{{ cycler.__init__.__globals__.os.popen('id > {marker}').read() }}}}"


@pytest.fixture()
def recipe(tiny_recipe_path, tmp_path):
    return load_recipe(tiny_recipe_path, output_dir=str(tmp_path / "out"))


@pytest.mark.parametrize(
    "body",
    [
        ESCAPE,
        "{{{{ recipe.__class__.__mro__[1].__subclasses__() }}}}{{{{ ''.__class__.__mro__[1].__subclasses__()[0]('{marker}') }}}}",
        "{{% for c in ().__class__.__base__.__subclasses__() %}}{{{{ c('{marker}') }}}}{{% endfor %}}",
        "{{{{ human.__globals__['__builtins__']['open']('{marker}', 'w') }}}}",
    ],
    ids=["os-popen", "subclasses", "loop-subclasses", "builtins-open"],
)
def test_a_template_that_reaches_for_code_is_one_error_naming_it_and_runs_nothing(recipe, tmp_path, body):
    marker = tmp_path / "ran"
    template = tmp_path / "evil.md.j2"
    template.write_text("# {{ recipe.name }}\n" + body.format(marker=marker) + "\n")
    with pytest.raises(RecipeError) as info:
        render_card(recipe, template, {"recipe": recipe.model_dump(mode="json"), "human": human})
    (line,) = info.value.problems
    assert f"hub.card_template: {template}" in line and (
        "SecurityError" in line or "UndefinedError" in line
    ), line
    assert not marker.exists()


def test_a_template_reads_only_templates_of_its_own_folder(recipe, tmp_path):
    (tmp_path / "secret.txt").write_text("password")
    template = tmp_path / "card.md.j2"
    for body in ('{% include "secret.txt" %}', '{% include "../../etc/passwd.j2" %}'):
        template.write_text(body)
        with pytest.raises(RecipeError, match="TemplateNotFound"):
            render_card(recipe, template, {})
    (tmp_path / "part.j2").write_text("part {{ recipe.name }}")
    template.write_text('# card: {% include "part.j2" %}')
    assert render_card(recipe, template, {"recipe": {"name": "tiny"}}) == "# card: part tiny"


def test_a_template_that_does_not_parse_names_its_line(recipe, tmp_path):
    template = tmp_path / "card.md.j2"
    template.write_text("# ok\n{% if %}\n")
    with pytest.raises(RecipeError, match=r"card.md.j2 \(line 2\): TemplateSyntaxError"):
        render_card(recipe, template, {})
