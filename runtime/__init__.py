"""The runtime: the tool registry, and the built-in tool packs."""

from runtime.registry import REGISTRY, Registry, Tool, ToolDefinitionError, register_tool

__all__ = ["REGISTRY", "Registry", "Tool", "ToolDefinitionError", "register_tool"]
