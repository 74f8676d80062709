"""The backend registry: the one place backend names are listed.

A backend is a class `Cls(model: ModelConfig, *, batch_size, device, **options)` with
`generate(list[Request]) -> list[Generation]` and `close()` (base.Backend). It is registered by
import path, so a heavy backend (vllm) is imported only when asked for; another installed package
adds one with an entry point in the group `orchestrator.backends`:

    [project.entry-points."orchestrator.backends"]
    echo = "my_pkg.echo:EchoBackend"

Every spec field that names a backend (a model config's `backend:`, inference's and evaluation's
`backend:` override, training's `rollout.backend`) is checked with `check_backend`, so a
registered backend is accepted by every kind that generates text. A backend module must import
cheaply (heavy libraries inside `__init__`/`generate`): planning reads its class attributes
`remote` (an API: needs `api:`, asks for no GPUs) and `check_submit(model, device)`.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from orchestrator.core.errors import UserError
from orchestrator.core.refs import load_ref

if TYPE_CHECKING:
    from orchestrator.generation.backends.base import Backend
    from orchestrator.generation.models import ModelConfig

ENTRY_POINT_GROUP = "orchestrator.backends"

BUILTIN: dict[str, str] = {
    "transformers": "orchestrator.generation.backends.hf:TransformersBackend",
    "vllm": "orchestrator.generation.backends.vllm:VLLMBackend",
    "openai": "orchestrator.generation.backends.openai_api:OpenAIBackend",
}
DEFAULT = "transformers"


@functools.cache
def registered() -> dict[str, str]:
    """name → `module:Class`: the built-in backends, then those of installed packages (a package
    cannot replace a built-in one). Cached; `registered.cache_clear()` reads the entry points again."""
    from importlib.metadata import entry_points

    found = dict(BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep.value)
    return found


def check_backend(name: str) -> str:
    """`name` if it is registered, else ValueError listing the registered backends (pydantic
    turns it into the spec error naming the field)."""
    if name in BUILTIN:  # no need to scan the installed packages' entry points
        return name
    known = registered()
    if name not in known:
        raise ValueError(
            f"backend {name!r} is unknown; registered backends: {', '.join(sorted(known))} "
            f"(a package adds one with an {ENTRY_POINT_GROUP!r} entry point)"
        )
    return name


def check_local_backend(name: str | None) -> str | None:
    """For fields that override a model's backend: registered and not an API (an API backend needs
    the model config's `api:`)."""
    if name is not None and is_remote(check_backend(name)):
        raise ValueError(f"backend {name!r} calls an API: name it in a model config, with `api:`, not here")
    return name


def backend_class(name: str) -> Any:
    check_backend(name)
    try:
        return load_ref(BUILTIN.get(name) or registered()[name])
    except ValueError as e:
        raise UserError(f"backend {name!r}: {e}") from None


def is_remote(name: str) -> bool:
    """An API backend: the model config needs `api:` and the job asks for no GPUs."""
    return bool(getattr(backend_class(name), "remote", False))


def submit_problem(name: str, model: ModelConfig, device: str) -> str | None:
    """Why `model` cannot run on `name` where the job will run (checked at submit), or None."""
    check = getattr(backend_class(name), "check_submit", None)
    return check(model, device) if check is not None else None


def load_backend(name: str, model: ModelConfig, **options: Any) -> Backend:
    """An open backend. `batch_size` and `device` are offered to every backend (it ignores what it
    does not use); the other options are the spec's `backend_options`."""
    try:
        cls = backend_class(name)
    except ValueError as e:
        raise UserError(str(e)) from None
    return cls(model, **options)
