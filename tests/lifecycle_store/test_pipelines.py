from __future__ import annotations

from collections.abc import Callable

import pytest

from driftline.lifecycle_store import LifecycleStore, NotFoundError, SchemaMismatchError

StoreFactory = Callable[[], LifecycleStore]


def test_ensure_pipeline_creates_then_returns(store: LifecycleStore) -> None:
    p = store.ensure_pipeline("fraud", ["a", "b"], {"lr": 0.1})
    again = store.ensure_pipeline("fraud", ["a", "b"], {"lr": 0.2})
    assert again.id == p.id and again.feature_names == ("a", "b")
    assert store.pipeline("fraud").config == {"lr": 0.2}
    assert [x.name for x in store.pipelines()] == ["fraud"]


def test_mismatched_features_raise_and_change_nothing(store: LifecycleStore) -> None:
    store.ensure_pipeline("fraud", ["a", "b"], {"lr": 0.1})
    with pytest.raises(SchemaMismatchError, match=r"\['a', 'b'\].*\['b', 'a'\]"):
        store.ensure_pipeline("fraud", ["b", "a"], {"lr": 0.5})
    assert store.pipeline("fraud").config == {"lr": 0.1}


@pytest.mark.parametrize("features", [[], ["a", "a"], "ab", ["a", ""]])
def test_bad_feature_lists(store: LifecycleStore, features: object) -> None:
    with pytest.raises(SchemaMismatchError):
        store.ensure_pipeline("p", features, {})  # type: ignore[arg-type]
    with pytest.raises(NotFoundError, match="ensure_pipeline"):
        store.pipeline("p")


def test_second_process_sees_pipeline(open_store: StoreFactory) -> None:
    first, second = open_store(), open_store()
    first.ensure_pipeline("shared", ["x"], {})
    assert second.pipeline("shared").feature_names == ("x",)
