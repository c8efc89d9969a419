"""The consumer SDK: `ModelSubscriber` follows the deployed model of a pipeline."""

from __future__ import annotations

from driftline.streams.sdk.subscriber import ModelSubscriber

__all__ = ["ModelSubscriber"]
