"""A graph's sub-flows -> the stored definitions they name, looked up before it compiles.

The compiler resolves `flow NAME` synchronously (in a worker thread); the database is
asynchronous.  So the names and pinned ids a graph's sub-flow nodes give are read from the
request first (`wanted`), their definitions looked up (`stored_flows`), and the compiler is
handed them as a `StoredFlows`.  A name gives the latest definition saved under it, a
`graph_id` that one.  A stored definition holds its own sub-flows' IR already, so one level
of lookups is enough.  What the request names and nothing stores is left out: the compiler
reports it (E150).
"""

from __future__ import annotations

import re
import uuid

from pydantic import ValidationError
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.concurrency import run_in_threadpool

from flowc.compiler.ir import Flow, program_from_ir
from flowc.compiler.lowering import lower
from flowc.compiler.subflows import FoundFlow, StoredFlows, subflow_refs
from flowc.dsl.diagnostics import FlowError
from flowc.dsl.parser import parse
from flowc.server import store
from flowc.server.models import WorkflowDefinition
from flowc.server.schemas import GraphInput

#: How many different sub-flows one request may look up (those past them are E150).
MAX_LOOKUPS = 100


#: Where flow text may have a sub-flow node: `= flow` (a comment or a string may match too).
_MAY_HAVE_SUBFLOWS = re.compile(r"=\s*flow\b")


def wanted(graph: GraphInput) -> tuple[str | None, list[tuple[str, str | None]]]:
    """The flow's own name and the `(name, graph_id)` its sub-flow nodes give, in order.

    A request that does not parse names nothing: compiling it reports why.  Text without
    `= flow` anywhere has no sub-flows, and is not parsed here.
    """
    if graph.source is not None:
        if not _MAY_HAVE_SUBFLOWS.search(graph.source):
            return graph.name, []
        try:
            program, _ = lower(parse(graph.source), graph.source)
        except FlowError:
            return graph.name, []
    else:
        try:
            program = program_from_ir(Flow.model_validate(graph.ir or {}))
        except (ValidationError, ValueError, RecursionError):
            return graph.name, []
    return graph.name or program.name, list(dict.fromkeys(subflow_refs(program)))


def _found(definition: WorkflowDefinition) -> FoundFlow | str:
    """The stored graph as the compiler's resolver gives it, or why it cannot be."""
    try:
        ir = Flow.model_validate(definition.ir)
    except ValidationError as exc:  # saved by a newer flowc, say: not this server's to run
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the document"
        return (
            f"the stored graph {definition.id} cannot be read by this flowc ({where}: "
            f"{first['msg']}); it may have been saved by a newer version"
        )
    return FoundFlow(ir, str(definition.id), f"graph {definition.id}")


async def stored_flows(session: AsyncSession, graph: GraphInput) -> StoredFlows:
    """The definitions a graph's sub-flows name, as the compiler's resolver."""
    # Off the event loop: parsing a big flow takes a while.
    root, refs = await run_in_threadpool(wanted, graph)
    by_name: dict[str, FoundFlow] = {}
    by_id: dict[str, FoundFlow] = {}
    unreadable: dict[tuple[str, str | None], str] = {}
    for name, graph_id in refs[:MAX_LOOKUPS]:
        if graph_id is not None:
            try:
                key = uuid.UUID(graph_id)
            except ValueError:  # the IR model refuses it: the compiler says so
                continue
            definition = await store.get_definition(session, definition_id=key)
        elif name not in by_name:
            definition = await store.latest_definition(session, name=name)
        else:
            continue
        found = None if definition is None else _found(definition)
        if isinstance(found, str):
            unreadable[(name, graph_id)] = found
        elif found is not None and graph_id is not None:
            by_id[graph_id] = found
        elif found is not None:
            by_name[name] = found
    names = (
        await store.definition_names(session)
        if len(by_name) < len({name for name, graph_id in refs if graph_id is None})
        else ()
    )
    why = f"a graph's first {MAX_LOOKUPS} sub-flows are looked up, and this one is past them"
    skipped = {**dict.fromkeys(refs[MAX_LOOKUPS:], why), **unreadable}
    return StoredFlows(by_name, by_id, root=root, names=names, skipped=skipped)
