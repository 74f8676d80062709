"""The `command` kind: a list of stages that run user commands; its report lists the files they wrote."""

from orchestrator.core.kinds import PluginKind

KIND = PluginKind("command", "orchestrator.kinds.command.spec:CommandSpec", report="orchestrator.kinds.command.report")
