"""The one door for MCP tools: every call passes gate → validation → meter → handler.

Tools are declared with ``ToolRegistry.tool`` and reach the SDK only through
``ToolRegistry.sdk_tools``, which wraps each handler in the pipeline below. There is no other
way to put a tool on the server, so no tool can skip the gate or the meter.

    gate   = admit(api key, tool)          # UNAUTHORIZED, ACCOUNT_INACTIVE, EMAIL_NOT_VERIFIED
                                           # (agent_server.gate)
    args   = InputModel.model_validate()   # VALIDATION_ERROR, one entry per field
    result = run_metered(Admission, handler)  # RATE_LIMITED (the gate's pass), price check,
                                           # hold/charge, receipt (billing.meter)

``agent_server.mcp.pipeline.ToolCall`` runs these steps, one method each.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Generic, TypeVar

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.tools.base import Tool
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import BaseModel, ValidationError

from agent_server.kernel.errors import InternalError, ValidationFailed, field_names
from agent_server.kernel.logs import get_logger
from agent_server.mcp import results, schemas
from billing.meter import ExtraPrice

log = get_logger(__name__)

In = TypeVar("In", bound=BaseModel)
Out = TypeVar("Out", bound=BaseModel)

TOOLSETS = ("discovery", "booking", "wallet")

MAX_PRICE = "max_price"
MAX_PRICE_SCHEMA: dict[str, Any] = {
    "type": "integer",
    "minimum": 0,
    "description": "USD micros; refused, uncharged, if the price is higher.",
}
"""The argument every paid tool takes besides its own (``pop_max_price``)."""


# A handler returns its output model, or that output already serialised.
Handler = Callable[[Any, In], Awaitable[Out | results.JsonOutput]]


@dataclass(frozen=True)
class ToolSpec(Generic[In, Out]):
    """A declared tool: its wire contract and the handler behind it."""

    name: str
    title: str
    description: str
    toolset: str
    input_model: type[In]
    output_model: type[Out]
    handler: Handler[In, Out]
    read_only: bool
    destructive: bool
    idempotent: bool
    open_world: bool = False
    # A price added to the tool's fee for this call (book-slot: the slot's price).
    extra_price: Callable[[Any, In], Awaitable[ExtraPrice | None]] | None = None
    # What a call costs, in USD micro-dollars, for a tool that charges by itself rather than
    # through the price list (request-withdrawal: its fee); None when the call costs nothing.
    own_price: Callable[[Any, In], Awaitable[int | None]] | None = None

    def takes_max_price(self, price_usd_micros: int) -> bool:
        """Whether calls take ``max_price``: every tool with a fee, an extra price or a price
        of its own."""
        return price_usd_micros > 0 or self.extra_price is not None or self.own_price is not None

    @property
    def annotations(self) -> ToolAnnotations:
        # The title is the tool's own; the annotations need not repeat it. The destructive
        # and idempotent hints mean something only for a tool that writes (MCP spec). A hint
        # is left out where it says what the spec assumes without it (not read-only,
        # destructive, not idempotent, open world): each of those is the careful reading.
        hints: dict[str, bool] = {}
        if self.read_only:
            hints["read_only_hint"] = True
        else:
            if not self.destructive:
                hints["destructive_hint"] = False
            if self.idempotent:
                hints["idempotent_hint"] = True
        if not self.open_world:
            hints["open_world_hint"] = False
        return ToolAnnotations(**hints)


Invoker = Callable[[ToolSpec[Any, Any], dict[str, Any], Context], Awaitable[CallToolResult]]


@dataclass
class ToolRegistry:
    """Every tool of the product; the only source of tools for the MCP server."""

    specs: dict[str, ToolSpec[Any, Any]] = field(default_factory=dict)

    def tool(
        self,
        name: str,
        *,
        title: str,
        toolset: str,
        input_model: type[In],
        output_model: type[Out],
        read_only: bool,
        destructive: bool = False,
        idempotent: bool = False,
        open_world: bool = False,
        extra_price: Callable[[Any, In], Awaitable[ExtraPrice | None]] | None = None,
        own_price: Callable[[Any, In], Awaitable[int | None]] | None = None,
    ) -> Callable[[Handler[In, Out]], Handler[In, Out]]:
        """Declare a tool; the handler's docstring is its description."""
        if toolset not in TOOLSETS:
            raise ValueError(f"unknown toolset {toolset!r}")

        def register(handler: Handler[In, Out]) -> Handler[In, Out]:
            if name in self.specs:
                raise ValueError(f"tool {name!r} declared twice")
            self.specs[name] = ToolSpec(
                name=name,
                title=title,
                description=inspect.cleandoc(handler.__doc__ or ""),
                toolset=toolset,
                input_model=input_model,
                output_model=output_model,
                handler=handler,
                read_only=read_only,
                destructive=destructive,
                idempotent=idempotent,
                open_world=open_world,
                extra_price=extra_price,
                own_price=own_price,
            )
            return handler

        return register

    def select(
        self, toolsets: Iterable[str] | None = None, *, read_only: bool = False
    ) -> list[ToolSpec[Any, Any]]:
        """The specs served for a ``--toolsets`` choice and ``--read-only`` flag."""
        chosen = set(toolsets) if toolsets else set(TOOLSETS)
        unknown = chosen - set(TOOLSETS)
        if unknown:
            raise ValueError(f"unknown toolsets: {', '.join(sorted(unknown))}")
        return [
            s for s in self.specs.values() if s.toolset in chosen and (s.read_only or not read_only)
        ]

    def sdk_tools(
        self,
        invoke: Invoker,
        toolsets: Iterable[str] | None = None,
        *,
        read_only: bool = False,
        describe_price: Callable[[str], tuple[str, dict[str, Any]]] | None = None,
    ) -> list[Tool]:
        """SDK tool objects whose every call goes through ``invoke``."""
        return [
            _sdk_tool(spec, invoke, describe_price)
            for spec in self.select(toolsets, read_only=read_only)
        ]


