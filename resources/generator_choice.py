"""The code location's generator resource: which generator a run uses, chosen by the run's own config.

A run launched through the instance's queue (`bulkgen run --submit`, the UI, a schedule) executes
the code location's definitions in a process of its own, so the choice travels in its run config:
`resources: {generator: {config: {kind: anthropic, settings: {mode: batch, ...}}}}`. The API key is
never a setting: the Anthropic generator reads ANTHROPIC_API_KEY in the worker's environment.
"""

from __future__ import annotations

import dagster as dg

from resources.anthropic_generator import AnthropicGenerator
from resources.generators import ConversationGenerator, TemplateGenerator

# Every generator a run can name, by name: the one registry (the CLI's --generator and run config's `kind`).
GENERATORS: dict[str, type[ConversationGenerator]] = {"template": TemplateGenerator, "anthropic": AnthropicGenerator}


def generator_from_config(config: dict):
    """The generator a run's `resources.generator.config` names (the template generator when it names none)."""
    kind, settings = config.get("kind", "template"), config.get("settings") or {}
    if kind not in GENERATORS:
        raise dg.Failure(f"no generator {kind!r} (generators: {', '.join(sorted(GENERATORS))})")
    if "api_key" in settings:
        raise dg.Failure("the API key is not a setting: set ANTHROPIC_API_KEY in the worker's environment")
    return GENERATORS[kind](**settings)


@dg.resource(
    config_schema={
        "kind": dg.Field(str, default_value="template", description=f"one of: {', '.join(sorted(GENERATORS))}"),
        "settings": dg.Field(dg.Permissive(), default_value={}, description="the generator's own fields"),
    },
    description="The conversation generator named by `kind`, with `settings`; the template generator by default.",
)
def chosen_generator(context: dg.InitResourceContext):
    generator = generator_from_config(context.resource_config)
    yield generator
    close = getattr(generator, "close", None)
    if close is not None:
        close()
