"""The `command` kind: a list of stages that run user commands (no results of its own to report)."""

from orchestrator.core.kinds import PluginKind

KIND = PluginKind("command", "orchestrator.kinds.command.spec:CommandSpec")