def _sdk_tool(
    spec: ToolSpec[Any, Any],
    invoke: Invoker,
    describe_price: Callable[[str], tuple[str, dict[str, Any]]] | None,
) -> Tool:
    # The SDK validates arguments against the function signature before calling it. We want
    # our own VALIDATION_ERROR body instead, so the function accepts anything and the
    # advertised input schema is replaced by the input model's below.
    async def entry(ctx: Context, **_ignored: Any) -> CallToolResult:
        params = ctx.request_context.params or {}
        raw = params.get("arguments") if isinstance(params, Mapping) else None
        return await invoke(spec, dict(raw or {}), ctx)

    fields = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Any)
        for name in spec.input_model.model_fields
    ]
    entry.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Context),
            *fields,
        ],
        return_annotation=Annotated[CallToolResult, spec.output_model],
    )
    entry.__annotations__ = {"ctx": Context, "return": Annotated[CallToolResult, spec.output_model]}
    description = spec.description
    meta: dict[str, Any] | None = None
    price = 0
    if describe_price is not None:
        price_text, price_meta = describe_price(spec.name)
        price = int(price_meta["price_usd_micros"])
        if price > 0:  # the server instructions say: a tool without a Price line is free
            description = f"{description}\n\nPrice: {price_text}"
            meta = {"agent-server/price": price_meta}
    tool = Tool.from_function(
        entry,
        name=spec.name,
        title=spec.title,
        description=description,
        annotations=spec.annotations,
        meta=meta,
        structured_output=True,
    )
    tool.parameters = schemas.input_schema(spec.input_model)
    if describe_price is not None and spec.takes_max_price(price):
        tool.parameters.setdefault("properties", {})["max_price"] = MAX_PRICE_SCHEMA
    # One schema for the success body and the error body: clients check both against it.
    # The SDK does not validate each result against the model again: the pipeline builds
    # every structured result from the output model itself.
    tool.fn_metadata.output_schema = schemas.output_schema(spec.output_model, receipt=price > 0)
    tool.fn_metadata.output_model = None
    return tool


def validate_arguments(model: type[In], raw: dict[str, Any]) -> In:
    """Parse tool arguments, turning pydantic's errors into one VALIDATION_ERROR."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise validation_failed(exc) from None


def pop_max_price(raw: dict[str, Any]) -> int | None:
    """Take ``max_price`` out of a paid tool's arguments: a USD micro-dollar integer >= 0,
    or None when not given."""
    value = raw.pop(MAX_PRICE, None)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationFailed.field(
            MAX_PRICE, "an integer >= 0, the most this call may cost in USD micro-dollars"
        )
    return value


def validation_failed(exc: ValidationError) -> ValidationFailed:
    """Our VALIDATION_ERROR with one entry per bad field, from a pydantic error."""
    entries: list[dict[str, str]] = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in err["loc"]) or "arguments"
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown argument; see the tool's input schema"
        entries.append({"field": loc, "message": message})
    names = field_names([e["field"] for e in entries])
    return ValidationFailed(f"Invalid arguments: {names}.", entries)


def internal_error_result(spec_name: str, exc: BaseException) -> CallToolResult:
    """What a caller sees when a handler hits a bug: a generic error, logged with detail."""
    log.error("tool.unexpected_error", tool=spec_name, error_type=type(exc).__name__, exc_info=exc)
    return results.failure(InternalError("The server hit an unexpected error; it has been logged."))
