"""Stored answers decoded as the SDK's own types, with the SDK's discriminators applied.

The SDK declares its unions (a message's content blocks, among others) as discriminated by
``type``, in metadata of its own that pydantic does not read. Validated as declared, such a
union is tried member by member: on the development machine a ``Message`` with one text
block takes 12 µs to validate from JSON, and 4 µs with its content union tagged on
``type``. That difference would be most of a cache hit.

`stored_as(Message)` is the type a call site stores and returns. Its validator is built from
the SDK's own core schema of ``Message``, with every union in the message's own fields whose
members are models with distinct literal ``type`` values made a tagged union on ``type``,
as ``Field(discriminator="type")`` would make it. For valid data it picks the member the
SDK's own response parsing picks (the one whose ``type`` the data names) and rejects what
the plain validator rejects. The blocks inside are validated by their own (prebuilt)
validators, unchanged. It returns an instance of ``Message`` itself: pydantic builds it as an
instance of a subclass that adds nothing (a model class of its own, so pydantic uses this
schema instead of ``Message``'s prebuilt validator), whose class is then set to ``Message``
(the two have the same layout). It stores the fields that were set, as llmcache stores any
pydantic model, so ``model_fields_set`` survives a hit. A union this does not recognise is
left as it is: slower, never different.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, GetCoreSchemaHandler
from pydantic_core import core_schema

__all__ = ["stored_as", "tagged_schema"]

_DISCRIMINATOR = "type"


@functools.cache  # one schema per SDK type, whatever the number of caches and sites
def stored_as(model: type[BaseModel]) -> type:
    """The call-site type of `model`'s values: `model`, decoded through `tagged_schema`.

    A class of its own that gives pydantic the schema (not ``Annotated[model, ...]``: a
    type adapter of that would defer its build, as the SDK's models ask, and then fail to
    build in llmcache's codec).
    """
    schema = tagged_schema(
        model, serialization=core_schema.plain_serializer_function_ser_schema(_set_fields)
    )

    def get_schema(cls: type, source: Any, handler: GetCoreSchemaHandler) -> Any:
        return schema

    return type(
        f"Stored{model.__name__}",
        (),
        {
            "__doc__": f"`{model.__qualname__}` as a call site stores it (see `stored_as`).",
            "__get_pydantic_core_schema__": classmethod(get_schema),
        },
    )


def tagged_schema(
    model: type[BaseModel], serialization: core_schema.SerSchema | None = None
) -> core_schema.CoreSchema:
    """A schema that validates `model` with the unions of its own fields tagged (and
    serializes it with `serialization`, if given)."""
    model.model_rebuild()  # the SDK's models are built on first use
    schema: Any = model.__pydantic_core_schema__
    definitions = {
        item["ref"]: item
        for item in schema.get("definitions", ())
        if isinstance(item, Mapping) and "ref" in item
    }
    top = schema["schema"] if schema.get("type") == "definitions" else schema
    if top.get("type") != "model" or top.get("cls") is not model:  # pragma: no cover
        return schema  # type: ignore[no-any-return]  # not a shape we know: as it is
    shell = type(model)(f"_Stored{model.__name__}", (model,), {"__module__": __name__})
    built = {**top, "cls": shell, "schema": _tag(top["schema"], definitions)}
    built.pop("ref", None)  # a schema of its own, not the definition others refer to
    validate = core_schema.no_info_after_validator_function(
        _as(model),
        built,  # type: ignore[arg-type]
        serialization=serialization,
    )
    if schema is top:
        return validate
    return core_schema.definitions_schema(validate, list(schema["definitions"]))


def _as(model: type[BaseModel]) -> Callable[[Any], Any]:
    def as_model(value: Any) -> Any:
        value.__class__ = model  # the shell subclass adds no field, slot or method
        return value

    return as_model


def _tag(node: Any, definitions: Mapping[str, Any]) -> Any:
    """A copy of a schema node with its (nested) unions tagged where they can be."""
    if isinstance(node, list):
        return [_tag(item, definitions) for item in node]
    if isinstance(node, tuple):
        return tuple(_tag(item, definitions) for item in node)
    if not isinstance(node, dict):
        return node  # a class, a literal value, a function: kept as it is
    if node.get("type") == "model":
        return node  # another model: validated by its own prebuilt validator anyway
    copied = {key: _tag(value, definitions) for key, value in node.items()}
    if copied.get("type") == "union":
        choices = _tags_of(copied["choices"], definitions)
        if choices is not None:
            return core_schema.tagged_union_schema(
                choices,
                _DISCRIMINATOR,
                ref=copied.get("ref"),
                metadata=copied.get("metadata"),
                serialization=copied.get("serialization"),
            )
    return copied


def _tags_of(choices: list[Any], definitions: Mapping[str, Any]) -> dict[str, Any] | None:
    """{type tag: choice} if every choice is a model with its own literal ``type``."""
    tagged: dict[str, Any] = {}
    for choice in choices:
        schema = choice[0] if isinstance(choice, tuple) else choice
        literals = _literal_types(schema, definitions)
        if not literals or any(tag in tagged for tag in literals):
            return None
        for tag in literals:
            tagged[tag] = schema
    return tagged


def _literal_types(schema: Any, definitions: Mapping[str, Any]) -> list[str]:
    """The values a model schema's literal ``type`` field allows (none: not taggable)."""
    if isinstance(schema, dict) and schema.get("type") == "definition-ref":
        schema = definitions.get(schema.get("schema_ref", ""))
    if not isinstance(schema, dict) or schema.get("type") != "model":
        return []
    fields = schema.get("schema", {}).get("fields", {})
    field = fields.get(_DISCRIMINATOR) if isinstance(fields, dict) else None
    inner = field.get("schema") if isinstance(field, dict) else None
    while isinstance(inner, dict) and inner.get("type") == "default":
        inner = inner.get("schema")
    if not isinstance(inner, dict) or inner.get("type") != "literal":
        return []
    return [value for value in inner.get("expected", []) if isinstance(value, str)]


def _set_fields(value: BaseModel) -> Any:
    """What is stored: the fields that were set (like the API's own body). Anything else
    raises, and llmcache's codec then stores it by its runtime type, if it can."""
    return value.model_dump(mode="json", exclude_unset=True, warnings=False)
