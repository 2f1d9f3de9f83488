"""The schemas of the JSON files nnmark reads back: a model directory's ``model.json`` and a key
directory's ``key.json``. Each is validated whole on load (pydantic, strict: a string is never a
number, ``true`` never a count), and the first problem becomes one :class:`NNMarkError` naming
the file, the field, what was expected and what was there."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import (BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError, ValidationInfo,
                      field_validator)

from nnmark.errors import NNMarkError

PositiveInt = Annotated[StrictInt, Field(gt=0)]
ClassCount = Annotated[StrictInt, Field(ge=2, le=1_000_000)]
Shape = Annotated[list[PositiveInt], Field(min_length=3, max_length=3)]  # [C, H, W]
Number = float  # strict: an int is a number, a bool or a string is not
HexDigest = Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{64}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow", frozen=True)


class Architecture(_Strict):
    architecture: Annotated[StrictStr, Field(min_length=1)]
    num_classes: ClassCount
    input_shape: Shape
    mean: list[Number]
    std: list[Number]
    kwargs: dict[StrictStr, Any] = Field(default_factory=dict)

    @field_validator("mean", "std")
    @classmethod
    def _one_finite_number_per_channel(cls, values: list[float], info: ValidationInfo) -> list[float]:
        shape = info.data.get("input_shape")
        channels = shape[0] if shape else len(values)
        positive = info.field_name == "std"
        if len(values) != channels or not all(math.isfinite(v) and (v > 0 or not positive) for v in values):
            raise ValueError(f"must be {channels} finite numbers{' above 0' if positive else ''} (one per input channel)")
        return values


class ModelFile(_Strict):
    format: StrictStr
    model: Architecture
    metadata: dict[StrictStr, Any] = Field(default_factory=dict)


class KeyFile(_Strict):
    format: StrictStr
    scheme: Annotated[StrictStr, Field(min_length=1)]
    num_classes: ClassCount
    input_shape: Shape
    params: dict[StrictStr, Any]
    commitment: HexDigest
    created_at: StrictStr = "unknown"
    salt: HexDigest | None = None  # nnmark-key/2 onwards
    item_tensors: list[StrictStr] | None = None  # nnmark-key/2 onwards


Schema = TypeVar("Schema", bound=BaseModel)


def validate(schema: type[Schema], data: Any, path: str | Path, *, formats: tuple[str, ...], what: str) -> Schema:
    """``data`` (parsed JSON) as ``schema``, or one clear error: a wrong ``format`` first (the file
    is not ours at all), then the first field that does not fit."""
    if not isinstance(data, dict) or data.get("format") not in formats:
        got = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise NNMarkError(f"is not an nnmark {what}", path=path, field="format", expected=" or ".join(map(repr, formats)),
                          got=got)
    try:
        return schema.model_validate(data)
    except ValidationError as invalid:
        problem = invalid.errors(include_url=False)[0]
        field = ".".join(str(part) for part in problem["loc"]) or None
        got = problem.get("input")
        if problem["type"] == "missing":
            raise NNMarkError("is missing", path=path, field=field) from None
        if len(repr(got)) > 80:
            got = repr(got)[:77] + "..."
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "value_error":  # our own checks word the whole problem
            raise NNMarkError(message, path=path, field=field, got=got) from None
        raise NNMarkError(f"does not fit the {what} schema", path=path, field=field, expected=message, got=got) from None
