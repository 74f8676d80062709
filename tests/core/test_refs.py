"""core.refs: 'package.module:attribute' references, checked and resolved in one place."""

from __future__ import annotations

import pytest

from orchestrator.core import refs
from orchestrator.core.refs import is_ref, load_ref


def test_resolves_nested_attributes():
    assert load_ref("orchestrator.core.refs:load_ref") is load_ref
    assert load_ref("orchestrator.core.refs:REF_RE.match") == refs.REF_RE.match


@pytest.mark.parametrize(
    "ref, message",
    [
        ("orchestrator.core.refs", "is not a 'package.module:attribute' reference"),
        ("no_such_module_xyz:f", "cannot import 'no_such_module_xyz'"),
        ("orchestrator.core.refs:nothing_here", "has no attribute 'nothing_here'"),
    ],
)
def test_errors_say_what_is_wrong(ref, message):
    assert not is_ref(ref) or ref.count(":") == 1
    with pytest.raises(ValueError, match=message):
        load_ref(ref)


def test_shape_check_imports_nothing():
    assert is_ref("some.module:fn") and is_ref("m:Class.method")
    assert not is_ref("some.module") and not is_ref("a b:c") and not is_ref("m:")
